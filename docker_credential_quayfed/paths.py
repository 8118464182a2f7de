"""Where the configuration and the cache live (light: no platformdirs import on Linux)."""

from __future__ import annotations

import os
import sys

APP_NAME = "docker-credential-quayfed"
CONFIG_ENV = "DOCKER_CREDENTIAL_QUAYFED_CONFIG"
CACHE_DIR_ENV = "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"


def config_file() -> str:
    explicit = os.environ.get(CONFIG_ENV, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return os.path.join(_user_dir("config"), "config.toml")


def cache_dir() -> str:
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return _user_dir("cache")


def _user_dir(kind: str) -> str:
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux, inlined so that a cache hit does not import it.
        variable, fallback = (
            ("XDG_CONFIG_HOME", "~/.config")
            if kind == "config"
            else (
                "XDG_CACHE_HOME",
                "~/.cache",
            )
        )
        base = os.environ.get(variable, "").strip() or os.path.expanduser(fallback)
        return os.path.join(base, APP_NAME)
    import platformdirs

    if kind == "config":
        return str(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return str(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
