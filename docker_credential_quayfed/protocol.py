"""The docker-credential-helpers wire format (standard library only).

Knows nothing of OIDC or Quay: it turns stdin into a registry key or a credential, and
credentials into the exact stdout clients parse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from docker_credential_quayfed.errors import UsageError

ACTIONS = ("get", "store", "erase", "list", "version")

#: clients compare trimmed stdout to exactly this string to mean "no credentials, go anonymous"
NOT_FOUND = "credentials not found in native keychain"

_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_][a-z0-9_.-]*)(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Credentials:
    server_url: str
    username: str
    secret: str

    def to_json(self) -> str:
        return json.dumps(
            {"ServerURL": self.server_url, "Username": self.username, "Secret": self.secret}
        )


def registry_key(server: str) -> str:
    """Normalise what a client sends (``https://Quay.Example.com:443/v2/``) to ``host[:port]``."""
    text = server.strip()
    lowered = text.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = host.rsplit("@", 1)[-1].strip().lower()
    if not _HOST.fullmatch(host):
        raise UsageError(
            f"no registry host name on stdin (got {server.strip()[:80]!r})",
            "send the registry host, e.g. 'quay.example.com'",
        )
    return host


def parse_store(payload: str) -> Credentials:
    """The JSON ``store`` receives: ``{"ServerURL", "Username", "Secret"}``."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise UsageError(
            "store expects JSON on stdin",
            'send {"ServerURL": ..., "Username": ..., "Secret": ...}',
        ) from exc
    if not isinstance(value, dict):
        raise UsageError("store expects a JSON object on stdin", "send ServerURL/Username/Secret")
    fields = {}
    for name in ("ServerURL", "Username", "Secret"):
        item = value.get(name)
        if not isinstance(item, str) or not item.strip():
            raise UsageError(f"store input has no {name}", "send ServerURL, Username and Secret")
        fields[name] = item.strip()
    return Credentials(
        server_url=registry_key(fields["ServerURL"]),
        username=fields["Username"],
        secret=fields["Secret"],
    )


def encode_list(entries: dict[str, str]) -> str:
    return json.dumps(dict(sorted(entries.items())))
