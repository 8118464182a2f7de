"""The request a front end makes, for tests that call the layers below one directly."""

from __future__ import annotations

from docker_credential_quayfed import config
from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.request import RequestContext


def request_here() -> RequestContext:
    """As a front end would make it in this process's environment: the cache directory that
    ``DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR`` (or the user's cache) names, starting now."""
    return RequestContext(TokenCache(config.default_cache_dir()))
