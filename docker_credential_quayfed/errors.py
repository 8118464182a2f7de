"""One error base for the helper; each subclass builds a one-line, actionable message. And the
one line for anything else that ends a command (a bug, an OS error, a missing module)."""

from __future__ import annotations

import sys

from docker_credential_quayfed import log
from docker_credential_quayfed.paths import APP_NAME as PROGRAM
from docker_credential_quayfed.text import printable


class QuayfedError(Exception):
    """Base error: ``str(err)`` is one line saying what went wrong and what to do."""

    #: exit code the CLI uses when this error ends a command
    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        # Scrubbed and escaped here, so no secret or control character survives in exception
        # text wherever it is shown.
        self.problem = printable(log.redact(" ".join(problem.split())))
        self.fix = printable(log.redact(" ".join(fix.split())))
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem}; {self.fix}" if self.fix else self.problem


class UsageError(QuayfedError):
    """The command line or stdin is not what the protocol expects."""

    exit_code = 2


class ConfigError(QuayfedError):
    """The configuration file is missing, unreadable or invalid."""


class NotConfiguredError(QuayfedError):
    """The registry has no table in the configuration."""


class SecretError(QuayfedError):
    """A password or client secret could not be read from its env var, file or command."""


class IssuerError(QuayfedError):
    """The OIDC issuer refused or could not be used (bad credentials, bad client, bad answer)."""


class QuayError(QuayfedError):
    """Quay refused the federation exchange or answered something unusable."""


class NetworkError(QuayfedError):
    """A server could not be reached or kept failing (timeouts, refused, 5xx, 429)."""


class CacheError(QuayfedError):
    """The token cache cannot be used safely."""


class CheckFailed(QuayfedError):
    """A doctor step found a problem (the step's verdict is FAIL)."""


class LoginRequired(QuayfedError):
    """An interactive source has no usable login: a person must run ``login`` again."""


class GrantRefused(IssuerError):
    """The issuer answered a grant with an OAuth error (``code``: its ``error`` field)."""

    def __init__(self, problem: str, fix: str = "", code: str = "") -> None:
        super().__init__(problem, fix)
        self.code = code


def unexpected(exc: BaseException) -> str:
    """The one line for an exception that is no QuayfedError; with a debug log asked for, its
    redacted traceback goes to stderr first."""
    if log.debug_enabled():
        import traceback

        # Asked for with DOCKER_CREDENTIAL_QUAYFED_DEBUG=1; redacted like every other line.
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        shown = log.redact("".join(lines)).splitlines()
        sys.stderr.write("".join(printable(line) + "\n" for line in shown))
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"the Python module {exc.name} is missing; reinstall {PROGRAM} with its "
            "dependencies (pipx, the .deb or the RPM bring them)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}; check the file system and permissions"
    return internal_error(exc)


def internal_error(exc: BaseException) -> str:
    """The line for a bug: what was raised, and how to report it."""
    return (
        f"internal error ({type(exc).__name__}); please report it with the output of "
        f"DOCKER_CREDENTIAL_QUAYFED_DEBUG=1"
    )
