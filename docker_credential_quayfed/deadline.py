"""The whole budget of one command (standard library only).

A `get` that waits for another process's refresh and then finds the token in the cache
imports no HTTP library: the deadline it keeps while waiting lives here, not in ``transport``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """The whole budget of one command: no request may run past it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold the deadline's alarm (SIGALRM) back while a write that must finish runs; a timer
    that expired meanwhile fires as soon as the block ends."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on Linux
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
