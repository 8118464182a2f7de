"""The "Works with" table, filled from what the suite really verified in this run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.clients import CLIENTS, MORE_CLIENTS, client_version

OUTPUT_ENV = "QUAYFED_WORKS_WITH_OUT"

CONFIG_FILES = {
    "docker": "`$DOCKER_CONFIG/config.json`",
    "auth.json": "containers `auth.json` (`REGISTRY_AUTH_FILE` / `--authfile`)",
    "home-docker": "`~/.docker/config.json`",
    "helm-registry": "helm's `registry/config.json` (`--registry-config`)",
}


@dataclass
class ClientRecord:
    version: str = ""
    config_files: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)


@dataclass
class WorksWith:
    """Collects, per client, the config files used and the behaviours verified."""

    records: dict[str, ClientRecord] = field(default_factory=dict)

    def verified(self, client: str, what: str, config_file: str = "") -> None:
        """Record a verified behaviour; `config_file` defaults to what the suite gives each
        client: docker's config.json for docker, the containers auth.json for the others."""
        config_file = config_file or ("docker" if client == "docker" else "auth.json")
        record = self.records.setdefault(client, ClientRecord())
        if not record.version:
            record.version = client_version(client)
        label = CONFIG_FILES[config_file]
        if label not in record.config_files:
            record.config_files.append(label)
        if what not in record.verified:
            record.verified.append(what)

    def markdown(self) -> str:
        lines = [
            "| Client | Version tested | Config file used | Verified |",
            "|---|---|---|---|",
        ]
        for client in (*CLIENTS, *MORE_CLIENTS):
            record = self.records.get(client)
            if record is None:
                continue
            lines.append(
                f"| {client} | {record.version} | {'; '.join(record.config_files)} "
                f"| {'; '.join(record.verified)} |"
            )
        return "\n".join(lines) + "\n"

    def write_if_requested(self) -> Path | None:
        target = os.environ.get(OUTPUT_ENV, "").strip()
        if not target or not self.records:
            return None
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())
        return path
