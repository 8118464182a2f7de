"""The TOML configuration: one ``[registries."HOST"]`` table per registry key.

Every error names the file, the key and the fix.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from docker_credential_quayfed import fastpath, files, paths, urls
from docker_credential_quayfed.errors import ConfigError, NotConfiguredError
from docker_credential_quayfed.protocol import registry_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

APP_NAME = paths.APP_NAME
CONFIG_ENV = paths.CONFIG_ENV
CACHE_DIR_ENV = paths.CACHE_DIR_ENV

TOKEN_TYPES = ("id_token", "access_token")
ON_FAILURE = ("anonymous", "error")
#: what every source needs
COMMON_REQUIRED = ("robot", "issuer", "source")


@dataclass(frozen=True)
class Setting:
    """One key of a registry table, as people read about it (README table, man page, --help)."""

    name: str
    help: str
    example: str
    default: str = ""


#: every key of a ``[registries."HOST"]`` table; RegistryConfig's fields in the same order
SETTINGS: tuple[Setting, ...] = (
    Setting("robot", "full robot name `namespace+shortname` (case-sensitive)",
            '"quay_federation+rhbk_user"'),
    Setting("issuer", "OIDC issuer URL, exactly as the token's `iss` (Quay compares with ==)",
            '"https://rhbk.example.com/realms/quay"'),
    Setting("source", "where the JWT comes from (see the sources)", '"password"'),
    Setting("client_id", "OIDC client id", '"quay-access"'),
    Setting("username", "user for the password grant", '"jdoe"'),
    Setting("password_env", "variable holding the password", '"OIDC_PASSWORD"'),
    Setting("password_file", "file holding the password (mode 0600)", '"~/.config/quay.pw"'),
    Setting("password_command", "command printing the password", '"pass show idp/jdoe"'),
    Setting("client_secret_env", "variable holding the client secret", '"OIDC_CLIENT_SECRET"'),
    Setting("client_secret_file", "file holding the client secret", '"/etc/quayfed/secret"'),
    Setting("client_secret_command", "command printing the client secret",
            '"vault kv get -field=secret kv/quay"'),
    Setting("token_file", "file holding a JWT (e.g. a projected service-account token)",
            '"/var/run/secrets/tokens/quay"'),
    Setting("token_env", "variable holding a JWT (e.g. a GitLab id_tokens variable)",
            '"QUAY_ID_TOKEN"'),
    Setting("scope", "scope requested from the issuer", '"openid"', '"openid"'),
    Setting("token_type", "which token Quay gets: id_token or access_token", '"id_token"',
            '"id_token"'),
    Setting("audience", "audience asked of the issuer (github_actions: the token's aud)",
            '"quay"'),
    Setting("quay_url", "Quay's URL", '"https://quay.example.com"', "https://<registry key>"),
    Setting("ca_bundle", "PEM bundle trusted for the issuer, Quay and the registry",
            '"/etc/pki/tls/certs/quay-ca.pem"', "system CAs"),
    Setting("refresh_margin", "seconds before expiry at which a new token is minted", "300",
            "300"),
    Setting("on_failure", "anonymous (answer not found, say why on stderr) or error",
            '"anonymous"', '"anonymous"'),
    Setting("timeout", "seconds a get may spend refreshing, everything included (1-120)", "25",
            "25"),
    Setting("allow_insecure_http", "allow http:// to a loopback host (test servers only)",
            "true", "false"),
    Setting("endpoint_hosts", "other hosts the issuer's discovery may name for its endpoints",
            '["oauth2.example.com"]', "[]"),
)  # fmt: skip


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
        from docker_credential_quayfed.sources import BY_NAME

        identity_key = BY_NAME[self.source].identity_key
        subject = str(getattr(self, identity_key)) if identity_key else ""
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


def settings_reference() -> list[tuple[str, str, str, str]]:
    """(key, meaning, default, which sources need it) for each setting: the README's table and
    the man page's CONFIGURATION section are made from this."""
    from docker_credential_quayfed.sources import SOURCES

    rows = []
    for setting in SETTINGS:
        if setting.name in COMMON_REQUIRED:
            need = "required"
        else:
            needing = [s.name for s in SOURCES if setting.name in s.required]
            parts = [f"required by {', '.join(needing)}"] if needing else []
            parts += [
                f"{s.name} needs one of {', '.join(group)}"
                for s in SOURCES
                for group in s.one_of
                if setting.name in group
            ]
            need = "; ".join(parts) or "optional"
        default = setting.default or ("-" if need == "required" else '""')
        rows.append((setting.name, setting.help, default, need))
    return rows


def setting_type(name: str) -> type:
    """The Python type a setting holds (str, int, float, bool or tuple of str)."""
    return _FIELD_TYPES[name]


#: robot tokens live an hour; a day's margin is already "always refresh"
MAX_REFRESH_MARGIN = 86400
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
        stamp = fastpath.fingerprint(os.stat(path))
    except OSError:
        stamp = ""
    text = read_text(path)
    if text is None:
        raise ConfigError(
            f"no configuration file at {path}",
            "create it (see the README) or run 'docker-credential-quayfed configure HOST'",
        )
    return parse_text(text, path, stamp)


def read_text(path: Path, limit: int = MAX_CONFIG) -> str | None:
    """The UTF-8 text of a file the helper reads or edits (config, clients' JSON files):
    regular files only (a FIFO never hangs us), at most ``limit`` bytes; None when absent."""
    try:
        raw = files.read_regular(path, limit)
    except FileNotFoundError:
        return None
    except files.FileRefused as exc:
        raise ConfigError(f"{path} {exc}", "point the setting at a regular file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "save it as UTF-8") from None


def parse_text(text: str, path: Path, stamp: str = "") -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a config", "fix the file") from None
    return parse(document, path, stamp)


class _Problems:
    """Every problem in a config file, gathered so that one message reports them all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[tuple[str, str]] = []

    def add(self, problem: str, fix: str) -> None:
        self.found.append((problem, fix))

    def raise_any(self) -> None:
        if len(self.found) == 1:
            problem, fix = self.found[0]
            raise ConfigError(f"{self.path}: {problem}", fix)
        if self.found:
            listed = "; ".join(
                f"({n}) {problem}: {fix}" for n, (problem, fix) in enumerate(self.found, 1)
            )
            raise ConfigError(f"{self.path} has {len(self.found)} problems: {listed}")


def parse(document: dict[str, Any], path: Path, stamp: str = "") -> Config:
    problems = _Problems(path)
    for name in sorted(set(document) - {"registries"}):
        problems.add(
            f"unknown top-level key {name!r}", 'put registry settings under [registries."HOST"]'
        )
    tables = document.get("registries", {})
    if not isinstance(tables, dict):
        problems.add("'registries' must be a table", 'use [registries."HOST"]')
        tables = {}
    registries: dict[str, RegistryConfig] = {}
    for written_key, table in tables.items():
        key = _normalised_key(written_key, problems)
        if key is None:
            continue
        if not isinstance(table, dict):
            problems.add(
                f"registries.{_quote(written_key)} must be a table",
                f"write [registries.{_quote(key)}] followed by its keys",
            )
            continue
        if key in registries:
            problems.add(f"registry {key} is configured twice", "keep one table for it")
            continue
        registry = _registry(key, table, path, problems)
        if registry is not None:
            registries[key] = registry
    problems.raise_any()
    return Config(path=path, registries=registries, stamp=stamp)


def _normalised_key(written: str, problems: _Problems) -> str | None:
    try:
        key = registry_key(written)
    except Exception:
        problems.add(
            f"registry key {written!r} is not a host name",
            'use the bare host[:port] clients send, e.g. [registries."quay.example.com"]',
        )
        return None
    if key.endswith(":443") and not key.startswith("["):
        key = key[: -len(":443")]  # clients send quay.io for quay.io:443 images
    if key != written:
        problems.add(
            f"registry key {written!r} is not in the form clients send",
            f"write it as [registries.{_quote(key)}] (bare host[:port], lower case, no scheme)",
        )
        return None
    return key


def _registry(
    key: str, table: dict[str, Any], path: Path, problems: _Problems
) -> RegistryConfig | None:
    """The table's settings, or None after adding each of its problems to ``problems``."""
    from docker_credential_quayfed.sources import BY_NAME

    where = f"[registries.{_quote(key)}]"
    before = len(problems.found)
    values: dict[str, Any] = {}
    for name, value in table.items():
        expected = _FIELD_TYPES.get(name)
        if expected is None:
            import difflib

            close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it (see the README)"
            problems.add(f"{where} has unknown key {name!r}", hint)
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                value = float("inf")  # out of every range below: reported there
        if expected is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = tuple(v.strip().lower() for v in value)
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            problems.add(
                f"{where} {name} must be {_TYPE_NAMES.get(expected, 'a string')}",
                f"write {name} = {_example(name)}",
            )
            continue
        values[name] = value.strip() if isinstance(value, str) else value
    for name in COMMON_REQUIRED:
        if not values.get(name):
            problems.add(f"{where} is missing {name}", f"add {name} = {_example(name)}")
    source = BY_NAME.get(values.get("source", ""))
    if values.get("source") and source is None:
        problems.add(
            f"{where} source = {values['source']!r} is not a known token source",
            f"use one of: {', '.join(BY_NAME)}",
        )
    if source is not None:
        for name in source.required:
            if not values.get(name):
                problems.add(
                    f"{where} is missing {name} (needed by source = {source.name!r})",
                    f"add {name} = {_example(name)}",
                )
        for group in source.one_of:
            if not any(values.get(name) for name in group):
                problems.add(
                    f"{where} has none of {', '.join(group)} (source = {source.name!r} needs one)",
                    f"add {group[0]} = {_example(group[0])}",
                )
    _check_choice(values, "token_type", TOKEN_TYPES, where, problems)
    _check_choice(values, "on_failure", ON_FAILURE, where, problems)
    robot = values.get("robot", "")
    malformed = not robot.isascii() or any(c.isspace() or c in "/\\" for c in robot)
    if robot and ("+" not in robot or robot.startswith("+") or robot.endswith("+") or malformed):
        problems.add(
            f"{where} robot = {robot!r} is not a full robot name",
            'write it as "namespace+shortname", e.g. "quay_federation+rhbk_user"',
        )
    for url_key in ("issuer", "quay_url"):
        url = values.get(url_key, "")
        if not url:
            continue
        if not url.startswith(("https://", "http://")):
            problems.add(
                f"{where} {url_key} = {url!r} is not a URL",
                f"write {url_key} = {_example(url_key)}",
            )
            continue
        refused = urls.refusal(url, allow_http=values.get("allow_insecure_http", False))
        if refused is not None:
            problems.add(f"{where} {url_key}: {refused[0]}", refused[1])
    for host in values.get("endpoint_hosts", ()):
        if not host or not set(host) <= _HOST_NAME_CHARS:
            problems.add(
                f"{where} endpoint_hosts: {host!r} is not a host name",
                'list bare host names, e.g. endpoint_hosts = ["oauth2.example.com"]',
            )
    if values.get("ca_bundle"):
        values["ca_bundle"] = _checked_ca_bundle(values["ca_bundle"], where, problems)
    if not 0 <= values.get("refresh_margin", 300) <= MAX_REFRESH_MARGIN:
        problems.add(
            f"{where} refresh_margin must be 0 to {MAX_REFRESH_MARGIN} seconds",
            "write refresh_margin = 300",
        )
    if not 1 <= values.get("timeout", 25.0) <= 120:
        problems.add(f"{where} timeout must be 1 to 120 seconds", "write timeout = 25")
    if len(problems.found) > before:
        return None
    return RegistryConfig(key=key, config_file=str(path), **values)


_HOST_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-[]:")


def _checked_ca_bundle(value: str, where: str, problems: _Problems) -> str:
    """The CA bundle path, ``~`` expanded; a problem unless it is a regular file (a FIFO
    would hang TLS)."""
    path = os.path.expanduser(value)
    try:
        kind = files.file_kind(os.stat(path).st_mode)
    except OSError as exc:
        problems.add(
            f"{where} ca_bundle: cannot read {path} ({exc.strerror})",
            "set ca_bundle to the PEM file of the CA that signed the servers' certificates",
        )
        return path
    if kind:
        problems.add(
            f"{where} ca_bundle: {path} is {kind}, not a regular file",
            "set ca_bundle to a PEM file",
        )
    return path


def _check_choice(
    values: dict[str, Any],
    name: str,
    choices: tuple[str, ...],
    where: str,
    problems: _Problems,
) -> None:
    if name in values and values[name] not in choices:
        problems.add(
            f"{where} {name} = {values[name]!r} is not allowed", f"use one of: {', '.join(choices)}"
        )


_EXAMPLES = {setting.name: setting.example for setting in SETTINGS}


def _example(name: str) -> str:
    return _EXAMPLES.get(name, '"..."')
