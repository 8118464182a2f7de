"""A programmable hostile HTTPS server on 127.0.0.1 that plays both the OIDC issuer and Quay.

One :class:`HostileServer` owns a trusted listener, one listener per TLS failure (a certificate
from an unknown CA, one for the wrong name, an expired one) and a port that refuses connections.
Each :class:`Case` lives under its own path prefix (``/c/<id>/issuer`` and ``/c/<id>/quay``), so
many cases run at once against the same listeners, and each says which fault its issuer side and
its Quay side play (``None``: healthy).

The issuer side serves discovery, JWKS and a password-grant token endpoint (confidential client,
client_secret_basic); the Quay side serves ``GET /oauth2/federation/robot/token`` and checks the
JWT the way Quay does (RS256 with a known ``kid``, ``iss``, ``sub``, ``iat`` and ``exp`` required,
30 s of leeway). Connection faults (``refused``, ``dns``, ``tls_*``) change the side's URL; HTTP
and token faults hit the side's working endpoint (the issuer's token endpoint, Quay's exchange),
while the issuer's discovery and JWKS stay healthy so that the password is always sent.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import itertools
import json
import os
import secrets
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
import trustme

from quay_sandbox.keys import SigningKey, generate_rsa_key, jwks
from quay_sandbox.server import werkzeug_error_page

ISSUER, QUAY = "issuer", "quay"
FEDERATION_PATH = "/oauth2/federation/robot/token"
TOKEN_PATH = "/protocol/openid-connect/token"
JWKS_PATH = "/protocol/openid-connect/certs"
DISCOVERY_PATH = "/.well-known/openid-configuration"

#: what each fault makes a side do
FAULTS: dict[str, str] = {
    "refused": "the port refuses connections",
    "dns": "the host name is under .invalid and does not resolve",
    "tls_unknown_ca": "TLS certificate signed by a CA the helper does not trust",
    "tls_wrong_name": "TLS certificate for another host name",
    "tls_expired": "TLS certificate that expired yesterday",
    "http_500": "HTTP 500 with a JSON error body",
    "http_502": "HTTP 502 with a proxy's HTML page",
    "http_503": "HTTP 503 with a proxy's HTML page",
    "http_429": "HTTP 429 without Retry-After",
    "http_429_retry_after": "HTTP 429 with Retry-After: 30",
    "hang": "accepts and reads the request, never answers",
    "drip_headers": "a good answer, 1 byte every 4 s from the status line on",
    "drip_body": "good headers at once, then the body 1 byte every 4 s",
    "trickle_body": "good headers at once, then the body 1 byte every 0.25 s",
    "junk": "HTTP 200, JSON content type, 4 KiB of random bytes",
    "truncated": "HTTP 200 whose Content-Length promises more than is sent before closing",
    "html_200": "HTTP 200 with an HTML login page",
    "html_500": "HTTP 500 with an HTML error page",
    "redirect": "HTTP 302 to a healthy copy of the same endpoint",
    "huge": "HTTP 200, chunked JSON of 3 GiB streamed lazily",
    "no_exp": "the token it issues (id_token or robot token) has no exp",
    "expired": "the token it issues expired 5 minutes ago",
    "skew_ahead": "the token it issues has iat and exp 10 minutes in the future",
    "skew_behind": "the token it issues has iat and exp 10 minutes in the past",
    "echo": "echoes the credentials it received in its error (Quay: 401 with the Basic "
    "header; issuer: 400 invalid_grant with the form body)",
}
CONNECTION_FAULTS = frozenset({"refused", "dns", "tls_unknown_ca", "tls_wrong_name", "tls_expired"})
TLS_FAULTS = ("tls_unknown_ca", "tls_wrong_name", "tls_expired")
#: faults that send a good answer slowly or cut it short
_WRAPPING_FAULTS = frozenset({"drip_headers", "drip_body", "trickle_body", "truncated"})
_CLOCK_SHIFTS = {"skew_ahead": 600.0, "skew_behind": -600.0}

DRIP_SECONDS = 4.0
TRICKLE_SECONDS = 0.25
HUGE_BYTES = 3 << 30
HANG_SECONDS = 300.0
#: the issuer's id_token lifetime (Keycloak's default) and Quay's robot-token lifetime
OIDC_LIFETIME = 300
ROBOT_LIFETIME = 3600
#: how much clock skew Quay allows when it checks the issuer's JWT
QUAY_LEEWAY = 30
# A connection left silent this long is dropped, so no handler thread outlives a test for long.
SOCKET_TIMEOUT = 30.0
_HUGE_BLOCK = b"A" * (1 << 20)


@dataclass(frozen=True)
class Minted:
    """A JWT a side issued: what kind, the token, when (true clock) and its own iat/exp."""

    kind: str
    token: str
    minted_at: float
    iat: float | None
    exp: float | None


@dataclass
class Reply:
    """What a side answers; ``style`` says how it is written (``plain`` or a fault's name)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    style: str = "plain"
    chunks: Iterator[bytes] | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def _json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/json", headers)


def _html_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/html; charset=utf-8")


_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body>\n"
    '<form method="post" action="/login"><input name="username"><input name="password" '
    'type="password"><button>Sign in</button></form>\n</body></html>\n'
)
_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _fault_reply(fault: str, healthy_mirror: str, role: str, request: Request) -> Reply | None:
    """The answer of a fault that replaces the side's answer outright, else None."""
    if fault == "http_500":
        return _json_reply(500, {"error": "server_error", "error_description": "internal error"})
    if fault == "html_500":
        return _html_reply(500, werkzeug_error_page(500, "The server encountered an error."))
    if fault in ("http_502", "http_503"):
        status = int(fault[-3:])
        reason = "Bad Gateway" if status == 502 else "Service Temporarily Unavailable"
        return _html_reply(status, _PROXY_PAGE.format(status=status, reason=reason))
    if fault == "http_429":
        return _json_reply(429, {"error": "too_many_requests"})
    if fault == "http_429_retry_after":
        return _json_reply(429, {"error": "too_many_requests"}, (("Retry-After", "30"),))
    if fault == "hang":
        return Reply(200, style="hang")
    if fault == "junk":
        return Reply(200, os.urandom(4096), "application/json")
    if fault == "html_200":
        return _html_reply(200, _LOGIN_PAGE)
    if fault == "redirect":
        return Reply(302, b"", "text/plain", (("Location", healthy_mirror),))
    if fault == "huge":
        field_name = "id_token" if role == ISSUER else "token"
        return Reply(200, style="chunked", chunks=_huge_body(field_name))
    if fault == "echo":
        if role == QUAY:
            echoed = request.header("authorization")
            return _json_reply(401, {"error": f"Invalid basic auth header: {echoed}"})
        form = request.body.decode("utf-8", "replace")
        return _json_reply(400, {"error": "invalid_grant", "error_description": form})
    return None


def _huge_body(field_name: str) -> Iterator[bytes]:
    """A JSON string that never closes, 3 GiB in all, made one shared 1 MiB block at a time."""
    yield f'{{"{field_name}": "'.encode()
    for _ in range(HUGE_BYTES // len(_HUGE_BLOCK)):
        yield _HUGE_BLOCK


@dataclass
class Case:
    """One issuer and one Quay, each healthy (fault None) or playing one fault."""

    server: HostileServer
    id: str
    issuer_fault: str | None
    quay_fault: str | None
    robot: str = "org+bot"
    username: str = "jdoe"
    client_id: str = "quayfed-cli"
    subject: str = field(default_factory=lambda: str(uuid.uuid4()))
    password: str = field(default_factory=lambda: f"pw {secrets.token_urlsafe(18)}/+&=%")
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    minted: list[Minted] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {ISSUER: 0, QUAY: 0})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- addresses ---------------------------------------------------------------------------
    def fault_of(self, role: str) -> str | None:
        return self.issuer_fault if role == ISSUER else self.quay_fault

    def base_url(self, role: str) -> str:
        fault = self.fault_of(role)
        host, port = "127.0.0.1", self.server.port
        if fault == "refused":
            port = self.server.refused_port
        elif fault == "dns":
            host = f"{role}.faults.invalid"
        elif fault in TLS_FAULTS:
            port = self.server.tls_fault_ports[fault]
        return f"https://{host}:{port}/c/{self.id}/{role}"

    @property
    def issuer_url(self) -> str:
        return self.base_url(ISSUER)

    @property
    def quay_url(self) -> str:
        return self.base_url(QUAY)

    def healthy_url(self, role: str, endpoint: str) -> str:
        return f"https://127.0.0.1:{self.server.port}/c/{self.id}/{role}/healthy{endpoint}"

    # -- tokens ------------------------------------------------------------------------------
    def _sign(self, key: SigningKey, kind: str, claims: dict[str, Any]) -> str:
        token = key.sign(claims)
        iat, exp = claims.get("iat"), claims.get("exp")
        with self._lock:
            self.minted.append(Minted(kind, token, time.time(), iat, exp))
        return token

    def _times(self, fault: str | None, lifetime: int) -> dict[str, float]:
        now = time.time()
        if fault == "no_exp":
            return {"iat": now}
        if fault == "expired":
            return {"iat": now - lifetime - 300, "exp": now - 300}
        shift = _CLOCK_SHIFTS.get(fault or "", 0.0)
        return {"iat": now + shift, "exp": now + shift + lifetime}

    def mint_oidc(self, kind: str, fault: str | None) -> str:
        claims = {
            "iss": self.issuer_url,
            "sub": self.subject,
            "aud": self.client_id,
            "azp": self.client_id,
            "preferred_username": self.username,
            "typ": "ID" if kind == "id_token" else "Bearer",
            **self._times(fault, OIDC_LIFETIME),
        }
        return self._sign(self.server.issuer_key, kind, claims)

    def mint_robot_token(
        self, fault: str | None = None, *, issued_at: float | None = None, registry: str = ""
    ) -> str:
        """A robot token as Quay makes it; ``issued_at`` backdates a healthy one."""
        times = self._times(fault, ROBOT_LIFETIME)
        if issued_at is not None:
            times = {"iat": issued_at, "exp": issued_at + ROBOT_LIFETIME}
        claims = {
            "iss": "quay",
            "aud": registry or "quay.faults.example",
            "sub": self.robot,
            "nbf": times["iat"],
            "access": [],
            "context": {"kind": "robot_federation"},
            **times,
        }
        return self._sign(self.server.quay_key, "robot_token", claims)

    def request_count(self) -> int:
        """Requests either side has received so far."""
        with self._lock:
            return sum(self.requests.values())

    def minted_of(self, kind: str) -> list[Minted]:
        with self._lock:
            return [m for m in self.minted if m.kind == kind]

    def secrets(self) -> dict[str, str]:
        """Every secret this case's sides handled, and the encodings they travel in."""
        found = {
            "password": self.password,
            "password (form-encoded)": urllib.parse.quote_plus(self.password),
            "password (percent-encoded)": urllib.parse.quote(self.password, safe=""),
            "client secret": self.client_secret,
            "client_id:secret (base64)": _b64(f"{self.client_id}:{self.client_secret}"),
        }
        with self._lock:
            minted = list(self.minted)
        for number, item in enumerate(minted):
            found[f"{item.kind} #{number}"] = item.token
            if item.kind != "robot_token":
                found[f"{self.robot}:{item.kind} #{number} (base64)"] = _b64(
                    f"{self.robot}:{item.token}"
                )
        return found

    # -- answering ---------------------------------------------------------------------------
    def answer(self, role: str, endpoint: str, request: Request, healthy: bool) -> Reply:
        with self._lock:
            self.requests[role] += 1
        fault = None if healthy else self.fault_of(role)
        working = TOKEN_PATH if role == ISSUER else FEDERATION_PATH
        if endpoint != working:
            return self._issuer_document(endpoint) if role == ISSUER else _not_found()
        if fault is not None:
            replaced = _fault_reply(fault, self.healthy_url(role, endpoint), role, request)
            if replaced is not None:
                return replaced
        if role == ISSUER:
            reply = self._token_endpoint(request, fault)
        else:
            reply = self._exchange(request, fault)
        if fault in _WRAPPING_FAULTS:
            reply.style = fault or "plain"
        return reply

    def _issuer_document(self, endpoint: str) -> Reply:
        if endpoint == DISCOVERY_PATH:
            return _json_reply(
                200,
                {
                    "issuer": self.issuer_url,
                    "token_endpoint": self.issuer_url + TOKEN_PATH,
                    "jwks_uri": self.issuer_url + JWKS_PATH,
                    "grant_types_supported": ["password", "client_credentials"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        if endpoint == JWKS_PATH:
            return _json_reply(200, jwks([self.server.issuer_key]))
        return _not_found()

    def _token_endpoint(self, request: Request, fault: str | None) -> Reply:
        if request.method != "POST":
            return _json_reply(405, {"error": "invalid_request"})
        form = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace")))
        expected_auth = "Basic " + _b64(f"{self.client_id}:{self.client_secret}")
        if request.header("authorization") != expected_auth:
            return _json_reply(
                401, {"error": "invalid_client", "error_description": "Invalid client credentials"}
            )
        if form.get("grant_type") != "password":
            return _json_reply(400, {"error": "unsupported_grant_type"})
        if form.get("username") != self.username or form.get("password") != self.password:
            return _json_reply(
                401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
            )
        return _json_reply(
            200,
            {
                "access_token": self.mint_oidc("access_token", fault),
                "id_token": self.mint_oidc("id_token", fault),
                "token_type": "Bearer",
                "expires_in": OIDC_LIFETIME,
                "scope": "openid profile",
            },
        )

    def _exchange(self, request: Request, fault: str | None) -> Reply:
        header = request.header("authorization")
        if not header:
            return _json_reply(401, {"error": "No auth header"})
        scheme, _, encoded = header.partition(" ")
        try:
            username, _, token = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return _json_reply(401, {"error": "Invalid basic auth header"})
        if scheme != "Basic" or not token:
            return _json_reply(401, {"error": "Invalid basic auth header"})
        if username != self.robot:
            return _json_reply(400, {"message": "Could not find robot with specified username"})
        try:
            if jwt.get_unverified_header(token).get("kid") != self.server.issuer_key.kid:
                return _html_reply(500, werkzeug_error_page(500, "Internal Server Error"))
            claims = jwt.decode(
                token,
                self.server.issuer_key.private_key.public_key(),
                algorithms=["RS256", "RS384"],
                issuer=self.issuer_url,
                leeway=QUAY_LEEWAY,
                options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            return _json_reply(400, {"message": f"Invalid token: {exc}"})
        if claims.get("sub") != self.subject:
            return _json_reply(400, {"message": "Token does not match robot"})
        return _json_reply(200, {"token": self.mint_robot_token(fault)})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _not_found() -> Reply:
    return _json_reply(404, {"error": "not found"})


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a hostile server's clients hang up all the time."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        listener: _Listener = self.server  # type: ignore[assignment]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if 0 < length <= 1 << 20 else b""
        request = Request(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        reply = listener.hostile.route(request)
        try:
            self._write(reply, listener.hostile.stopping)
        except (OSError, ssl.SSLError):
            self.close_connection = True  # the client hung up, as clients under test do

    def _write(self, reply: Reply, stopping: threading.Event) -> None:
        if reply.style == "hang":
            stopping.wait(HANG_SECONDS)
            self.close_connection = True
            return
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Type: {reply.content_type}")
        if reply.chunks is not None:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {len(reply.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        out = self.wfile
        if reply.chunks is not None:
            out.write(head)
            for chunk in reply.chunks:
                out.write(b"%x\r\n" % len(chunk))
                out.write(chunk)
                out.write(b"\r\n")
            out.write(b"0\r\n\r\n")
        elif reply.style in ("drip_headers", "drip_body", "trickle_body"):
            pause = TRICKLE_SECONDS if reply.style == "trickle_body" else DRIP_SECONDS
            slow = head + reply.body
            if reply.style != "drip_headers":
                out.write(head)
                slow = reply.body
            for index in range(len(slow)):
                out.write(slow[index : index + 1])
                if stopping.wait(pause):
                    break
            self.close_connection = True
        elif reply.style == "truncated":
            out.write(head + reply.body[: len(reply.body) // 2])
            self.close_connection = True
        else:
            out.write(head + reply.body)


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, hostile: HostileServer, context: ssl.SSLContext) -> None:
        self.hostile = hostile
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(SOCKET_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a client that distrusts the certificate hangs up in the handshake
        try:
            _Handler(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: errors here are clients hanging up, which is what the tests make them do."""


def _context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


class HostileServer:
    """The listeners, the signing keys and the registered cases; a context manager."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.ca_bundle = directory / "hostile-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.issuer_key = generate_rsa_key()
        self.quay_key = generate_rsa_key()
        self.stopping = threading.Event()
        self._cases: dict[str, Case] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._good = _Listener(self, _context(ca.issue_cert("127.0.0.1", "localhost")))
        self._tls_faults = {
            "tls_unknown_ca": _Listener(self, _context(trustme.CA().issue_cert("127.0.0.1"))),
            "tls_wrong_name": _Listener(self, _context(ca.issue_cert("wrong-name.faults.example"))),
            "tls_expired": _Listener(
                self,
                _context(
                    ca.issue_cert(
                        "127.0.0.1",
                        not_before=now - datetime.timedelta(days=30),
                        not_after=now - datetime.timedelta(days=1),
                    )
                ),
            ),
        }
        # Bound but never listening: connections are refused and the port cannot be reused.
        self._refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refused.bind(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._good.port

    @property
    def refused_port(self) -> int:
        return int(self._refused.getsockname()[1])

    @property
    def tls_fault_ports(self) -> dict[str, int]:
        return {name: listener.port for name, listener in self._tls_faults.items()}

    def _listeners(self) -> list[_Listener]:
        return [self._good, *self._tls_faults.values()]

    def start(self) -> HostileServer:
        for listener in self._listeners():
            thread = threading.Thread(
                target=listener.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"hostile-{listener.port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self.stopping.set()
        for listener in self._listeners():
            listener.shutdown()
            listener.server_close()
        self._refused.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def case(self, *, issuer: str | None = None, quay: str | None = None) -> Case:
        """A new case whose issuer and Quay play the given faults (None: healthy)."""
        for fault in (issuer, quay):
            if fault is not None and fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            case = Case(self, f"c{next(self._ids)}", issuer, quay)
            self._cases[case.id] = case
        return case

    def route(self, request: Request) -> Reply:
        path = urllib.parse.urlsplit(request.path).path
        parts = path.split("/")
        if len(parts) < 4 or parts[1] != "c" or parts[3] not in (ISSUER, QUAY):
            return _not_found()
        with self._lock:
            case = self._cases.get(parts[2])
        if case is None:
            return _not_found()
        rest = parts[4:]
        healthy = bool(rest) and rest[0] == "healthy"
        endpoint = "/" + "/".join(rest[1:] if healthy else rest)
        return case.answer(parts[3], endpoint, request, healthy)
