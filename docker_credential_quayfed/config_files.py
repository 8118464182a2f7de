"""Editing our config.toml and the clients' credHelpers (docker config.json, containers auth.json).

Every edit is atomic, keeps the file's other content and mode, leaves a ``.bak`` of the old
file, and refuses a file it cannot parse rather than overwriting it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker_credential_quayfed import config, files, paths
from docker_credential_quayfed.errors import ConfigError
from docker_credential_quayfed.sources import BY_NAME

HELPER_NAME = "quayfed"


@dataclass(frozen=True)
class Change:
    path: Path
    what: str  # "created", "updated", "unchanged", "removed", "absent"


# -- client files ----------------------------------------------------------------------------
def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG", "").strip()
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def containers_auth_path() -> Path:
    """Where podman, skopeo and buildah look first: REGISTRY_AUTH_FILE, then XDG dirs."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE", "").strip()
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "containers" / "auth.json"
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(config_home) / "containers" / "auth.json"


def client_files(targets: str) -> list[Path]:
    chosen = []
    if targets in ("docker", "all"):
        chosen.append(docker_config_path())
    if targets in ("podman", "all"):
        chosen.append(containers_auth_path())
    return chosen


def read_json_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when absent; ConfigError when it cannot be parsed."""
    raw = config.read_text(path)
    if raw is None:
        return None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise ConfigError(
            f"{path} is not valid JSON, so it was left untouched", "fix or remove it, then retry"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not a JSON object; left untouched", "fix or remove it")
    return value


def set_cred_helper(path: Path, host: str) -> Change:
    document = read_json_file(path)
    created = document is None
    document = document or {}
    helpers = document.get("credHelpers")
    if helpers is None:
        helpers = {}
    if not isinstance(helpers, dict):
        raise ConfigError(f"{path}: credHelpers is not an object; left untouched", "fix it")
    if helpers.get(host) == HELPER_NAME:
        return Change(path, "unchanged")
    helpers[host] = HELPER_NAME
    document["credHelpers"] = helpers
    _write_json(path, document)
    return Change(path, "created" if created else "updated")


def remove_cred_helper(path: Path, host: str) -> Change:
    document = read_json_file(path)
    if document is None:
        return Change(path, "absent")
    helpers = document.get("credHelpers")
    if not isinstance(helpers, dict) or helpers.get(host) != HELPER_NAME:
        return Change(path, "unchanged")
    del helpers[host]
    if not helpers:
        del document["credHelpers"]
    _write_json(path, document)
    return Change(path, "removed")


def cred_helper_wired(path: Path, host: str) -> bool | None:
    """True/False for a readable file, None when the file does not exist."""
    document = read_json_file(path)
    if document is None:
        return None
    helpers = document.get("credHelpers")
    return isinstance(helpers, dict) and helpers.get(host) == HELPER_NAME


def _write_json(path: Path, document: dict[str, Any]) -> None:
    _write_keeping_mode(path, (json.dumps(document, indent="\t") + "\n").encode())


def _write_keeping_mode(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` atomically, keeping its mode and a ``.bak`` of the old one.

    A symlink (a dotfiles repository's file) is written through: its target gets the new
    content, the link stays. The ``.bak`` goes next to ``path``, private from its creation.
    """
    target = Path(os.path.realpath(path))
    old = config.read_text(target)
    if old is None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.atomic_write(target, data, 0o600)
        return
    mode = stat.S_IMODE(target.stat().st_mode)
    # atomic_write creates it 0600 and narrows it before it has its name: never wider.
    files.atomic_write(
        path.with_name(path.name + ".bak"), old.encode("utf-8"), mode & 0o600 | 0o400
    )
    files.atomic_write(target, data, mode)


# -- our config.toml ---------------------------------------------------------------------------
def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return json.dumps([str(item) for item in value])  # a JSON string array is TOML too
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _header(host: str) -> str:
    return f"[registries.{json.dumps(host)}]"


def _table_span(lines: list[str], host: str) -> tuple[int, int] | None:
    """Line range of ``host``'s table: its header up to the next table header."""
    wanted = {_header(host), f"[registries.'{host}']"}
    if all(c.isalnum() or c in "-_" for c in host):
        wanted.add(f"[registries.{host}]")
    start = None
    for number, line in enumerate(lines):
        text = line.strip()
        if start is None:
            if text in wanted:
                start = number
        elif text.startswith("["):
            end = number
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            return start, end
    return None if start is None else (start, len(lines))


def upsert_registry(path: Path, host: str, settings: dict[str, object]) -> Change:
    """Write ``settings`` into host's table (keys not given stay as they are); validate first."""
    found = config.read_text(path)
    text, existed = (found, True) if found is not None else ("", False)
    current = config.parse_text(text, path, BY_NAME) if existed else config.Config(path, {})
    table: dict[str, object] = {}
    old = current.registries.get(host)
    lines = text.splitlines()
    span = _table_span(lines, host)
    if old is not None and span is not None:
        for line in lines[span[0] + 1 : span[1]]:
            name, sep, _ = line.partition("=")
            name = name.strip()
            if sep and name and not name.startswith("#"):
                table[name] = getattr(old, name)
    table.update({k: v for k, v in settings.items() if v is not None})
    missing = missing_settings(table)
    if missing:
        from docker_credential_quayfed.errors import UsageError

        raise UsageError(
            f"{host} needs {', '.join(missing)}",
            "add them to the command (see 'docker-credential-quayfed configure --help')",
        )
    block = [_header(host), *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    if span is not None:
        new_lines = lines[: span[0]] + block + lines[span[1] :]
    else:
        new_lines = [*lines, *([""] if lines and lines[-1].strip() else []), *block]
    new_text = "\n".join(new_lines) + "\n"
    if new_text == text:
        return Change(path, "unchanged")
    config.parse_text(new_text, path, BY_NAME)  # refuse to write a config that would not load
    _write_keeping_mode(path, new_text.encode("utf-8"))
    return Change(path, "updated" if existed else "created")


def missing_settings(table: dict[str, object]) -> list[str]:
    """The flags still needed for ``table`` to load, all at once ("--a", "--b|--c")."""
    source = BY_NAME.get(str(table.get("source", "")))
    return [
        "|".join("--" + name.replace("_", "-") for name in group)
        for group in config.missing_for(table, source)
    ]


def remove_registry(path: Path, host: str) -> Change:
    text = config.read_text(path)
    if text is None:
        return Change(path, "absent")
    config.parse_text(text, path, BY_NAME)
    lines = text.splitlines()
    span = _table_span(lines, host)
    if span is None:
        return Change(path, "unchanged")
    new_lines = lines[: span[0]] + lines[span[1] :]
    while new_lines and not new_lines[-1].strip():
        new_lines.pop()
    _write_keeping_mode(path, ("\n".join(new_lines) + "\n").encode("utf-8"))
    return Change(path, "removed")


def on_path() -> str | None:
    return shutil.which(paths.APP_NAME)
