"""What every command shares: its parser's description, and its request."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker_credential_quayfed.request import RequestContext


def describe(text: str, width: int = 79) -> str:
    """A description paragraph wrapped for the terminal (the formatter keeps it as given)."""
    return textwrap.fill(" ".join(text.split()), width=width)


def new_request() -> RequestContext:
    """A command's request: the cache directory the environment names, starting now."""
    from docker_credential_quayfed import config
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.request import RequestContext

    return RequestContext(TokenCache(config.default_cache_dir()))
