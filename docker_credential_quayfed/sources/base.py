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
    #: fetch the discovery document even when a recent one is on disk
    fresh_discovery: bool = False
    #: set once discover() answered from disk (a failure then retries with a fresh one)
    discovered_from_cache: bool = False

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
        """The issuer's discovery document, its endpoints held to the registry's settings:
        from the cache directory while recent (``fresh_discovery`` forces a fetch)."""
        import time

        from docker_credential_quayfed import config, oidc
        from docker_credential_quayfed.cache import TokenCache

        registry = self.registry
        cache = TokenCache(config.default_cache_dir())
        if not self.fresh_discovery:
            found = oidc.cached_discovery(
                cache,
                registry.issuer,
                time.time(),
                endpoint_hosts=registry.endpoint_hosts,
                allow_http=registry.allow_insecure_http,
            )
            if found is not None:
                self.discovered_from_cache = True
                return found
        found = oidc.discover(
            self.session,
            registry.issuer,
            self.deadline,
            endpoint_hosts=registry.endpoint_hosts,
            allow_http=registry.allow_insecure_http,
        )
        oidc.keep_discovery(cache, registry.issuer, found, time.time())
        return found


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
    #: takes the full path, which asks :meth:`identity_of` (the fast path cannot see it)
    ambient: ClassVar[bool] = False

    @classmethod
    def identity_of(cls, registry: RegistryConfig) -> str:
        """What tells this credential from another (part of the cache key): the value of
        ``identity_key``; a source whose identity comes from its environment says more."""
        return str(getattr(registry, cls.identity_key)) if cls.identity_key else ""

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """Every setting this source reads."""
        grouped = tuple(name for group in cls.one_of for name in group)
        return (*cls.required, *grouped, *cls.optional)

    def fetch(self, context: SourceContext) -> str:
        raise NotImplementedError
