"""The token source interface: what a source needs (its settings) and what it does (fetch).

Each source is one module with one subclass of :class:`TokenSource` that declares its name,
the settings it requires and accepts, which of them say where a secret is, and which one tells
one credential from another. Config validation, ``configure``'s flags, the README's table and
the man page all read these declarations; nothing else lists the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import httpx

    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.oidc import Discovery
    from docker_credential_quayfed.transport import Deadline


@dataclass
class SourceContext:
    """What a source may use: its settings, the HTTP session and the time left."""

    registry: RegistryConfig
    session: httpx.Client
    deadline: Deadline

    def secret(self, setting: str, what: str) -> str:
        """The secret named by ``<setting>_env``, ``_file`` or ``_command``, within the deadline."""
        from docker_credential_quayfed import secret_reader

        return secret_reader.resolve(
            what,
            env=getattr(self.registry, f"{setting}_env"),
            file=getattr(self.registry, f"{setting}_file"),
            command=getattr(self.registry, f"{setting}_command"),
            where=setting,
            timeout=self.deadline.remaining(),
        )

    def discover(self) -> Discovery:
        """The issuer's discovery document, its endpoints held to the registry's settings."""
        from docker_credential_quayfed import oidc

        return oidc.discover(
            self.session,
            self.registry.issuer,
            self.deadline,
            endpoint_hosts=self.registry.endpoint_hosts,
            allow_http=self.registry.allow_insecure_http,
        )


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

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """Every setting this source reads."""
        grouped = tuple(name for group in cls.one_of for name in group)
        return (*cls.required, *grouped, *cls.optional)

    def fetch(self, context: SourceContext) -> str:
        raise NotImplementedError
