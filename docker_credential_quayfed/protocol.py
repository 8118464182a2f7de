"""The docker-credential-helpers wire format.

Knows nothing of OIDC or Quay: it turns stdin into a registry key or a credential, and
credentials into the exact stdout clients parse. The part a cache hit needs (reading the host,
writing the JSON) lives in ``fastpath``, which a hit loads alone.
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

from docker_credential_quayfed.fastpath import credentials_json, host_key, json_string
from docker_credential_quayfed.text import clipped

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from docker_credential_quayfed.errors import UsageError

__all__ = [
    "ACTIONS",
    "NOT_FOUND",
    "Credentials",
    "encode_list",
    "json_string",
    "parse_store",
    "registry_key",
]

ACTIONS = ("get", "store", "erase", "list", "version")

#: a DNS name (253) or a bracketed IPv6 address, with ":65535": anything longer is not a host
MAX_HOST_LENGTH = 253 + len(":65535")

#: clients compare trimmed stdout to exactly this string to mean "no credentials, go anonymous"
NOT_FOUND = "credentials not found in native keychain"


class Credentials:
    __slots__ = ("secret", "server_url", "username")

    def __init__(self, server_url: str, username: str, secret: str) -> None:
        self.server_url = server_url
        self.username = username
        self.secret = secret

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (
            (self.server_url, self.username, self.secret)
            == (other.server_url, other.username, other.secret)
        )

    def __repr__(self) -> str:
        return f"Credentials({self.server_url!r}, {self.username!r}, <secret>)"

    def to_json(self) -> str:
        return credentials_json(self.server_url, self.username, self.secret)


def registry_key(server: str) -> str:
    """Normalise what a client sends (``https://Quay.Example.com:443/v2/``) to ``host[:port]``."""
    host = host_key(server)
    # User info or a backslash could make one host read as another: never guess, refuse.
    if host is None or len(host) > MAX_HOST_LENGTH:
        raise _usage(
            f"no registry host name on stdin (got '{clipped(server.strip(), 80)}')",
            "send the registry host, e.g. 'quay.example.com'",
        )
    return host


def table_key(server: str) -> str:
    """``server`` as the config's tables name a host: :func:`registry_key` without the default
    https port (an image of ``quay.io:443`` is pulled from ``quay.io``)."""
    key = registry_key(server)
    return key[: -len(":443")] if key.endswith(":443") and not key.startswith("[") else key


def parse_store(payload: str) -> Credentials:
    """The JSON ``store`` receives: ``{"ServerURL", "Username", "Secret"}``."""
    import json

    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise _usage(
            "store expects JSON on stdin",
            'send {"ServerURL": ..., "Username": ..., "Secret": ...}',
        ) from exc
    if not isinstance(value, dict):
        raise _usage("store expects a JSON object on stdin", "send ServerURL/Username/Secret")
    fields = {}
    for name in ("ServerURL", "Username", "Secret"):
        item = value.get(name)
        if not isinstance(item, str) or not item.strip():
            raise _usage(f"store input has no {name}", "send ServerURL, Username and Secret")
        fields[name] = item.strip()
    return Credentials(
        server_url=registry_key(fields["ServerURL"]),
        username=fields["Username"],
        secret=fields["Secret"],
    )


def encode_list(entries: dict[str, str]) -> str:
    body = ", ".join(f"{json_string(k)}: {json_string(v)}" for k, v in sorted(entries.items()))
    return "{" + body + "}"


def _usage(problem: str, fix: str) -> "UsageError":
    """The error for bad input (imported only then: a cache hit never needs it)."""
    from docker_credential_quayfed.errors import UsageError

    return UsageError(problem, fix)
