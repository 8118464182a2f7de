"""Where the configuration and the cache live (light: no platformdirs import on Linux).

The rules are in ``fastpath``, which a cache hit loads alone; the rest of the package asks
here. The environment is read through ``posix`` (loaded with the interpreter) rather than
``os``; anything unusual (``~user``, a relative or unnormalised path) takes ``posixpath``.
"""

from docker_credential_quayfed.fastpath import (
    APP_NAME,
    CACHE_DIR_ENV,
    CONFIG_ENV,
    DEBUG_ENV,
    cache_dir,
    config_file,
    environ,
    resolve_path,
)

__all__ = [
    "APP_NAME",
    "CACHE_DIR_ENV",
    "CONFIG_ENV",
    "DEBUG_ENV",
    "KUBELET_FLAGS",
    "cache_dir",
    "config_file",
    "environ",
    "resolve_path",
]

#: the kubelet provider's flags, defined once (its own reader, --help, the man page and the
#: shell completions): (flag, what it names, help)
KUBELET_FLAGS = (
    ("--config", "PATH", "the TOML configuration (default: $DOCKER_CREDENTIAL_QUAYFED_CONFIG)"),
    (
        "--cache-dir",
        "PATH",
        "the cache: robot tokens, discovery documents, kept JWTs and logins "
        "(default: $DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR)",
    ),
)
