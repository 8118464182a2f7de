"""The TOML configuration: one ``[registries."HOST"]`` table per registry key.

Every error names the file, the key and the fix. What each token source needs is read from
the sources' own declarations, which the caller passes in (``sources.BY_NAME``): the sources
stand above this module.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from docker_credential_quayfed import fastpath, files, names, paths, urls
from docker_credential_quayfed.errors import ConfigError, NotConfiguredError
from docker_credential_quayfed.protocol import table_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Mapping

APP_NAME = paths.APP_NAME
CONFIG_ENV = paths.CONFIG_ENV
CACHE_DIR_ENV = paths.CACHE_DIR_ENV

TOKEN_TYPES = ("id_token", "access_token")
CLIENT_AUTH = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ON_FAILURE = ("anonymous", "error")
#: what every source needs
COMMON_REQUIRED = ("robot", "issuer", "source")
#: the settings that say where the client secret is (one at most)
CLIENT_SECRET_KEYS = ("client_secret_env", "client_secret_file", "client_secret_command")
#: how a confidential client proves who it is, and the key private_key_jwt signs with
CLIENT_AUTH_KEYS = ("client_auth", "client_key_file", "client_key_id")
#: settings every token-endpoint grant reads
GRANT_OPTIONS = ("scope", "token_type", "audience")


class SourceDeclaration(Protocol):
    """What validation reads of a token source (``sources.base.TokenSource`` declares it)."""

    @property
    def name(self) -> str: ...

    @property
    def required(self) -> tuple[str, ...]: ...

    @property
    def one_of(self) -> tuple[tuple[str, ...], ...]: ...


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
    Setting("token_command", "command printing a JWT (split like a shell, run without one)",
            '"my-idp-cli token --audience quay"'),
    Setting("client_auth", "how a confidential client authenticates: client_secret_basic, "
            "client_secret_post or private_key_jwt", '"client_secret_basic"',
            '"client_secret_basic"'),
    Setting("client_key_file", "PEM private key for client_auth = private_key_jwt",
            '"/etc/quayfed/client-key.pem"'),
    Setting("client_key_id", "kid put in the private_key_jwt assertion's header", '"quayfed-1"'),
    Setting("scope", "scope requested from the issuer", '"openid"', '"openid"'),
    Setting("token_type", "which token Quay gets: id_token or access_token", '"id_token"',
            '"id_token"'),
    Setting("audience", "audience asked of the issuer (github_actions: the token's aud)",
            '"quay"'),
    Setting("exchange_audience", "exchange the token at the issuer for one with this audience "
            "(RFC 8693) before Quay sees it", '"quay"'),
    Setting("quay_url", "Quay's URL", '"https://quay.example.com"', "https://<registry key>"),
    Setting("ca_bundle", "PEM bundle trusted for the issuer, Quay and the registry",
            '"/etc/pki/tls/certs/quay-ca.pem"', "system CAs"),
    Setting("refresh_margin", "seconds before expiry at which a new token is minted", "300",
            "300"),
    Setting("refresh_ahead", "near the refresh point, answer from the cache and refresh in "
            "the background (no pull waits)", "true", "true"),
    Setting("on_failure", "anonymous (answer not found, say why on stderr) or error",
            '"anonymous"', '"anonymous"'),
    Setting("timeout", "seconds a get may spend refreshing, everything included (1-120)", "25",
            "25"),
    Setting("allow_insecure_http", "allow http:// to a loopback IP, never proxied (tests only)",
            "true", "false"),
    Setting("endpoint_hosts", "other hosts the issuer's discovery may name for its endpoints",
            '["oauth2.example.com"]', "[]"),
)  # fmt: skip


def quay_base_url(quay_url: str, key: str) -> str:
    """Where a table's Quay is: its ``quay_url``, else the registry host itself."""
    return (quay_url or f"https://{key}").rstrip("/")


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
    token_command: str = ""
    client_auth: str = "client_secret_basic"
    client_key_file: str = ""
    client_key_id: str = ""
    scope: str = "openid"
    token_type: str = "id_token"
    audience: str = ""
    exchange_audience: str = ""
    quay_url: str = ""
    ca_bundle: str = ""
    refresh_margin: int = 300
    refresh_ahead: bool = True
    on_failure: str = "anonymous"
    timeout: float = 25.0
    allow_insecure_http: bool = False
    endpoint_hosts: tuple[str, ...] = ()
    config_file: str = field(default="", compare=False)

    @property
    def quay_base_url(self) -> str:
        return quay_base_url(self.quay_url, self.key)

    def where(self, name: str) -> str:
        return f"{self.config_file}: [registries.{_quote(self.key)}] {name}"


@dataclass(frozen=True)
class Config:
    path: Path
    registries: dict[str, RegistryConfig]
    #: the file's identity (device, inode, size, mtime) when it was read
    stamp: str = ""
    #: ``[kubelet."HOST"]``: hosts whose pods may pull with their own service account
    kubelet: dict[str, KubeletHost] = field(default_factory=dict)

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


def settings_reference(
    sources: Mapping[str, SourceDeclaration],
) -> list[tuple[str, str, str, str]]:
    """(key, meaning, default, which sources need it) for each setting: the README's table and
    the man page's CONFIGURATION section are made from this."""
    rows = []
    for setting in SETTINGS:
        if setting.name in COMMON_REQUIRED:
            need = "required"
        else:
            needing = [s.name for s in sources.values() if setting.name in s.required]
            parts = [f"required by {', '.join(needing)}"] if needing else []
            parts += [
                f"{s.name} needs one of {', '.join(group)}"
                for s in sources.values()
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


#: settings that name a file: ``~`` expanded and made absolute against the config file's
#: directory when the config is read, so every reader (the fast path too) opens the same file
PATH_SETTINGS = (
    "password_file",
    "client_secret_file",
    "token_file",
    "client_key_file",
    "ca_bundle",
)
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


def load(sources: Mapping[str, SourceDeclaration], path: Path | None = None) -> Config:
    """Read the configuration file and validate it against ``sources`` (by name)."""
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
    return parse_text(text, path, sources, stamp)


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


def parse_text(
    text: str, path: Path, sources: Mapping[str, SourceDeclaration], stamp: str = ""
) -> Config:
    try:
        document = _loads_within(text, PARSE_LIMIT)
    except _TooSlow:
        raise ConfigError(
            f"{path} took over {PARSE_LIMIT:.0f}s to parse, so it is no config this helper can "
            "use (a huge or very deeply dotted key?)",
            "fix the file",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a config", "fix the file") from None
    return parse(document, path, sources, stamp)


#: a config that takes longer than this to parse would hold up every pull: refused
PARSE_LIMIT = 2.0


class _TooSlow(Exception):
    """The TOML parser ran past PARSE_LIMIT (tomllib is quadratic in some keys)."""


def _loads_within(text: str, limit: float) -> dict[str, Any]:
    """``tomllib.loads`` stopped after ``limit`` seconds by an interval timer (main thread
    only). A caller's own timer is set aside meanwhile and restored with the time it has left;
    if it would fire first anyway, it is left to bound the parse."""
    import signal
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        return tomllib.loads(text)
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= limit:
        return tomllib.loads(text)

    def too_slow(signum: int, frame: object) -> None:
        raise _TooSlow

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, too_slow)
    try:
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            return tomllib.loads(text)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_delay:
            left = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), outer_interval)


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


def parse(
    document: dict[str, Any], path: Path, sources: Mapping[str, SourceDeclaration], stamp: str = ""
) -> Config:
    problems = _Problems(path)
    for name in sorted(set(document) - {"registries", "kubelet"}):
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
        registry = _registry(key, table, path, sources, problems)
        if registry is not None:
            registries[key] = registry
    kubelet = _kubelet_hosts(document.get("kubelet", {}), path, problems)
    problems.raise_any()
    return Config(path=path, registries=registries, stamp=stamp, kubelet=kubelet)


def _normalised_key(written: str, problems: _Problems) -> str | None:
    try:
        key = table_key(written)
    except Exception:
        problems.add(
            f"registry key {written!r} is not a host name",
            'use the bare host[:port] clients send, e.g. [registries."quay.example.com"]',
        )
        return None
    if key != written:
        problems.add(
            f"registry key {written!r} is not in the form clients send",
            f"write it as [registries.{_quote(key)}] (bare host[:port], lower case, no scheme)",
        )
        return None
    return key


# -- reading a table: one rule per setting, for both kinds of table -----------------------------
#: a rule's verdict on one value: None, or (problem, fix)
Problem = tuple[str, str]
#: checks a setting's value (already of its type): ``rule(where, name, value)``
Rule = Callable[[str, str, Any], "Problem | None"]
_WRONG = object()


def _typed(kind: type, value: Any) -> Any:
    """``value`` read as ``kind`` (ints as floats, lists of strings as tuples, strings
    stripped); ``_WRONG`` when it is not one."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            value = float("inf")  # out of every range: the rule reports it
    if kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = tuple(v.strip() for v in value)
    if kind is object:  # the table's rules check the value's type themselves
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        return _WRONG
    return value.strip() if isinstance(value, str) else value


def _read_table(
    table: dict[str, Any],
    kinds: Mapping[str, type],
    rules: Mapping[str, Rule],
    where: str,
    problems: _Problems,
    unknown: Callable[[str], str],
) -> dict[str, Any]:
    """The table's settings that are known, of their type and keep their rule; a problem
    for each of the others (``unknown(name)`` is the fix for a key nobody knows)."""
    values: dict[str, Any] = {}
    for name, written in table.items():
        kind = kinds.get(name)
        if kind is None:
            problems.add(f"{where} has unknown key {name!r}", unknown(name))
            continue
        value = _typed(kind, written)
        rule = rules.get(name)
        found = _of_type(kind)(where, name, written) if value is _WRONG else None
        found = found or (rule(where, name, value) if rule is not None else None)
        if found is not None:
            problems.add(*found)
        else:
            values[name] = value
    return values


def _of_type(kind: type) -> Rule:
    def rule(where: str, name: str, value: Any) -> Problem:
        return f"{where} {name} must be {_TYPE_NAMES.get(kind, 'a string')}", (
            f"write {name} = {_example(name)}"
        )

    return rule


def _within(low: float, high: float, unit: str, fix: str) -> Rule:
    def rule(where: str, name: str, value: Any) -> Problem | None:
        if low <= value <= high:
            return None
        return f"{where} {name} must be {low:g} to {high:g} {unit}", fix

    return rule


def _one_of(choices: tuple[str, ...]) -> Rule:
    def rule(where: str, name: str, value: Any) -> Problem | None:
        if value in choices:
            return None
        return f"{where} {name} = {value!r} is not allowed", f"use one of: {', '.join(choices)}"

    return rule


def _said(problem: str, fix: str, holds: Callable[[Any], bool]) -> Rule:
    """A rule with its own words: ``problem`` follows "{where} "."""

    def rule(where: str, name: str, value: Any) -> Problem | None:
        return None if holds(value) else (f"{where} {problem}", fix)

    return rule


def _host_names(where: str, name: str, value: Any) -> Problem | None:
    for host in value:
        if not host or not set(host.lower()) <= _HOST_NAME_CHARS:
            return (
                f"{where} {name}: {host!r} is not a host name",
                'list bare host names, e.g. endpoint_hosts = ["oauth2.example.com"]',
            )
    return None


def _robot(where: str, name: str, value: Any) -> Problem | None:
    if not value or names.is_robot_name(value):
        return None
    return (
        f"{where} robot = {value!r} is not a full robot name",
        f'write it as {names.ROBOT_GRAMMAR}, e.g. "quay_federation+rhbk_user"',
    )


def _url_rule(allow_http: bool, schemes: tuple[str, ...] = ("https://", "http://")) -> Rule:
    """A URL credentials may be sent to (``urls.refusal``), of one of ``schemes``."""
    what = "a URL" if len(schemes) > 1 else "an https URL"

    def rule(where: str, name: str, value: Any) -> Problem | None:
        if not value:
            return None
        if not value.startswith(schemes):
            return f"{where} {name} = {value!r} is not {what}", f"write {name} = {_example(name)}"
        refused = urls.refusal(value, allow_http=allow_http)
        return None if refused is None else (f"{where} {name}: {refused[0]}", refused[1])

    return rule


#: the margin rule both kinds of table keep
_MARGIN = _within(0, MAX_REFRESH_MARGIN, "seconds", "write refresh_margin = 300")


def _resolve_paths(values: dict[str, Any], path: Path, where: str, problems: _Problems) -> None:
    """Every file a table names, read one way (see PATH_SETTINGS); the CA bundle checked."""
    for name in PATH_SETTINGS:
        if values.get(name):
            values[name] = paths.resolve_path(values[name], str(path.parent))
    if values.get("ca_bundle"):
        _check_ca_bundle(values["ca_bundle"], where, problems)


def missing_for(
    values: Mapping[str, object], source: SourceDeclaration | None
) -> list[tuple[str, ...]]:
    """The settings still missing, each a group of which one is needed: every source's
    ``COMMON_REQUIRED``, then what ``source`` requires and one of each of its groups."""
    groups: list[tuple[str, ...]] = [(name,) for name in COMMON_REQUIRED]
    if source is not None:
        groups += [(name,) for name in source.required] + list(source.one_of)
    return [group for group in groups if not any(values.get(name) for name in group)]


def _registry(
    key: str,
    table: dict[str, Any],
    path: Path,
    sources: Mapping[str, SourceDeclaration],
    problems: _Problems,
) -> RegistryConfig | None:
    """The table's settings, or None after adding each of its problems to ``problems``."""
    where = f"[registries.{_quote(key)}]"
    before = len(problems.found)
    allow_http = table.get("allow_insecure_http") is True
    rules = {**_REGISTRY_RULES, "issuer": _url_rule(allow_http), "quay_url": _url_rule(allow_http)}
    values = _read_table(table, _FIELD_TYPES, rules, where, problems, _unknown_registry_key)
    if "endpoint_hosts" in values:
        values["endpoint_hosts"] = tuple(host.lower() for host in values["endpoint_hosts"])
    source = sources.get(values.get("source", ""))
    if values.get("source") and source is None:
        problems.add(
            f"{where} source = {values['source']!r} is not a known token source",
            f"use one of: {', '.join(sources)}",
        )
    for group in missing_for(values, source):
        needed = (
            f" (needed by source = {source.name!r})"
            if source and group[0] not in COMMON_REQUIRED
            else ""
        )
        if len(group) == 1:
            problems.add(
                f"{where} is missing {group[0]}{needed}", f"add {group[0]} = {_example(group[0])}"
            )
        else:
            assert source is not None
            problems.add(
                f"{where} has none of {', '.join(group)} (source = {source.name!r} needs one)",
                f"add {group[0]} = {_example(group[0])}",
            )
    _check_client_auth(values, where, problems)
    _resolve_paths(values, path, where, problems)
    if len(problems.found) > before:
        return None
    return RegistryConfig(key=key, config_file=str(path), **values)


def _unknown_registry_key(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=1)
    return f"did you mean {close[0]!r}?" if close else "remove it (see the README)"


_HOST_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-[]:")
#: the value rules of a ``[registries."HOST"]`` table (its types come from RegistryConfig)
_REGISTRY_RULES: dict[str, Rule] = {
    "robot": _robot,
    "token_type": _one_of(TOKEN_TYPES),
    "on_failure": _one_of(ON_FAILURE),
    "client_auth": _one_of(CLIENT_AUTH),
    "endpoint_hosts": _host_names,
    "refresh_margin": _MARGIN,
    "timeout": _within(1, 120, "seconds", "write timeout = 25"),
}


def _check_ca_bundle(path: str, where: str, problems: _Problems) -> None:
    """A problem unless the CA bundle is a regular file (a FIFO would hang TLS)."""
    try:
        kind = files.file_kind(os.stat(path).st_mode)
    except OSError as exc:
        problems.add(
            f"{where} ca_bundle: cannot read {path} ({exc.strerror})",
            "set ca_bundle to the PEM file of the CA that signed the servers' certificates",
        )
        return
    if kind:
        problems.add(
            f"{where} ca_bundle: {path} is {kind}, not a regular file",
            "set ca_bundle to a PEM file",
        )


def _check_client_auth(values: dict[str, Any], where: str, problems: _Problems) -> None:
    """client_auth, the client secret and the private key must tell one story."""
    method = values.get("client_auth", "client_secret_basic")
    secrets = [name for name in CLIENT_SECRET_KEYS if values.get(name)]
    key_settings = [name for name in ("client_key_file", "client_key_id") if values.get(name)]
    if method == "private_key_jwt":
        if not values.get("client_key_file"):
            problems.add(
                f"{where} client_auth = 'private_key_jwt' needs client_key_file",
                f"add client_key_file = {_example('client_key_file')}",
            )
        if secrets:
            problems.add(
                f"{where} has {', '.join(secrets)} but client_auth = 'private_key_jwt' "
                "sends no client secret",
                'remove the client secret setting, or choose client_auth = "client_secret_basic"',
            )
    elif method in CLIENT_AUTH:
        if key_settings:
            problems.add(
                f"{where} has {', '.join(key_settings)} but client_auth is not 'private_key_jwt'",
                'add client_auth = "private_key_jwt", or remove the key settings',
            )
        if "client_auth" in values and not secrets:
            problems.add(
                f"{where} client_auth = {method!r} needs a client secret",
                "add client_secret_env, client_secret_file or client_secret_command",
            )
    if values.get("exchange_audience") and not values.get("client_id"):
        problems.add(
            f"{where} exchange_audience needs client_id (the client that exchanges the token)",
            f"add client_id = {_example('client_id')}",
        )


_EXAMPLES = {setting.name: setting.example for setting in SETTINGS}


def _example(name: str) -> str:
    return _EXAMPLES.get(name, '"..."')


# -- [kubelet."HOST"]: the node's policy for the kubelet credential provider ------------------
#: the keys of a ``[kubelet."HOST"]`` table (meaning, default)
KUBELET_SETTINGS: dict[str, tuple[str, str]] = {
    "audience": (
        "the service-account token audience this host's provider entry in the kubelet's "
        "CredentialProviderConfig requests (serviceAccountTokenAudience); a token without it "
        "is refused",
        "required",
    ),
    "quay_url": ("Quay's URL, where pods' tokens are exchanged", "https://<host>"),
    "ca_bundle": ("PEM bundle trusted for Quay", "system CAs"),
    "robots": ("robots pods may ask for (fnmatch patterns)", "any robot"),
    "allow_override_to": (
        "hosts a quay.io/host-override annotation on an image of this host may name",
        "none: overrides refused",
    ),
    "unannotated": (
        "a pod whose service account has no robot annotation: skip (no credentials), node "
        "(the node's [registries] identity) or refuse (an error)",
        '"skip"',
    ),
    "refresh_margin": ("seconds before expiry at which a new robot token is minted", "300"),
    "timeout": ("seconds one kubelet request may spend at Quay (1-55)", "25"),
}
#: what a ``[kubelet."HOST"]`` table does for a pod whose service account names no robot
UNANNOTATED = ("skip", "node", "refuse")
#: the kubelet kills a credential provider after one minute: answer well before that
MAX_KUBELET_TIMEOUT = 55.0


@dataclass(frozen=True)
class KubeletHost:
    """One ``[kubelet."HOST"]`` table: a registry whose pods may pull as their own robot."""

    key: str
    #: the ``aud`` every service-account token for this host must carry
    audience: str
    quay_url: str = ""
    ca_bundle: str = ""
    #: fnmatch patterns of the robots pods may name; empty: any robot
    robots: tuple[str, ...] = ()
    #: hosts that ``quay.io/host-override`` may send this host's images to; empty: none
    allow_override_to: tuple[str, ...] = ()
    unannotated: str = "skip"
    refresh_margin: int = 300
    timeout: float = 25.0
    config_file: str = field(default="", compare=False)

    @property
    def quay_base_url(self) -> str:
        return quay_base_url(self.quay_url, self.key)

    def allows(self, robot: str) -> bool:
        import fnmatch

        return not self.robots or any(fnmatch.fnmatchcase(robot, p) for p in self.robots)


def _kubelet_key(written: str) -> str:
    """A host as ``[kubelet."HOST"]`` keys name it ("" when it is not one): bare host[:port],
    lower case, no :443."""
    try:
        return table_key(written)
    except Exception:
        return ""


def _kubelet_hosts(tables: Any, path: Path, problems: _Problems) -> dict[str, KubeletHost]:
    """The ``[kubelet."HOST"]`` tables; each problem goes to ``problems``."""
    if not isinstance(tables, dict):
        problems.add("'kubelet' must be a table", 'use [kubelet."HOST"]')
        return {}
    hosts: dict[str, KubeletHost] = {}
    for written, table in tables.items():
        key = _kubelet_key(written)
        if key != written:
            fix = f"write [kubelet.{_quote(key)}]" if key else 'e.g. [kubelet."quay.example.com"]'
            problems.add(
                f"kubelet key {written!r} is not a registry host as images name it",
                f"{fix} (bare host[:port], lower case, no scheme)",
            )
            continue
        where = f"[kubelet.{_quote(key)}]"
        if not isinstance(table, dict):
            problems.add(f"{where} must be a table", f"write {where} followed by its keys")
            continue
        host = _kubelet_host(key, table, where, path, problems)
        if host is not None:
            hosts[key] = host
    return hosts


def _kubelet_host(
    key: str, table: dict[str, Any], where: str, path: Path, problems: _Problems
) -> KubeletHost | None:
    before = len(problems.found)
    examples = {"audience": f'"{key}"', "quay_url": _example("quay_url")}
    texts = {
        name: _said(
            f"{name} must be a string",
            f"write {name} = {examples.get(name, _example(name))}",
            lambda v: isinstance(v, str) and bool(v.strip()),
        )
        for name in ("audience", "quay_url", "ca_bundle")
    }
    https = _url_rule(False, ("https://",))
    rules: dict[str, Rule] = {
        **_KUBELET_RULES,
        **texts,
        "quay_url": lambda w, n, v: texts["quay_url"](w, n, v) or https(w, n, v),
    }
    kinds = dict.fromkeys(KUBELET_SETTINGS, object)
    values = _read_table(table, kinds, rules, where, problems, _unknown_kubelet_key)
    for name in ("robots", "allow_override_to"):
        if name in values:
            values[name] = tuple(v.strip() for v in values[name])
    if "timeout" in values:
        values["timeout"] = float(values["timeout"])
    if "audience" not in table:
        # Without it any Quay on the node could replay a pod's token at this one.
        problems.add(
            f"{where} is missing audience",
            f'add audience = "{key}", the serviceAccountTokenAudience of the provider entry '
            "for this host in the kubelet's CredentialProviderConfig",
        )
    _resolve_paths(values, path, where, problems)
    if len(problems.found) > before:
        return None
    return KubeletHost(key=key, config_file=str(path), **values)


def _unknown_kubelet_key(name: str) -> str:
    if "tls" in name or "insecure" in name or "http" in name:
        return "TLS is node policy: set ca_bundle (verification cannot be turned off)"
    return f"use one of: {', '.join(KUBELET_SETTINGS)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: the rules of a ``[kubelet."HOST"]`` table's values (its strings: see _kubelet_host)
_KUBELET_RULES: dict[str, Rule] = {
    "robots": _said(
        "robots must be a list of robot names or patterns",
        'write robots = ["team_a+*", "team_b+puller"]',
        lambda v: (
            isinstance(v, list)
            and all(
                isinstance(p, str) and p.strip() and not any(c.isspace() for c in p.strip())
                for p in v
            )
        ),
    ),
    "allow_override_to": _said(
        "allow_override_to must be a list of hosts as [kubelet] tables name them",
        'write allow_override_to = ["quay.example.com"]',
        lambda v: (
            isinstance(v, list)
            and all(isinstance(h, str) and h and _kubelet_key(h) == h for h in v)
        ),
    ),
    "unannotated": _one_of(UNANNOTATED),
    "refresh_margin": lambda w, n, v: (
        _MARGIN(w, n, v)
        if isinstance(v, int) and not isinstance(v, bool)
        else _MARGIN(w, n, float("inf"))
    ),
    "timeout": _said(
        f"timeout must be 1 to {MAX_KUBELET_TIMEOUT:.0f} seconds (the kubelet stops a provider "
        "after 60)",
        "write timeout = 25",
        lambda v: _is_number(v) and 1 <= v <= MAX_KUBELET_TIMEOUT,
    ),
}
