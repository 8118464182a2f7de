"""The docker-credential-helpers wire format.

Knows nothing of OIDC or Quay: it turns stdin into a registry key or a credential, and
credentials into the exact stdout clients parse. It imports nothing beyond what the
interpreter has loaded at startup, because every `get` goes through it.
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from docker_credential_quayfed.errors import UsageError

ACTIONS = ("get", "store", "erase", "list", "version")

#: clients compare trimmed stdout to exactly this string to mean "no credentials, go anonymous"
NOT_FOUND = "credentials not found in native keychain"

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_IPV6_CHARS = frozenset("0123456789abcdef:.")


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
        return (
            f'{{"ServerURL": {json_string(self.server_url)}, '
            f'"Username": {json_string(self.username)}, "Secret": {json_string(self.secret)}}}'
        )


def json_string(text: str) -> str:
    """A JSON string literal, byte-for-byte what ``json.dumps`` writes (ensure_ascii)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def registry_key(server: str) -> str:
    """Normalise what a client sends (``https://Quay.Example.com:443/v2/``) to ``host[:port]``."""
    text = server.strip()
    lowered = text.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].strip().lower()
    # User info or a backslash could make one host read as another: never guess, refuse.
    if not _is_host(host):
        raise _usage(
            f"no registry host name on stdin (got {server.strip()[:80]!r})",
            "send the registry host, e.g. 'quay.example.com'",
        )
    return host


def _is_host(host: str) -> bool:
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end < 2:
            return False
        name, rest = host[1:end], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
        if not set(name) <= _IPV6_CHARS:
            return False
    else:
        if host.count(":") > 1:
            return False
        name, _, port = host.partition(":")
        if ":" in host and not port:
            return False
        if not name or name[0] in ".-" or not set(name) <= _HOST_CHARS:
            return False
    return not port or (port.isdigit() and port.isascii() and 0 < int(port[:6]) <= 65535)


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
