"""Where the configuration and the cache live (light: no platformdirs import on Linux).

Every `get` asks, so this reads the environment through ``posix`` (loaded with the
interpreter) rather than ``os``, whose import alone costs a cache hit a tenth of its time;
anything unusual (``~user``, a relative or unnormalised path) takes ``posixpath`` instead.
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

import posix
import sys

APP_NAME = "docker-credential-quayfed"
CONFIG_ENV = "DOCKER_CREDENTIAL_QUAYFED_CONFIG"
CACHE_DIR_ENV = "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"
DEBUG_ENV = "DOCKER_CREDENTIAL_QUAYFED_DEBUG"


def environ(name: str) -> str:
    """The variable's value, stripped ("" when unset), as ``os.environ`` would decode it
    (``os.environ`` writes through to this same mapping)."""
    value = posix.environ.get(name.encode(), b"")
    return value.decode(sys.getfilesystemencoding(), "surrogateescape").strip()


def config_file() -> str:
    explicit = environ(CONFIG_ENV)
    if explicit:
        return _absolute(_expand_user(explicit))
    return _join(_user_dir("config"), "config.toml")


def cache_dir() -> str:
    explicit = environ(CACHE_DIR_ENV)
    if explicit:
        return _absolute(_expand_user(explicit))
    return _user_dir("cache")


def _user_dir(kind: str) -> str:
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux, inlined so that a cache hit does not import it.
        variable, fallback = (
            ("XDG_CONFIG_HOME", "~/.config") if kind == "config" else ("XDG_CACHE_HOME", "~/.cache")
        )
        base = environ(variable) or _expand_user(fallback)
        return _join(base, APP_NAME)
    import platformdirs

    if kind == "config":
        return str(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return str(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def _expand_user(path: str) -> str:
    """``os.path.expanduser`` for ``~`` and ``~/...`` with $HOME set; posixpath otherwise."""
    if not path.startswith("~"):
        return path
    home = environ("HOME")
    if home and (path == "~" or path.startswith("~/")):
        return (home.rstrip("/") + path[1:]) or "/"
    import posixpath

    return posixpath.expanduser(path)


def _absolute(path: str) -> str:
    """``os.path.abspath``: an absolute, already normal path is returned as it is."""
    unusual = ("//" in path or "/./" in path or "/../" in path) or path.endswith(("/.", "/.."))
    if path.startswith("/") and not unusual and (path == "/" or not path.endswith("/")):
        return path
    import posixpath

    return posixpath.abspath(path)


def _join(base: str, name: str) -> str:
    """``os.path.join`` of a directory and a plain file name."""
    return base + name if base.endswith("/") else f"{base}/{name}"
