"""The whole budget of one command (standard library only).

A `get` that waits for another process's refresh and then finds the token in the cache
imports no HTTP library: the deadline it keeps while waiting lives here, not in ``transport``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    """The whole budget of one command: no request may run past it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)
