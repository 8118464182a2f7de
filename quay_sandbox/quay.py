"""A Quay emulator: robot federation exchange, federation admin API and registry token server.

It reproduces what quay/quay does (see ``quay-federation.md``): the same status codes and bodies
for every failure of ``GET /oauth2/federation/robot/token``, discovery and JWKS fetched over
HTTPS on every exchange, and robot tokens signed by an instance key. It adds a JSON control API
under ``/_emulator/`` (and the same controls as Python methods) for tests: robots, federation,
permissions, token lifetime, admin tokens, counters and injected faults.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fnmatch
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .keys import SigningKey, generate_rsa_key
from .server import Request, Response, RunningServer, serve_wsgi, werkzeug_error_page

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .tls import TestPKI

EXCHANGE_PATH = "/oauth2/federation/robot/token"
REGISTRY_AUTH_PATH = "/v2/auth"
CONTROL_PREFIX = "/_emulator/"
CLOCK_SKEW_SECONDS = 30
ALLOWED_ALGORITHMS = ("RS256", "RS384")
FAULT_KINDS = ("html500", "502", "503", "429", "hang", "garbage")

_INTERNAL_ERROR_TEXT = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)


class _Html500(Exception):
    """Quay raises an unhandled exception: Flask answers its 500 HTML page."""


class _BadRequest(Exception):
    """Quay's InvalidRobotCredentialException / InvalidRobotException: a 400 JSON answer."""


@dataclass
class Robot:
    """A robot account: full name ``namespace+short``, federation entries and permissions."""

    name: str
    federation: list[dict[str, Any]] = field(default_factory=list)
    permissions: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Federated:
    """Whom the exchange issued a robot token to: the robot, and the verified JWT's iss and sub."""

    robot: str
    issuer: str
    subject: str


@dataclass(frozen=True)
class AdminGrant:
    """What an OAuth token may administer: organisations, and the user's own robots."""

    orgs: frozenset[str]
    username: str | None = None


@dataclass
class Fault:
    """An injected failure for the next ``remaining`` exchanges."""

    kind: str
    remaining: int
    retry_after: int = 1
    seconds: float = 0.0


@dataclass
class Counters:
    """Request counters; ``snapshot()`` returns a JSON-able copy."""

    exchanges_attempted: int = 0
    exchanges_succeeded: int = 0
    attempted_by_robot: dict[str, int] = field(default_factory=dict)
    succeeded_by_robot: dict[str, int] = field(default_factory=dict)
    registry_auth_calls: int = 0
    discovery_fetches: int = 0
    admin_api_calls: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "exchanges_attempted": self.exchanges_attempted,
            "exchanges_succeeded": self.exchanges_succeeded,
            "attempted_by_robot": dict(self.attempted_by_robot),
            "succeeded_by_robot": dict(self.succeeded_by_robot),
            "registry_auth_calls": self.registry_auth_calls,
            "discovery_fetches": self.discovery_fetches,
            "admin_api_calls": self.admin_api_calls,
        }


def parse_basic_auth(header: str) -> tuple[tuple[str, str] | None, str | None]:
    """Split a Basic header the way Quay does: ``((user, password), None)`` or ``(None, error)``."""
    parts = [part.strip() for part in header.split(" ") if part]
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None, "Invalid basic auth header"
    try:
        decoded = base64.b64decode(parts[1], validate=True).split(b":", 1)
        credentials = [piece.decode("utf-8") for piece in decoded]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, "Could not parse basic auth header"
    if len(credentials) != 2:
        return None, "Unexpected number of credentials found in basic auth header"
    return (credentials[0], credentials[1]), None


def _make_self_signed_cert(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _split_robot(name: str) -> tuple[str, str] | None:
    if "+" not in name:
        return None
    namespace, short = name.split("+", 1)
    if not namespace or not short:
        return None
    return namespace, short


def _permission_matches(pattern: str, repository: str) -> bool:
    if "*" in pattern or "?" in pattern or "[" in pattern:
        return fnmatch.fnmatchcase(repository, pattern)
    return pattern == repository


class QuayEmulator:
    """A WSGI application behaving like Quay for robot federation.

    Construct it, configure robots (:meth:`add_robot`, :meth:`federate`), then serve it with
    :meth:`start` (or any WSGI server). All methods are thread-safe.

    :param ca_bundle: CA file used to verify issuers' discovery and JWKS over HTTPS
        (``None``: the system store).
    :param server_hostname: Quay's ``SERVER_HOSTNAME``, the ``aud`` of robot tokens; defaults to
        ``host:port`` once started, else the request's Host header.
    :param token_lifetime: lifetime of robot tokens in seconds (Quay: 3600, fixed).
    :param registry_issuer: ``iss`` of registry bearer tokens (registry ``auth.token.issuer``).
    :param registry_token_lifetime: lifetime of registry bearer tokens in seconds.
    :param allow_http_issuers: accept ``http://`` issuers, like Quay in debug mode.
    :param discovery_timeout: seconds allowed for each discovery or JWKS fetch.
    :param posted_entry_keys: keys besides issuer and subject that a federation POST stores
        (``("audiences",)`` for a Quay whose API keeps them); quay/quay's API drops them all.
        An entry's ``audiences`` (set here or through :meth:`add_robot`) are checked against
        the token's ``aud`` at the exchange, as Quay 3.18 does.
    """

    def __init__(
        self,
        *,
        ca_bundle: str | Path | None = None,
        server_hostname: str | None = None,
        token_lifetime: int = 3600,
        registry_issuer: str = "quay",
        registry_token_lifetime: int = 300,
        allow_http_issuers: bool = False,
        discovery_timeout: float = 5.0,
        instance_key: SigningKey | None = None,
        posted_entry_keys: Iterable[str] = (),
    ) -> None:
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self._tls = ssl.create_default_context(cafile=self.ca_bundle)
        self.server_hostname = server_hostname
        self.registry_issuer = registry_issuer
        self.allow_http_issuers = allow_http_issuers
        self.discovery_timeout = discovery_timeout
        self.posted_entry_keys = frozenset(posted_entry_keys)
        self.clock: Callable[[], float] = time.time
        self.instance_key = instance_key or generate_rsa_key()
        registry_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._registry_key = SigningKey(kid="registry", private_key=registry_key, algorithm="RS256")
        self._registry_cert = _make_self_signed_cert(registry_key, "quayfed emulator token signer")
        self._lock = threading.RLock()
        self._robots: dict[str, Robot] = {}
        self._admin_tokens: dict[str, AdminGrant] = {}
        self._token_lifetime = token_lifetime
        self._default_token_lifetime = token_lifetime
        self._registry_token_lifetime = registry_token_lifetime
        self._faults: list[Fault] = []
        self._down = False
        self.counters = Counters()
        # Each robot token the exchange issued, and to whom (the same bytes may go to several).
        self._issued: dict[str, set[Federated]] = {}
        # Each request counts into the counters live when it arrived, so a request still running
        # across reset() (a hang a test gave up on) cannot count into the next test's figures.
        self._request = threading.local()
        # Set by reset(): wakes requests sleeping in a "hang" fault.
        self._reset_event = threading.Event()
        self.url: str | None = None
        self.registry_token_cert_path: Path | None = None
        self._server: RunningServer | None = None

    # --- serving ----------------------------------------------------------------------------

    def start(
        self, *, pki: TestPKI | None, host: str = "127.0.0.1", port: int = 0
    ) -> RunningServer:
        """Serve this emulator in a background thread; sets :attr:`url` and the hostname."""
        server = serve_wsgi(self, host=host, port=port, pki=pki)
        self._server = server
        self.url = server.url
        if self.server_hostname is None:
            self.server_hostname = urllib.parse.urlsplit(server.url).netloc
        return server

    @property
    def host(self) -> str:
        """``host:port`` of the running server, as registry clients name it."""
        if self.url is None:
            raise RuntimeError("the emulator is not started")
        return urllib.parse.urlsplit(self.url).netloc

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # --- configuration ----------------------------------------------------------------------

    def add_robot(
        self,
        name: str,
        federation: Iterable[Mapping[str, Any] | tuple[str, str]] = (),
        permissions: Mapping[str, Iterable[str]] | None = None,
    ) -> Robot:
        """Create (or replace) robot ``namespace+short`` with its federation and permissions."""
        if _split_robot(name) is None:
            raise ValueError(f"a robot name is namespace+shortname, not {name!r}")
        robot = Robot(name=name)
        robot.federation = [self._entry(item) for item in federation]
        for repository, actions in (permissions or {}).items():
            robot.permissions[repository] = set(actions)
        with self._lock:
            self._robots[name] = robot
        return robot

    @staticmethod
    def _entry(item: Mapping[str, Any] | tuple[str, str]) -> dict[str, Any]:
        if isinstance(item, tuple):
            return {"issuer": item[0], "subject": item[1]}
        entry: dict[str, Any] = {"issuer": str(item["issuer"]), "subject": str(item["subject"])}
        if item.get("audiences"):
            entry["audiences"] = [str(audience) for audience in item["audiences"]]
        return entry

    def federate(
        self, robot: str, issuer: str, subject: str, audiences: Iterable[str] = ()
    ) -> None:
        """Add one federation entry, creating the robot when it does not exist."""
        with self._lock:
            if robot not in self._robots:
                self.add_robot(robot)
            entry = {"issuer": issuer, "subject": subject, "audiences": list(audiences)}
            self._robots[robot].federation.append(self._entry(entry))

    def set_federation(self, robot: str, entries: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._require_robot(robot).federation = [self._entry(item) for item in entries]

    def get_federation(self, robot: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._require_robot(robot).federation]

    def set_permissions(self, robot: str, permissions: Mapping[str, Iterable[str]]) -> None:
        """Replace the robot's repository permissions: ``{"org/app" or "org/*": {"pull", ...}}``."""
        with self._lock:
            self._require_robot(robot).permissions = {
                repo: set(actions) for repo, actions in permissions.items()
            }

    def remove_robot(self, robot: str) -> None:
        with self._lock:
            self._robots.pop(robot, None)

    def robot_names(self) -> list[str]:
        with self._lock:
            return sorted(self._robots)

    def _require_robot(self, robot: str) -> Robot:
        found = self._robots.get(robot)
        if found is None:
            raise KeyError(robot)
        return found

    def add_admin_token(
        self, token: str, orgs: Iterable[str] = (), username: str | None = None
    ) -> None:
        """Accept ``Bearer token`` at the admin API for ``orgs`` (and ``username``'s robots)."""
        with self._lock:
            self._admin_tokens[token] = AdminGrant(frozenset(orgs), username)

    @property
    def token_lifetime(self) -> int:
        with self._lock:
            return self._token_lifetime

    def set_token_lifetime(self, seconds: int) -> None:
        with self._lock:
            self._token_lifetime = int(seconds)

    @property
    def registry_token_lifetime(self) -> int:
        with self._lock:
            return self._registry_token_lifetime

    def set_registry_token_lifetime(self, seconds: int) -> None:
        with self._lock:
            self._registry_token_lifetime = int(seconds)

    # --- faults and counters ------------------------------------------------------------------

    def inject_fault(
        self, kind: str, count: int = 1, *, retry_after: int = 1, seconds: float = 0.0
    ) -> None:
        """Make the next ``count`` exchanges fail.

        ``kind``: ``html500`` (500 HTML page), ``502``, ``503`` (with ``Retry-After``), ``429``
        (with ``Retry-After``), ``hang`` (sleep ``seconds`` before answering normally) or
        ``garbage`` (200 whose body is not JSON). Faults queue up in order.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(kind, int(count), int(retry_after), float(seconds)))

    def set_down(self, down: bool = True) -> None:
        """While down, every Quay route (not ``/_emulator/``) answers 503 as a proxy would."""
        with self._lock:
            self._down = down

    def _counters(self) -> Counters:
        """The counters of the request being handled (those live when it arrived)."""
        counters: Counters = getattr(self._request, "counters", self.counters)
        return counters

    def counters_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.counters.snapshot()

    def reset(self, *, config: bool = False) -> None:
        """Zero the counters and drop faults and down mode; with ``config`` also forget robots,
        admin tokens and lifetimes."""
        with self._lock:
            self.counters = Counters()
            self._reset_event.set()
            self._reset_event = threading.Event()
            self._faults.clear()
            self._down = False
            self._issued.clear()
            self.clock = time.time
            if config:
                self._robots.clear()
                self._admin_tokens.clear()
                self._token_lifetime = self._default_token_lifetime
                self._registry_token_lifetime = 300

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return fault

    # --- tokens -------------------------------------------------------------------------------

    def issue_robot_token(
        self, robot: str, *, lifetime: int | None = None, issued_at: float | None = None
    ) -> str:
        """A robot token as the exchange returns it (tests use ``issued_at`` for expired ones)."""
        now = int(issued_at if issued_at is not None else self.clock())
        with self._lock:
            seconds = self._token_lifetime if lifetime is None else lifetime
            audience = self.server_hostname or "quay"
        claims = {
            "iss": "quay",
            "aud": audience,
            "sub": robot,
            "nbf": now,
            "iat": now,
            "exp": now + seconds,
            "access": [],
            "context": {},
        }
        return self.instance_key.sign(claims)

    def issued_to(self, token: str) -> frozenset[Federated]:
        """Whom the exchange issued ``token`` to since the last reset (empty: never issued)."""
        with self._lock:
            return frozenset(self._issued.get(token, ()))

    def instance_jwks(self) -> dict[str, Any]:
        """The JWKS of the instance key that signs robot tokens."""
        return {"keys": [self.instance_key.public_jwk()]}

    @property
    def registry_token_cert_pem(self) -> bytes:
        """PEM certificate of the key signing registry bearer tokens (the ``rootcertbundle``)."""
        return self._registry_cert.public_bytes(serialization.Encoding.PEM)

    def write_registry_token_cert(self, path: str | Path) -> Path:
        """Write :attr:`registry_token_cert_pem` to ``path``; remembered in
        :attr:`registry_token_cert_path`."""
        target = Path(path)
        target.write_bytes(self.registry_token_cert_pem)
        self.registry_token_cert_path = target
        return target

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        with self._lock:
            self._request.counters = self.counters
        try:
            response = self._dispatch(request)
        except Exception:  # the emulator must not take the test server down
            response = Response.html(500, werkzeug_error_page(500, _INTERNAL_ERROR_TEXT))
        return response(start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return self._control(request, path[len(CONTROL_PREFIX) :])
        with self._lock:
            down = self._down
        if down:
            return Response.html(
                503,
                "<html><body><h1>503 Service Unavailable</h1>\n"
                "No server is available to handle this request.\n</body></html>\n",
            )
        if path == EXCHANGE_PATH:
            return self._exchange_route(request)
        if path == REGISTRY_AUTH_PATH:
            if request.method != "GET":
                return self._method_not_allowed()
            return self._registry_auth(request)
        if path in ("/v2", "/v2/"):
            return self._registry_base(request)
        if path.startswith("/api/v1/"):
            return self._admin_api(request)
        return Response.html(
            404,
            werkzeug_error_page(
                404,
                "The requested URL was not found on the server. If you entered the URL manually "
                "please check your spelling and try again.",
            ),
        )

    @staticmethod
    def _method_not_allowed() -> Response:
        return Response.html(
            405,
            werkzeug_error_page(405, "The method is not allowed for the requested URL."),
            headers=[("Allow", "GET, HEAD, OPTIONS")],
        )

    @staticmethod
    def _internal_error() -> Response:
        return Response.html(500, werkzeug_error_page(500, _INTERNAL_ERROR_TEXT))

    def _api_error(self, status: int, message: str, error_type: str) -> Response:
        base = f"https://{self.server_hostname}" if self.server_hostname else ""
        return Response.json(
            status,
            {
                "detail": message,
                "error_message": message,
                "error_type": error_type,
                "message": message,
                "status": status,
                "title": error_type,
                "type": f"{base}/api/v1/error/{error_type}",
            },
        )

    # --- the federation exchange --------------------------------------------------------------

    def _exchange_route(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(200, headers=[("Allow", "GET, HEAD, OPTIONS")])
        if request.method not in ("GET", "HEAD"):
            return self._method_not_allowed()
        header = request.header("Authorization")
        credentials = parse_basic_auth(header)[0] if header else None
        robot_name = credentials[0] if credentials else None
        counters = self._counters()
        with self._lock:
            counters.exchanges_attempted += 1
            if robot_name is not None:
                by_robot = counters.attempted_by_robot
                by_robot[robot_name] = by_robot.get(robot_name, 0) + 1
        fault = self._take_fault()
        if fault is not None:
            faulted = self._fault_response(fault)
            if faulted is not None:
                return faulted
        with self._lock:
            if self.server_hostname is None:
                self.server_hostname = request.header("Host") or "localhost"
        response = self._exchange(header)
        if response.status == 200 and robot_name is not None:
            with self._lock:
                counters.exchanges_succeeded += 1
                by_robot = counters.succeeded_by_robot
                by_robot[robot_name] = by_robot.get(robot_name, 0) + 1
        return response

    def _fault_response(self, fault: Fault) -> Response | None:
        if fault.kind == "html500":
            return self._internal_error()
        if fault.kind == "502":
            return Response.html(
                502,
                "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
                "<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n",
            )
        if fault.kind == "503":
            return Response.html(
                503,
                "<html><body><h1>503 Service Unavailable</h1></body></html>\n",
                headers=[("Retry-After", str(fault.retry_after))],
            )
        if fault.kind == "429":
            return Response.json(
                429,
                {"error": "Too Many Requests"},
                headers=[("Retry-After", str(fault.retry_after))],
            )
        if fault.kind == "garbage":
            return Response(200, b"}{ this is not JSON", "application/json")
        with self._lock:
            woken_by = self._reset_event
        woken_by.wait(fault.seconds)  # "hang": then answer normally (at once after a reset)
        return None

    def _exchange(self, header: str | None) -> Response:
        if not header:
            return Response.json(401, {"error": "No auth header"})
        credentials, error = parse_basic_auth(header)
        if credentials is None:
            return Response.json(401, {"error": error or "missing auth"})
        username, federated_token = credentials
        if _split_robot(username) is None:
            return Response.json(401, {"error": "Invalid robot"})
        try:
            federated = self._verify_federated_token(username, federated_token)
        except _BadRequest as exc:
            return self._api_error(400, str(exc), "invalid_request")
        except _Html500:
            return self._internal_error()
        token = self.issue_robot_token(federated.robot)
        with self._lock:
            self._issued.setdefault(token, set()).add(federated)
        return Response.json(200, {"token": token})

    def _verify_federated_token(self, username: str, token: str) -> Federated:
        with self._lock:
            robot = self._robots.get(username)
            entries = [dict(entry) for entry in robot.federation] if robot else []
        if robot is None:
            raise _BadRequest("Could not find robot with specified username")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _Html500 from exc
        issuer = unverified.get("iss")
        if not issuer:
            raise _BadRequest("Token does not contain issuer")
        if not entries:
            raise _BadRequest("Robot does not have federated login configured")
        matching = [entry for entry in entries if entry["issuer"] == issuer]
        subjects = [entry["subject"] for entry in matching]
        if not subjects:
            raise _BadRequest(f"issuer {issuer} not configured for this robot")
        # Quay 3.18: the last matching entry that lists audiences decides; none: aud unchecked.
        audiences = next((e["audiences"] for e in reversed(matching) if e.get("audiences")), None)
        kid = header.get("kid")
        if kid is None:
            raise _BadRequest("Invalid token: Missing `kid` header")
        discovery = self._discover(str(issuer))
        public_key = self._public_key(discovery, kid)
        try:
            decoded = jwt.decode(
                token,
                public_key,
                algorithms=list(ALLOWED_ALGORITHMS),
                issuer=discovery.get("issuer", issuer),
                audience=audiences,
                leeway=CLOCK_SKEW_SECONDS,
                options={
                    "require": ["iat", "exp"],
                    "verify_aud": bool(audiences),
                    "verify_nbf": False,
                    "verify_iat": True,
                },
            )
            iat = int(decoded["iat"])
        except jwt.InvalidTokenError as exc:
            raise _BadRequest(f"Invalid token: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise _BadRequest("Invalid token: Issued At claim (iat) must be an integer.") from exc
        if iat > int(self.clock()) + CLOCK_SKEW_SECONDS:
            raise _BadRequest("Invalid token: Issued At claim (iat) cannot be in the future.")
        if decoded.get("sub") not in subjects:
            raise _BadRequest("Token does not match robot")
        return Federated(username, str(issuer), str(decoded["sub"]))

    def _fetch_json(self, url: str) -> Any:
        response = httpx.get(
            url, verify=self._tls, timeout=self.discovery_timeout, follow_redirects=True
        )
        if response.status_code // 100 != 2:
            raise _Html500(f"{url}: HTTP {response.status_code}")
        return json.loads(response.text)

    def _discover(self, issuer: str) -> dict[str, Any]:
        if not issuer.startswith("https://") and not (
            self.allow_http_issuers and issuer.startswith("http://")
        ):
            raise _Html500("OIDC server must be accessed over SSL")
        counters = self._counters()
        with self._lock:
            counters.discovery_fetches += 1
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document = self._fetch_json(url)
        except (httpx.HTTPError, ValueError) as exc:
            raise _Html500(f"discovery failed: {exc}") from exc
        if not isinstance(document, dict):
            raise _Html500("discovery document is not an object")
        return document

    def _public_key(self, discovery: Mapping[str, Any], kid: str) -> Any:
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _Html500("no jwks_uri")
        try:
            keys = self._fetch_json(jwks_uri)["keys"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _Html500(f"JWKS failed: {exc}") from exc
        for key in keys:
            if isinstance(key, dict) and key.get("kid") == kid:
                if key.get("kty") != "RSA":
                    raise _Html500(f"No RSA form of public key {kid} not found")
                try:
                    return jwt.PyJWK(key, algorithm="RS256").key
                except jwt.PyJWTError as exc:
                    raise _Html500(str(exc)) from exc
        raise _Html500(f"Public key {kid} not found")

    # --- the federation admin API -------------------------------------------------------------

    def _admin_api(self, request: Request) -> Response:
        counters = self._counters()
        with self._lock:
            counters.admin_api_calls += 1
        parts = request.path.strip("/").split("/")
        # api v1 organization ORG robots SHORT federation | api v1 user robots SHORT federation
        if len(parts) == 7 and parts[2] == "organization" and parts[4] == "robots":
            org, short, tail = parts[3], parts[5], parts[6]
        elif len(parts) == 6 and parts[2] == "user" and parts[3] == "robots":
            org, short, tail = None, parts[4], parts[5]
        else:
            return self._api_error(404, "Not Found", "not_found")
        if tail != "federation":
            return self._api_error(404, "Not Found", "not_found")
        if request.method not in ("GET", "POST", "DELETE"):
            return self._method_not_allowed()
        grant = self._admin_grant(request)
        if grant is None:
            return self._api_error(401, "Requires authentication", "invalid_token")
        if org is None:
            if grant.username is None:
                return self._api_error(403, "Unauthorized", "insufficient_scope")
            namespace = grant.username
        else:
            if org not in grant.orgs:
                return self._api_error(403, "Unauthorized", "insufficient_scope")
            namespace = org
        robot_name = f"{namespace}+{short}"
        if request.method == "POST":
            try:
                entries = self._parse_federation_body(request, self.posted_entry_keys)
            except _BadRequest as exc:
                return self._api_error(400, str(exc), "invalid_request")
        with self._lock:
            robot = self._robots.get(robot_name)
            if robot is None:
                return self._api_error(
                    400, "Could not find robot with specified username", "invalid_request"
                )
            if request.method == "GET":
                return Response.json(200, [dict(entry) for entry in robot.federation])
            if request.method == "DELETE":
                robot.federation = []
                return Response(204)
            robot.federation = entries
            return Response.json(200, [dict(entry) for entry in entries])

    def _admin_grant(self, request: Request) -> AdminGrant | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            return self._admin_tokens.get(token.strip())

    @staticmethod
    def _parse_federation_body(request: Request, kept: frozenset[str]) -> list[dict[str, Any]]:
        try:
            body = request.json()
        except ValueError as exc:
            raise _BadRequest("Invalid JSON body") from exc
        if not isinstance(body, list):
            raise _BadRequest("Federation config must be a list")
        entries: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for item in body:
            if not item or not isinstance(item, dict):
                raise _BadRequest("Missing one or more required fields (issuer, subject)")
            issuer, subject = item.get("issuer"), item.get("subject")
            if not issuer or not subject or not isinstance(issuer, str):
                raise _BadRequest("Missing one or more required fields (issuer, subject)")
            if not (issuer.startswith("http://") or issuer.startswith("https://")):
                raise _BadRequest("Issuer must be a URL (http:// or https://)")
            if (issuer, str(subject)) in seen:
                raise _BadRequest("Duplicate federation config entry")
            seen.add((issuer, str(subject)))
            entry: dict[str, Any] = {"issuer": issuer, "subject": str(subject)}
            entry.update({key: item[key] for key in sorted(kept) if item.get(key)})
            entries.append(entry)
        return entries

    # --- the registry token server ------------------------------------------------------------

    def _registry_auth(self, request: Request) -> Response:
        counters = self._counters()
        with self._lock:
            counters.registry_auth_calls += 1
        header = request.header("Authorization")
        subject = "(anonymous)"
        robot: Robot | None = None
        if header:
            credentials, _ = parse_basic_auth(header)
            if credentials is None:
                return Response.json(401, {"error": "Invalid username or password"})
            username, password = credentials
            try:
                claims = jwt.decode(
                    password,
                    self.instance_key.private_key.public_key(),
                    algorithms=["RS256"],
                    options={"verify_aud": False, "require": ["exp", "sub"]},
                )
            except jwt.ExpiredSignatureError:
                return self._internal_error()  # what Quay does with an expired robot token
            except jwt.InvalidTokenError:
                return Response.json(401, {"error": "Invalid Username or Password"})
            if claims.get("sub") != username:
                return Response.json(401, {"error": "Token does not match robot"})
            with self._lock:
                robot = self._robots.get(username)
                if robot is not None:
                    robot = Robot(robot.name, [], {k: set(v) for k, v in robot.permissions.items()})
            if robot is None:
                return Response.json(401, {"error": "Invalid Username or Password"})
            subject = username
        access = [
            grant
            for scope in request.query.get("scope", [])
            for grant in [self._grant(scope, robot)]
            if grant is not None
        ]
        now = int(self.clock())
        with self._lock:
            lifetime = self._registry_token_lifetime
        claims = {
            "iss": self.registry_issuer,
            "aud": request.arg("service") or "",
            "sub": subject,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        x5c = base64.b64encode(self._registry_cert.public_bytes(serialization.Encoding.DER))
        token = self._registry_key.sign(
            claims, headers={"x5c": [x5c.decode("ascii")]}, include_kid=False
        )
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        return Response.json(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": lifetime,
                "issued_at": issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def _registry_base(self, request: Request) -> Response:
        """``/v2/`` as Quay's registry answers it: a Bearer challenge naming ``/v2/auth``."""
        header = request.header("Authorization") or ""
        version = ("Docker-Distribution-API-Version", "registry/2.0")
        if header.lower().startswith("bearer "):
            try:
                jwt.decode(
                    header[7:].strip(),
                    self._registry_key.private_key.public_key(),
                    algorithms=["RS256"],
                    options={"verify_aud": False},
                )
            except jwt.InvalidTokenError:
                pass
            else:
                return Response.json(200, {}, headers=[version])
        with self._lock:
            service = self.server_hostname or request.host_url.split("://", 1)[-1]
        base = self.url or request.host_url
        challenge = f'Bearer realm="{base}{REGISTRY_AUTH_PATH}",service="{service}"'
        return Response.json(
            401,
            {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": "access to the requested resource is not authorized",
                        "detail": [],
                    }
                ]
            },
            headers=[version, ("WWW-Authenticate", challenge)],
        )

    @staticmethod
    def _grant(scope: str, robot: Robot | None) -> dict[str, Any] | None:
        pieces = scope.split(":")
        if len(pieces) < 3 or pieces[0] != "repository":
            return None
        name = ":".join(pieces[1:-1])
        requested = [action for action in pieces[-1].split(",") if action]
        allowed: set[str] = set()
        if robot is not None:
            for pattern, actions in robot.permissions.items():
                if _permission_matches(pattern, name):
                    allowed |= actions
        if name.startswith("public/"):
            allowed.add("pull")
        granted = [action for action in requested if action in allowed]
        return {"type": "repository", "name": name, "actions": granted}

    # --- the JSON control API -----------------------------------------------------------------

    def _control(self, request: Request, route: str) -> Response:
        try:
            return self._control_route(request, route)
        except (ValueError, KeyError, TypeError) as exc:
            return Response.json(400, {"error": f"{type(exc).__name__}: {exc}"})

    def _control_route(self, request: Request, route: str) -> Response:
        method = request.method
        body: Any = request.json() if method in ("POST", "PUT") and request.body else {}
        if route == "counters" and method == "GET":
            return Response.json(200, self.counters_snapshot())
        if route == "reset" and method == "POST":
            self.reset(config=bool(body.get("config", False)))
            return Response.json(200, {"ok": True})
        if route == "robots" and method == "GET":
            with self._lock:
                listing = {
                    name: {
                        "federation": [dict(e) for e in robot.federation],
                        "permissions": {k: sorted(v) for k, v in robot.permissions.items()},
                    }
                    for name, robot in self._robots.items()
                }
            return Response.json(200, listing)
        if route == "robots" and method == "POST":
            self.apply_config({"robots": [body]})
            return Response.json(200, {"ok": True})
        if route.startswith("robots/") and method == "DELETE":
            self.remove_robot(urllib.parse.unquote(route[len("robots/") :]))
            return Response.json(200, {"ok": True})
        if route == "token-lifetime" and method == "POST":
            self.set_token_lifetime(int(body["seconds"]))
            return Response.json(200, {"ok": True})
        if route == "admin-tokens" and method == "POST":
            self.apply_config({"admin_tokens": [body]})
            return Response.json(200, {"ok": True})
        if route == "faults" and method == "POST":
            self.inject_fault(
                str(body["kind"]),
                int(body.get("count", 1)),
                retry_after=int(body.get("retry_after", 1)),
                seconds=float(body.get("seconds", 0.0)),
            )
            return Response.json(200, {"ok": True})
        if route == "down" and method == "POST":
            self.set_down(bool(body.get("down", True)))
            return Response.json(200, {"ok": True})
        if route == "robot-token" and method == "POST":
            token = self.issue_robot_token(
                str(body["robot"]),
                lifetime=body.get("lifetime"),
                issued_at=body.get("issued_at"),
            )
            return Response.json(200, {"token": token})
        if route == "jwks" and method == "GET":
            return Response.json(200, self.instance_jwks())
        return Response.json(404, {"error": f"no control route {method} /_emulator/{route}"})

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Apply a JSON-shaped configuration (the ``--config`` file and the control API).

        Keys: ``robots`` (list of ``{"name", "federation": [{"issuer", "subject", "audiences"}],
        "permissions": {"org/repo": ["pull", "push"]}}``), ``admin_tokens`` (list of
        ``{"token", "orgs": [...], "username"}``), ``token_lifetime``,
        ``registry_token_lifetime``.
        """
        for robot in config.get("robots", []):
            self.add_robot(
                str(robot["name"]),
                federation=robot.get("federation", []),
                permissions=robot.get("permissions", {}),
            )
        for grant in config.get("admin_tokens", []):
            self.add_admin_token(str(grant["token"]), grant.get("orgs", []), grant.get("username"))
        if "token_lifetime" in config:
            self.set_token_lifetime(int(config["token_lifetime"]))
        if "registry_token_lifetime" in config:
            self.set_registry_token_lifetime(int(config["registry_token_lifetime"]))
