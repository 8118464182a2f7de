"""The TOML configuration: one ``[registries."HOST"]`` table per registry key.

Every error names the file, the key and the fix.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from docker_credential_quayfed import files, hot, paths, urls
from docker_credential_quayfed.errors import ConfigError, NotConfiguredError
from docker_credential_quayfed.protocol import registry_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

APP_NAME = paths.APP_NAME
CONFIG_ENV = paths.CONFIG_ENV
CACHE_DIR_ENV = paths.CACHE_DIR_ENV

SOURCES = ("password", "client_credentials", "file", "env", "github_actions")
TOKEN_TYPES = ("id_token", "access_token")
ON_FAILURE = ("anonymous", "error")

# Which keys each source needs, beyond the common robot/issuer.
_REQUIRED_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "password": ("client_id", "username"),
    "client_credentials": ("client_id",),
    "file": ("token_file",),
    "env": ("token_env",),
    "github_actions": (),
}


@dataclass(frozen=True)
class RegistryConfig:
    """Settings for one registry key, as written under ``[registries."KEY"]``."""

    key: str
    robot: str
    issuer: str
    source: str
    client_id: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    password_command: str = ""
    client_secret_env: str = ""
    client_secret_file: str = ""
    client_secret_command: str = ""
    token_file: str = ""
    token_env: str = ""
    scope: str = "openid"
    token_type: str = "id_token"
    audience: str = ""
    quay_url: str = ""
    ca_bundle: str = ""
    refresh_margin: int = 300
    on_failure: str = "anonymous"
    timeout: float = 25.0
    allow_insecure_http: bool = False
    endpoint_hosts: tuple[str, ...] = ()
    config_file: str = field(default="", compare=False)

    @property
    def quay_base_url(self) -> str:
        return (self.quay_url or f"https://{self.key}").rstrip("/")

    @property
    def identity(self) -> str:
        """What distinguishes one credential from another for the same registry key."""
        subject = self.username or self.token_file or self.token_env
        return "\n".join(
            (self.key, self.robot, self.issuer, self.client_id, self.source, subject,
             self.audience, self.token_type, self.quay_base_url)
        )  # fmt: skip

    def where(self, name: str) -> str:
        return f"{self.config_file}: [registries.{_quote(self.key)}] {name}"


@dataclass(frozen=True)
class Config:
    path: Path
    registries: dict[str, RegistryConfig]
    #: the file's identity (device, inode, size, mtime) when it was read
    stamp: str = ""

    def registry(self, key: str) -> RegistryConfig:
        found = self.registries.get(key)
        if found is None:
            raise NotConfiguredError(
                f"{key} is not configured in {self.path}",
                f"add a [registries.{_quote(key)}] table or run "
                f"'docker-credential-quayfed configure {key}'",
            )
        return found


_TYPES_BY_ANNOTATION: dict[str, type] = {"int": int, "float": float, "bool": bool}
_FIELD_TYPES: dict[str, type] = {
    f.name: (
        tuple if str(f.type).startswith("tuple") else _TYPES_BY_ANNOTATION.get(str(f.type), str)
    )
    for f in fields(RegistryConfig)
    if f.name not in ("key", "config_file")
}
#: a config file larger than this is not a config file
MAX_CONFIG = 1 << 20
_TYPE_NAMES = {
    int: "a number",
    float: "a number",
    bool: "true or false",
    tuple: "a list of strings",
}


def _quote(key: str) -> str:
    return f'"{key}"'


def default_config_path() -> Path:
    return Path(paths.config_file())


def default_cache_dir() -> Path:
    return Path(paths.cache_dir())


def load(path: Path | None = None) -> Config:
    """Read and validate the configuration file."""
    path = path or default_config_path()
    try:
        stamp = hot.fingerprint(os.stat(path))
        raw = files.read_regular(path, MAX_CONFIG)
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {path}",
            "create it (see the README) or run 'docker-credential-quayfed configure HOST'",
        ) from None
    except files.FileRefused as exc:
        raise ConfigError(
            f"the configuration file {path} {exc}",
            f"point {CONFIG_ENV} at the TOML file, or create it there",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "save it as UTF-8 TOML") from None
    return parse_text(text, path, stamp)


def parse_text(text: str, path: Path, stamp: str = "") -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax there") from None
    return parse(document, path, stamp)


def parse(document: dict[str, Any], path: Path, stamp: str = "") -> Config:
    unknown_top = sorted(set(document) - {"registries"})
    if unknown_top:
        raise ConfigError(
            f"{path}: unknown top-level key {unknown_top[0]!r}",
            'put registry settings under [registries."HOST"]',
        )
    tables = document.get("registries", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'registries' must be a table", 'use [registries."HOST"]')
    registries: dict[str, RegistryConfig] = {}
    for written_key, table in tables.items():
        key = _normalised_key(written_key, path)
        if not isinstance(table, dict):
            raise ConfigError(
                f"{path}: registries.{_quote(written_key)} must be a table",
                f"write [registries.{_quote(key)}] followed by its keys",
            )
        if key in registries:
            raise ConfigError(
                f"{path}: registry {key} is configured twice", "keep one table for it"
            )
        registries[key] = _registry(key, table, path)
    return Config(path=path, registries=registries, stamp=stamp)


def _normalised_key(written: str, path: Path) -> str:
    try:
        key = registry_key(written)
    except Exception:
        raise ConfigError(
            f"{path}: registry key {written!r} is not a host name",
            'use the bare host[:port] clients send, e.g. [registries."quay.example.com"]',
        ) from None
    if key != written:
        raise ConfigError(
            f"{path}: registry key {written!r} is not in the form clients send",
            f"write it as [registries.{_quote(key)}] (bare host[:port], lower case, no scheme)",
        )
    return key


def _registry(key: str, table: dict[str, Any], path: Path) -> RegistryConfig:
    where = f"{path}: [registries.{_quote(key)}]"
    values: dict[str, Any] = {}
    for name, value in table.items():
        expected = _FIELD_TYPES.get(name)
        if expected is None:
            import difflib

            close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it (see the README)"
            raise ConfigError(f"{where} has unknown key {name!r}", hint)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = tuple(v.strip().lower() for v in value)
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise ConfigError(
                f"{where} {name} must be {_TYPE_NAMES.get(expected, 'a string')}",
                f"write {name} = {_example(name)}",
            )
        values[name] = value.strip() if isinstance(value, str) else value
    for name in ("robot", "issuer", "source"):
        if not values.get(name):
            raise ConfigError(f"{where} is missing {name}", f"add {name} = {_example(name)}")
    source = values["source"]
    if source not in SOURCES:
        raise ConfigError(
            f"{where} source = {source!r} is not a known token source",
            f"use one of: {', '.join(SOURCES)}",
        )
    for name in _REQUIRED_BY_SOURCE[source]:
        if not values.get(name):
            raise ConfigError(
                f"{where} is missing {name} (needed by source = {source!r})",
                f"add {name} = {_example(name)}",
            )
    _check_choice(values, "token_type", TOKEN_TYPES, where)
    _check_choice(values, "on_failure", ON_FAILURE, where)
    robot = values["robot"]
    if "+" not in robot or robot.startswith("+") or robot.endswith("+"):
        raise ConfigError(
            f"{where} robot = {robot!r} is not a full robot name",
            'write it as "namespace+shortname", e.g. "quay_federation+rhbk_user"',
        )
    for url_key in ("issuer", "quay_url"):
        url = values.get(url_key, "")
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(
                f"{where} {url_key} = {url!r} is not a URL",
                f"write {url_key} = {_example(url_key)}",
            )
        refused = urls.refusal(url, allow_http=values.get("allow_insecure_http", False))
        if url and refused is not None:
            raise ConfigError(f"{where} {url_key}: {refused[0]}", refused[1])
    for host in values.get("endpoint_hosts", ()):
        if not host or not set(host) <= _HOST_NAME_CHARS:
            raise ConfigError(
                f"{where} endpoint_hosts: {host!r} is not a host name",
                'list bare host names, e.g. endpoint_hosts = ["oauth2.example.com"]',
            )
    if values.get("ca_bundle"):
        values["ca_bundle"] = _checked_ca_bundle(values["ca_bundle"], where)
    if source == "password" and not (
        values.get("password_env") or values.get("password_file") or values.get("password_command")
    ):
        raise ConfigError(
            f"{where} has no password setting (needed by source = 'password')",
            "add password_env, password_file or password_command",
        )
    if source == "client_credentials" and not (
        values.get("client_secret_env")
        or values.get("client_secret_file")
        or values.get("client_secret_command")
    ):
        raise ConfigError(
            f"{where} has no client secret setting (needed by source = 'client_credentials')",
            "add client_secret_env, client_secret_file or client_secret_command",
        )
    margin = values.get("refresh_margin", 300)
    if margin < 0:
        raise ConfigError(f"{where} refresh_margin must be 0 or more", "write refresh_margin = 300")
    timeout = values.get("timeout", 25.0)
    if not 1 <= timeout <= 120:
        raise ConfigError(f"{where} timeout must be 1 to 120 seconds", "write timeout = 25")
    return RegistryConfig(key=key, config_file=str(path), **values)


_HOST_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-[]:")


def _checked_ca_bundle(value: str, where: str) -> str:
    """The CA bundle path, ``~`` expanded, when it is a regular file (a FIFO would hang TLS)."""
    path = os.path.expanduser(value)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(
            f"{where} ca_bundle: cannot read {path}: {exc.strerror}",
            "set ca_bundle to the PEM file of the CA that signed the servers' certificates",
        ) from None
    kind = files.file_kind(mode)
    if kind:
        raise ConfigError(
            f"{where} ca_bundle: {path} is {kind}, not a regular file",
            "set ca_bundle to a PEM file",
        )
    return path


def _check_choice(values: dict[str, Any], name: str, choices: tuple[str, ...], where: str) -> None:
    if name in values and values[name] not in choices:
        raise ConfigError(
            f"{where} {name} = {values[name]!r} is not allowed", f"use one of: {', '.join(choices)}"
        )


_EXAMPLES = {
    "robot": '"quay_federation+rhbk_user"',
    "issuer": '"https://rhbk.example.com/realms/quay"',
    "source": '"password"',
    "client_id": '"quay-access"',
    "username": '"jdoe"',
    "token_file": '"/var/run/secrets/tokens/quay"',
    "token_env": '"CI_JOB_JWT"',
    "quay_url": '"https://quay.example.com"',
    "refresh_margin": "300",
    "timeout": "25",
    "allow_insecure_http": "true",
    "endpoint_hosts": '["oauth2.example.com"]',
}


def _example(name: str) -> str:
    return _EXAMPLES.get(name, '"..."')
