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

from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.deadline import Deadline


@dataclass(frozen=True)
class RequestContext:
    """The cache, the clock and the start of one request."""

    cache: TokenCache
    clock: Callable[[], float] = time.time
    #: time.monotonic() when the request began: every deadline counts from there
    started: float = field(default_factory=time.monotonic)

    def deadline(self, seconds: float) -> Deadline:
        """``seconds`` from the request's start."""
        return Deadline(seconds, self.started)
