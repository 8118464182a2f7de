"""Which URLs credentials may travel to (standard library and ``text`` only: config
validation uses it)."""

from __future__ import annotations

import ipaddress
import urllib.parse

from docker_credential_quayfed.text import clipped

#: a URL longer than this is cut when shown: a message stays one short line
SHOWN_LIMIT = 100


def is_loopback(host: str) -> bool:
    """True only for a literal loopback address (127.0.0.0/8, ::1), never for a name.

    A name, ``localhost`` included, is resolved through NSS (/etc/hosts, DNS, resolved), and
    whatever answers decides where a cleartext credential would go.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback


def refusal(url: str, *, allow_http: bool) -> tuple[str, str] | None:
    """(problem, fix) when credentials must not be sent to ``url``, else None.

    Only https is accepted; plain http only to a loopback host and only when allowed.
    A URL with user info, or with a port out of range, is refused too.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"{shown(url)} is not a valid URL", "check the host and port"
    if not host:
        return f"{shown(url)} has no host", "write it as https://HOST[:PORT]/..."
    # The URL is never repeated whole: its user info may hold a password.
    if "@" in parts.netloc or "\\" in url:
        return f"{shown(url)} carries user info", "remove the user@ part: secrets never go in URLs"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback(host):
        if allow_http:
            return None
        return (
            f"{shown(url)} is plain http",
            "use https, or set allow_insecure_http = true for this loopback test server",
        )
    if parts.scheme == "http" and _names_loopback(host):
        return (
            f"{shown(url)} is plain http to a host name",
            "use https; plain http goes only to a literal loopback address such as "
            "http://127.0.0.1:PORT or http://[::1]:PORT (with allow_insecure_http = true)",
        )
    return (
        f"{shown(url)} is not https",
        "use an https:// URL: credentials never travel in clear text",
    )


def _names_loopback(host: str) -> bool:
    """A name meant as loopback (``localhost``, ``*.localhost``): refused with its own fix."""
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def shown(url: str) -> str:
    """The URL as it may appear in a message: no user info, no query (either may hold secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return clipped(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")), SHOWN_LIMIT)


_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``url``, the port the scheme's default when unwritten; None
    when it has no host or an unreadable port."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or (port is None and scheme not in _DEFAULT_PORTS):
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def same_origin(url: str, issuer: str, extra_hosts: tuple[str, ...]) -> bool:
    """True when ``url`` has the issuer's scheme, host and port, or the issuer's scheme on one
    of ``extra_hosts`` (``host`` for the scheme's default port, or ``host:port``)."""
    found, expected = origin(url), origin(issuer)
    if found is None or expected is None or found[0] != expected[0]:
        return False
    if found == expected:
        return True
    return any(origin(f"{found[0]}://{extra}") == found for extra in extra_hosts)


def netloc(url: str) -> str:
    """``host`` or ``host:port`` as ``endpoint_hosts`` lists it (the port only when it is not
    the scheme's default)."""
    found = origin(url)
    if found is None:
        return ""
    scheme, host, port = found
    host = f"[{host}]" if ":" in host else host
    return host if _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
