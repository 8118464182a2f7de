"""argv -> front end. The only module that writes a protocol answer and picks exit codes.

Protocol actions (get, store, erase, list, version) go to ``actions`` without argparse, so a
cache hit stays fast; every other command goes through ``commands``, one module per command.
A `get` that the cache answers (without a debug log) is written from here through
``protocol`` and ``fastpath`` alone: it imports nothing else (inside the refresh-ahead
window, ``background`` too, which starts the detached refresh after the answer).
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

import sys

from docker_credential_quayfed import fastpath, paths, protocol
from docker_credential_quayfed.paths import APP_NAME as PROGRAM

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from collections.abc import Sequence

    from docker_credential_quayfed import actions

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_STDIN_LIMIT = 1 << 16
#: the kubelet credential provider's executable name (the provider's ``name``)
KUBELET_PROVIDER = "quay-credential-provider"


def main(argv: "Sequence[str] | None" = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None and _called_as_kubelet_provider(sys.argv[0] if sys.argv else ""):
        args = ["kubelet", *args]  # the single-file zipapp installed under the provider's name
    try:
        if args and args[0] in protocol.ACTIONS:
            return _protocol(args)
        from docker_credential_quayfed import log
        from docker_credential_quayfed.errors import QuayfedError

        try:
            if args and args[0] == "kubelet":
                from docker_credential_quayfed import kubelet

                return kubelet.main(args[1:])
            from docker_credential_quayfed.commands import run

            return run(args)
        except QuayfedError as exc:
            log.error(exc.message)
            return exc.exit_code
        except Exception as exc:  # a bug, an OS error, a missing module: one line, no traceback
            log.error(_unexpected(exc))
            return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _called_as_kubelet_provider(program: str) -> bool:
    """The kubelet runs a provider by the name in its config: quay-credential-provider."""
    name = program.replace("\\", "/").rsplit("/", 1)[-1]
    return name in (KUBELET_PROVIDER, f"{KUBELET_PROVIDER}.pyz")


def _protocol(args: list[str]) -> int:
    action = args[0]
    if len(args) > 1:
        from docker_credential_quayfed import actions
        from docker_credential_quayfed.errors import UsageError

        if args[1] in ("-h", "--help"):
            from docker_credential_quayfed.commands import print_help

            return print_help(action)
        usage = UsageError(
            f"'{action}' takes no arguments (the input comes on stdin)",
            f"see '{PROGRAM} --help'",
        )
        return _write(actions.Answer.failure(usage.message, EXIT_USAGE))
    stdin = _read_stdin() if action in ("get", "store", "erase") else ""
    if action == "get":
        hit = _cache_hit(stdin)
        if hit is not None:
            answer, key, ahead = hit
            _write_line(answer)
            if ahead:  # answered; the next token is minted in the background
                from docker_credential_quayfed import background

                background.start_refresh(key)
            return 0
    from docker_credential_quayfed import actions

    try:
        result = actions.run(action, stdin)
    except Exception as exc:  # a bug or an OS error: one line, never a traceback
        result = actions.Answer.failure(_unexpected(exc))
    return _write(result)


def _cache_hit(stdin: str) -> "tuple[str, str, bool] | None":
    """(the credentials' JSON, the registry key, inside the refresh-ahead window?) when the
    cache answers; None sends the get on to ``actions`` (which answers everything else the
    same way, and logs when asked to)."""
    if paths.environ(paths.DEBUG_ENV):
        return None
    try:
        key = protocol.registry_key(stdin)
        found = fastpath.cached_answer(key)
    except Exception:  # bad input or anything odd: actions says what, in its own words
        return None
    if found is None:
        return None
    robot, token, ahead = found
    return protocol.Credentials(key, robot, token).to_json(), key, ahead


def _write(result: "actions.Answer") -> int:
    if result.text:
        _write_line(result.text)
    return result.code


def _write_line(text: str) -> int:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    return 0


def _unexpected(exc: BaseException) -> str:
    from docker_credential_quayfed import actions, log

    if log.debug_enabled():
        import traceback

        # Asked for with DOCKER_CREDENTIAL_QUAYFED_DEBUG=1; redacted like every other line.
        sys.stderr.write(log.redact(traceback.format_exc()))
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"the Python module {exc.name} is missing; reinstall {PROGRAM} with its "
            "dependencies (pipx, the .deb or the RPM bring them)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}; check the file system and permissions"
    return actions.internal_error(exc)


def _read_stdin() -> str:
    data = sys.stdin.buffer.read(_STDIN_LIMIT) if sys.stdin else b""
    return data.decode("utf-8", "replace")
