"""One request's context, made once by a front end (``get``, the kubelet provider, a command)
and passed down by argument through the broker into the sources: the token cache, the clock,
and when the request started (its deadline counts from there).

Nothing below a front end builds a cache of its own or reads the cache directory from the
environment: what one request keeps (robot tokens, kept JWTs, logins, discovery documents,
locks) is in the one directory its front end chose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.deadline import Deadline

if TYPE_CHECKING:
    import httpx

    from docker_credential_quayfed.config import RegistryConfig


@dataclass(frozen=True)
class RequestContext:
    """The cache, the clock and the start of one request."""

    cache: TokenCache
    clock: Callable[[], float] = time.time
    #: time.monotonic() when the request began: every deadline counts from there
    started: float = field(default_factory=time.monotonic)
    #: the executable has the operating commands (erase, login, ...): hints may name them
    #: (not the kubelet provider, whose node may have only quay-credential-provider)
    commands: bool = True

    def deadline(self, seconds: float) -> Deadline:
        """``seconds`` from the request's start."""
        return Deadline(seconds, self.started)


@dataclass
class SourceContext:
    """What a source may use: its settings, the HTTP session, the time left, and the
    request's cache and clock."""

    registry: RegistryConfig
    session: httpx.Client
    deadline: Deadline
    request: RequestContext
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
