"""The token source interface: what a source needs (its settings) and what it does (fetch).

Each source is one module with one subclass of :class:`TokenSource` that declares its name,
the settings it requires and accepts, which of them say where a secret is, and which one tells
one credential from another. Config validation, ``configure``'s flags, the README's table and
the man page all read these declarations; nothing else lists the sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.request import SourceContext

__all__ = ["SourceContext", "TokenSource", "run_token_command"]

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.identity import Principal
    from docker_credential_quayfed.request import RequestContext


class TokenSource:
    """Base: ``fetch`` returns a JWT for Quay or raises a QuayfedError saying why not."""

    #: the value of ``source`` in the config
    name: ClassVar[str] = ""
    #: one line for people: where the JWT comes from
    summary: ClassVar[str] = ""
    #: settings it cannot work without (beyond robot, issuer and source)
    required: ClassVar[tuple[str, ...]] = ()
    #: groups of settings of which at least one must be set (e.g. where the password is)
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: settings it reads when they are set
    optional: ClassVar[tuple[str, ...]] = ()
    #: the settings that say where a secret is (never the secret itself)
    secret_keys: ClassVar[tuple[str, ...]] = ()
    #: the setting that tells one credential of this source from another (part of the cache key)
    identity_key: ClassVar[str] = ""
    #: its JWTs cost a round trip to the issuer: reuse them for other robots while valid
    reusable: ClassVar[bool] = False
    #: its identity comes from the process environment (a CI job, a variable): every get
    #: takes the full path, which asks :meth:`principal` (the fast path cannot see it)
    ambient: ClassVar[bool] = False
    #: hands over a ready JWT (a file, a variable, a command's output): who it names is read
    #: from the JWT itself on every get (:meth:`read_jwt`), never assumed from the settings
    carries_jwt: ClassVar[bool] = False

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        """What tells this source's credential from another when it mints the JWT itself: the
        value of ``identity_key``; a source whose identity comes from its environment (or,
        for a login, the request's cache) says more."""
        return str(getattr(registry, cls.identity_key)) if cls.identity_key else ""

    def principal(
        self, registry: RegistryConfig, request: RequestContext, deadline: Deadline
    ) -> tuple[Principal, str]:
        """Who the JWT Quay will see names, and that JWT when learning it needed it ("" when
        this source mints it later): a carried JWT's own claims; otherwise the issuer and
        the configured credential that decide them."""
        from docker_credential_quayfed import identity

        if self.carries_jwt:
            token = self.read_jwt(registry, deadline)
            try:
                return identity.principal_of_jwt(token, registry.exchange_audience), token
            except identity.NoPrincipal as exc:
                raise SecretError(
                    f"the JWT from source {self.name!r} for {registry.key} is unusable ({exc})",
                    "hand over an OIDC JWT with iss and sub claims",
                ) from None
        configured = (
            registry.client_id,
            self.identity_of(registry, request),
            registry.scope,
            registry.audience,
            registry.token_type,
            registry.exchange_audience,
        )
        subject = "\n".join(configured)
        return identity.Principal(self.name, registry.issuer, subject), ""

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        """The JWT a ``carries_jwt`` source hands over (no HTTP client needed)."""
        raise NotImplementedError

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """Every setting this source reads."""
        grouped = tuple(name for group in cls.one_of for name in group)
        return (*cls.required, *grouped, *cls.optional)

    def fetch(self, context: SourceContext) -> str:
        """The JWT for Quay (a ``carries_jwt`` source: the one it carries)."""
        if self.carries_jwt:
            return self.read_jwt(context.registry, context.deadline)
        raise NotImplementedError


def run_token_command(deadline: Deadline, command: str, where: str) -> str:
    """The JWT ``command`` prints on stdout: split like a shell would, run without one and
    without stdin, bounded by the deadline and by the size of its output (``command`` and
    ``buildkite`` both run one)."""
    from docker_credential_quayfed import log, secret_reader

    timeout = min(secret_reader.COMMAND_TIMEOUT, max(deadline.remaining(), 0.1))
    token = secret_reader.run_command("token", command, where=where, timeout=timeout)
    log.secret(token)
    if len(token.split()) != 1:
        raise SecretError(
            f"{where} printed more than the token (text with spaces or several lines)",
            "make the command print only the JWT on stdout (messages go to stderr)",
        )
    return token
