"""The third-party OIDC provider nanoidp, served over TLS in Keycloak's URL layout.

nanoidp (PyPI, Flask) is configured from two YAML files written to a temporary directory, with its
signing keys in that directory too. A small WSGI wrapper mounts it under ``/realms/quay`` and
maps Keycloak's paths onto nanoidp's:

============================================  =====================================
Keycloak path (under ``/realms/quay``)         nanoidp path
============================================  =====================================
``/.well-known/openid-configuration``         same, endpoints rewritten to Keycloak's
``/protocol/openid-connect/token``            ``/token``
``/protocol/openid-connect/certs``            ``/.well-known/jwks.json``
``/protocol/openid-connect/auth/device``      ``/device_authorization``
``/protocol/openid-connect/userinfo``         ``/userinfo``
``/protocol/openid-connect/logout``           ``/logout``
``/protocol/openid-connect/revoke``           ``/revoke`` (RFC 7009)
``/protocol/openid-connect/auth``             ``/authorize`` (authorization code, PKCE)
``/device`` (the page a person opens)          same
============================================  =====================================

Differences from Keycloak that stay visible (on purpose, the helper must cope): ``sub`` is the
username, not a UUID; a bad password answers 400 ``invalid_grant``, not 401; the audience of an
access token is the ``resource`` parameter (RFC 8707) or the configured default ``quay``.

A second server presents the same nanoidp as a Kubernetes service-account issuer
(``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` at its own base URL); its tokens
are signed with nanoidp's key, with the Kubernetes claims.

nanoidp runs in a server process of its own: it needs Python >= 3.10 while the suite also runs
on 3.9, and it keeps its configuration in process-wide state. :func:`start_nanoidp` runs
``python -m tests.support.oidc_provider serve --dir D --ca-cert CA --server-cert CRT
--server-key KEY`` in the project root, with ``$QUAYFED_NANOIDP_PYTHON`` as ``python`` (CI points
it at an interpreter that has nanoidp), else ``sys.executable``. That process serves both layouts
over TLS with the given PKI, prints one JSON line (base URLs, the configuration directory, the
kid and the *path* of nanoidp's private key; never a secret) and runs until SIGTERM or SIGINT,
until its standard input reaches end of file or until its parent is gone. Its stderr goes to
``D/nanoidp-server.log``. The test process signs the tokens of :meth:`OIDCProvider.mint` and
:meth:`KubeIssuer.mint` itself with that private key (pyjwt), under the kid nanoidp publishes,
once it has checked that nanoidp's JWKS holds that kid with that key.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

import httpx
import jwt

from quay_sandbox.server import RunningServer, serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.support import trusting

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REALM = "quay"
DEFAULT_AUDIENCE = "quay"
PUBLIC_CLIENT = "quayfed-cli"
CONFIDENTIAL_CLIENT = "quayfed-ci"
CONFIDENTIAL_SECRET = "ci-secret-0f3a9c"
USERS: dict[str, str] = {"jdoe": "secret-jdoe-7d1", "alice": "secret-alice-2b8"}

_KEYCLOAK_PATHS = {
    "/protocol/openid-connect/token": "/token",
    "/protocol/openid-connect/certs": "/.well-known/jwks.json",
    "/protocol/openid-connect/auth/device": "/device_authorization",
    "/protocol/openid-connect/userinfo": "/userinfo",
    "/protocol/openid-connect/logout": "/logout",
    "/protocol/openid-connect/revoke": "/revoke",
    "/protocol/openid-connect/auth": "/authorize",
}
_DISCOVERY_ENDPOINTS = {
    "token_endpoint": "/protocol/openid-connect/token",
    "jwks_uri": "/protocol/openid-connect/certs",
    "device_authorization_endpoint": "/protocol/openid-connect/auth/device",
    "userinfo_endpoint": "/protocol/openid-connect/userinfo",
    "authorization_endpoint": "/protocol/openid-connect/auth",
    "end_session_endpoint": "/protocol/openid-connect/logout",
    "revocation_endpoint": "/protocol/openid-connect/revoke",
}
_WELL_KNOWN = "/.well-known/openid-configuration"


def _json_response(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _call_buffered(
    app: WSGIApplication, environ: WSGIEnvironment
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run ``app`` and collect its whole answer."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close: Callable[[], None] | None = getattr(chunks, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], body


def _rewritten_json(
    app: WSGIApplication,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    rewrite: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[bytes]:
    status, headers, body = _call_buffered(app, environ)
    if status.startswith("200"):
        body = json.dumps(rewrite(json.loads(body))).encode()
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


class _Deferred:
    """A WSGI app whose target is set once the server's port (hence the issuer) is known."""

    def __init__(self) -> None:
        self.target: WSGIApplication | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.target is None:
            return _json_response(start_response, "503 Service Unavailable", {"error": "starting"})
        return self.target(environ, start_response)


class KeycloakLayout:
    """Serves a nanoidp application under ``/realms/{realm}`` with Keycloak's paths."""

    def __init__(self, app: WSGIApplication, issuer: str, realm: str = REALM) -> None:
        self.app = app
        self.issuer = issuer
        self.prefix = f"/realms/{realm}"

    def _keycloak_discovery(self, document: dict[str, Any]) -> dict[str, Any]:
        document = dict(document)
        for key, path in _DISCOVERY_ENDPOINTS.items():
            document[key] = f"{self.issuer}{path}"
        return document

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefix + "/"):
            return _json_response(start_response, "404 Not Found", {"error": "Realm not found."})
        rest = path[len(self.prefix) :]
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        inner["PATH_INFO"] = _KEYCLOAK_PATHS.get(rest, rest)
        if rest == _WELL_KNOWN:
            return _rewritten_json(self.app, inner, start_response, self._keycloak_discovery)
        return self.app(inner, start_response)


class KubernetesLayout:
    """Presents nanoidp's keys as a Kubernetes service-account issuer at ``issuer``."""

    def __init__(self, app: WSGIApplication, issuer: str) -> None:
        self.app = app
        self.issuer = issuer

    def _kube_discovery(self, document: dict[str, Any]) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": document.get(
                "id_token_signing_alg_values_supported", ["RS256"]
            ),
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        inner = dict(environ)
        if path == _WELL_KNOWN:
            return _rewritten_json(self.app, inner, start_response, self._kube_discovery)
        if path == "/openid/v1/jwks":
            inner["PATH_INFO"] = "/.well-known/jwks.json"
            return self.app(inner, start_response)
        return _json_response(
            start_response, "404 Not Found", {"kind": "Status", "status": "Failure", "code": 404}
        )


@dataclass(frozen=True)
class SigningKey:
    """nanoidp's active signing key, read from its keys directory, and the kid it publishes."""

    kid: str
    private_pem: bytes = field(repr=False)

    @classmethod
    def load(cls, private_key: Path, kid: str) -> SigningKey:
        return cls(kid=kid, private_pem=Path(private_key).read_bytes())

    def check_published(self, jwks: Mapping[str, Any]) -> None:
        """Raise unless ``jwks`` holds this kid with this key's public half."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        mine = load_pem_private_key(self.private_pem, password=None).public_key()
        for entry in jwks.get("keys", []):
            if entry.get("kid") == self.kid:
                published = jwt.PyJWK(dict(entry)).key
                if published.public_numbers() != mine.public_numbers():  # type: ignore[union-attr]
                    raise RuntimeError(f"nanoidp publishes another key under kid {self.kid}")
                return
        raise RuntimeError(f"nanoidp's JWKS does not list its signing kid {self.kid}")

    def sign(
        self, sub: str, issuer: str, audience: str | list[str], claims: Mapping[str, Any]
    ) -> str:
        """What nanoidp's ``CryptoService.create_jwt`` makes: jti, iss, sub, aud, iat, nbf and
        exp (one hour), overridden by ``claims``; header alg RS256, typ JWT, nanoidp's kid."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "iss": issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            **claims,
        }
        headers = {"kid": self.kid, "alg": "RS256", "typ": "JWT"}
        return jwt.encode(
            payload, _private_key(self.private_pem), algorithm="RS256", headers=headers
        )


@functools.lru_cache(maxsize=4)
def _private_key(pem: bytes) -> Any:
    """The PEM's key, loaded once: loading checks the RSA key, which costs more than signing."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


def _require_key(key: SigningKey | None) -> SigningKey:
    if key is None:
        raise RuntimeError("no signing key: start the provider with start_nanoidp()")
    return key


@dataclass
class OIDCProvider:
    """A running nanoidp realm in Keycloak's layout.

    Attributes: ``issuer`` (``{base_url}/realms/quay``), ``token_endpoint``, ``ca_cert`` (the CA
    that signed its TLS certificate), ``users`` (username -> password; ``sub`` = username),
    ``public_client`` (password grant, no secret), ``confidential_client`` and
    ``confidential_secret`` (client_credentials with client_secret_basic).
    """

    base_url: str
    ca_cert: Path
    config_dir: Path
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    public_client: str = PUBLIC_CLIENT
    confidential_client: str = CONFIDENTIAL_CLIENT
    confidential_secret: str = CONFIDENTIAL_SECRET
    default_audience: str = DEFAULT_AUDIENCE
    signing_key: SigningKey | None = field(default=None, repr=False, compare=False)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}{_WELL_KNOWN}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    def _post_token(self, data: Mapping[str, str], auth: tuple[str, str] | None = None) -> Any:
        response = httpx.post(
            self.token_endpoint,
            data=dict(data),
            auth=auth,
            verify=trusting(self.ca_cert),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def password_token(
        self,
        username: str = "jdoe",
        *,
        scope: str = "openid",
        resource: str | None = None,
        kind: str = "id_token",
    ) -> str:
        """A token from the password grant over HTTPS (``kind``: ``id_token``/``access_token``)."""
        data = {
            "grant_type": "password",
            "client_id": self.public_client,
            "username": username,
            "password": self.users[username],
            "scope": scope,
        }
        if resource is not None:
            data["resource"] = resource
        token: str = self._post_token(data)[kind]
        return token

    def client_credentials_token(self, *, resource: str | None = None) -> str:
        """An access token of the confidential client (``sub`` = its client_id)."""
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        token: str = self._post_token(
            data, auth=(self.confidential_client, self.confidential_secret)
        )["access_token"]
        return token

    def approve_device(
        self, verification_uri: str, user_code: str, username: str = "jdoe", *, deny: bool = False
    ) -> None:
        """What a person does in a browser: open the verification page, sign in, and approve
        (or deny) the code, as form posts to nanoidp's page."""
        with httpx.Client(verify=trusting(self.ca_cert), timeout=10) as browser:
            page = browser.get(verification_uri)
            page.raise_for_status()
            answer = browser.post(
                verification_uri.split("?", 1)[0],
                data={
                    "user_code": user_code,
                    "username": username,
                    "password": self.users[username],
                    "action": "deny" if deny else "authorize",
                },
            )
            answer.raise_for_status()

    def browser_login(self, authorization_url: str, username: str = "jdoe") -> httpx.Response:
        """What a browser does with ``login --browser``'s URL: sign in at the authorization
        endpoint and follow the redirect to the loopback listener (its answer is returned)."""
        with httpx.Client(verify=trusting(self.ca_cert), timeout=10) as browser:
            answer = browser.post(
                authorization_url,
                data={"username": username, "password": self.users[username]},
            )
            if answer.status_code not in (302, 303):
                raise RuntimeError(f"nanoidp answered the sign-in with HTTP {answer.status_code}")
            return httpx.get(answer.headers["location"], timeout=10)

    def mint(
        self, sub: str = "jdoe", *, audience: str | list[str] = DEFAULT_AUDIENCE, **claims: Any
    ) -> str:
        """A JWT signed directly by nanoidp's key with this issuer; ``claims`` (e.g. ``exp``,
        ``iat``, ``iss``) override the defaults (iat/nbf = now, exp = now + 300)."""
        now = int(time.time())
        merged: dict[str, Any] = {"iat": now, "nbf": now, "exp": now + 300, **claims}
        return _require_key(self.signing_key).sign(sub, self.issuer, audience, merged)


@dataclass
class KubeIssuer:
    """A Kubernetes-like service-account issuer whose tokens nanoidp signs.

    ``issuer`` is its base URL; discovery at ``{issuer}/.well-known/openid-configuration``,
    JWKS at ``{issuer}/openid/v1/jwks``.
    """

    issuer: str
    ca_cert: Path
    signing_key: SigningKey | None = field(default=None, repr=False, compare=False)

    def mint(
        self,
        namespace: str = "ci",
        name: str = "builder",
        *,
        audience: str | list[str] = DEFAULT_AUDIENCE,
        lifetime: int = 3600,
        **claims: Any,
    ) -> str:
        """A projected service-account token: ``sub`` = ``system:serviceaccount:NS:NAME``."""
        now = int(time.time())
        merged: dict[str, Any] = {
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aud": [audience] if isinstance(audience, str) else audience,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": str(uuid.uuid4())},
            },
            **claims,
        }
        subject = f"system:serviceaccount:{namespace}:{name}"
        return _require_key(self.signing_key).sign(subject, self.issuer, audience, merged)

    def write_token(self, path: Path, **kwargs: Any) -> Path:
        """Write a fresh token to ``path`` like the kubelet's projected volume (0600)."""
        path.write_text(self.mint(**kwargs))
        path.chmod(0o600)
        return path


_settings_template = """\
config_version: 1
server:
  host: "127.0.0.1"
  port: {port}
oauth:
  issuer: "{issuer}"
  audience: "{audience}"
  token_expiry_minutes: 5
  clients:
    - client_id: "{public_client}"
      token_endpoint_auth_method: "none"
      description: "public client, password grant"
      redirect_uris: ["http://127.0.0.1/callback"]
    - client_id: "{confidential_client}"
      client_secret: "{confidential_secret}"
      token_endpoint_auth_method: "client_secret_basic"
      description: "confidential client, client_credentials"
device_flow:
  polling_interval: 1
  code_expiry_seconds: 120
jwt:
  keys_dir: "{keys_dir}"
logging:
  level: "ERROR"
  log_token_requests: false
  log_saml_requests: false
  verbose_logging: false
"""

_MODULE = "tests.support.oidc_provider"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = "QUAYFED_NANOIDP_PYTHON"
"""The interpreter that runs nanoidp (it needs Python >= 3.10); ``sys.executable`` if unset."""
_READY_KEYS = ("realm_url", "kube_url", "config_dir", "private_key", "kid")
_served = threading.Lock()


def _write_config(config_dir: Path, port: int, issuer: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "settings.yaml").write_text(
        _settings_template.format(
            port=port,
            issuer=issuer,
            audience=DEFAULT_AUDIENCE,
            public_client=PUBLIC_CLIENT,
            confidential_client=CONFIDENTIAL_CLIENT,
            confidential_secret=CONFIDENTIAL_SECRET,
            keys_dir=config_dir / "keys",
        )
    )
    lines = ["config_version: 1", "users:"]
    for username, password in USERS.items():
        lines += [
            f"  {username}:",
            f'    password: "{password}"',
            f'    email: "{username}@example.org"',
        ]
    (config_dir / "users.yaml").write_text("\n".join(lines) + "\n")


# --- in the server process ----------------------------------------------------------------------


@dataclass
class _Served:
    realm_server: RunningServer
    kube_server: RunningServer
    config_dir: Path
    private_key: Path
    kid: str

    def close(self) -> None:
        for server in (self.realm_server, self.kube_server):
            server.close()


def _serve_in_process(directory: Path, pki: TestPKI) -> _Served:
    """Configure nanoidp in ``directory`` and serve it over TLS (realm and Kubernetes issuer).

    Only once per process: nanoidp keeps its configuration in process-wide state.
    """
    if not _served.acquire(blocking=False):
        raise RuntimeError("nanoidp runs once per process")
    from nanoidp.app import create_app
    from nanoidp.services.crypto import get_crypto_service

    realm_front, kube_front = _Deferred(), _Deferred()
    realm_server = serve_wsgi(realm_front, pki=pki)
    kube_server = serve_wsgi(kube_front, pki=pki)
    config_dir = directory / "nanoidp"
    issuer = f"{realm_server.url}/realms/{REALM}"
    _write_config(config_dir, realm_server.port, issuer)
    app = create_app(str(config_dir))
    _parse_signing_key_once()
    logging.getLogger("nanoidp").setLevel(logging.ERROR)  # audit lines would name users
    crypto = get_crypto_service()
    private_key = Path(crypto.keys_dir) / "rsa_private.pem"
    if not private_key.is_file():
        raise RuntimeError(f"nanoidp's private key is not at {private_key}")
    realm_front.target = KeycloakLayout(app, issuer)
    kube_front.target = KubernetesLayout(app, kube_server.url)
    return _Served(realm_server, kube_server, config_dir, private_key, str(crypto.kid))


class _PyJWTWithParsedKeys:
    """PyJWT as nanoidp's crypto module sees it, except that a PEM private key is parsed once:
    parsing checks the RSA key, which costs more than signing, for every token it issues."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jwt, name)

    @staticmethod
    def encode(payload: Any, key: Any, *args: Any, **kwargs: Any) -> str:
        pem = key.encode() if isinstance(key, str) else key
        if isinstance(pem, bytes) and b"PRIVATE KEY" in pem:
            key = _private_key(pem)
        return jwt.encode(payload, key, *args, **kwargs)


def _parse_signing_key_once() -> None:
    from nanoidp.services import crypto as nanoidp_crypto

    nanoidp_crypto.jwt = _PyJWTWithParsedKeys()


def _watch_parent(stop: threading.Event) -> None:
    """Set ``stop`` when standard input reaches end of file (the parent closed it or died)."""

    def read_to_eof() -> None:
        # The raw descriptor: a daemon thread blocked in a buffered read would abort the
        # interpreter's shutdown ("could not acquire lock for <stdin>").
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=read_to_eof, name="stdin-eof", daemon=True).start()


def _serve_command(arguments: argparse.Namespace) -> int:
    # Anything nanoidp, Flask or a library prints goes to stderr: stdout carries one line.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    parent = os.getppid()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    pki = TestPKI(
        ca_cert=Path(arguments.ca_cert),
        server_cert=Path(arguments.server_cert),
        server_key=Path(arguments.server_key),
    )
    served = _serve_in_process(Path(arguments.dir), pki)
    try:
        line = {
            "realm_url": served.realm_server.url,
            "kube_url": served.kube_server.url,
            "config_dir": str(served.config_dir),
            "private_key": str(served.private_key),
            "kid": served.kid,
        }
        ready.write(json.dumps(line) + "\n")
        ready.close()
        _watch_parent(stop)
        while not stop.wait(0.25):
            if os.getppid() != parent:
                break
    finally:
        served.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve nanoidp in Keycloak's and Kubernetes' layouts over TLS, print one JSON "
        "line, run until SIGTERM, end of standard input or the parent's exit",
    )
    serve.add_argument("--dir", required=True, help="working directory (config, keys, log)")
    serve.add_argument("--ca-cert", required=True)
    serve.add_argument("--server-cert", required=True)
    serve.add_argument("--server-key", required=True)
    return _serve_command(parser.parse_args(argv))


# --- in the test process ------------------------------------------------------------------------


@dataclass
class NanoidpServers:
    """The provider and Kubernetes issuer, served by ``process`` (close() stops it)."""

    provider: OIDCProvider
    kube: KubeIssuer
    process: subprocess.Popen[bytes]
    log_path: Path

    def close(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def nanoidp_python() -> str:
    """The interpreter that runs nanoidp: ``$QUAYFED_NANOIDP_PYTHON``, else ``sys.executable``."""
    return os.environ.get(PYTHON_ENV) or sys.executable


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    """The first line of ``stream`` (b"" at end of file), or TimeoutError."""
    lines: queue.Queue[bytes] = queue.Queue(maxsize=1)
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no answer within {timeout} s") from None


def _log_tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def start_nanoidp(
    directory: Path, pki: TestPKI, *, python: str | None = None, timeout: float = 30.0
) -> NanoidpServers:
    """Serve nanoidp from ``directory`` over TLS (realm and Kubernetes issuer) in a server
    process run by ``python`` (default :func:`nanoidp_python`); see the module's docstring."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "nanoidp-server.log"
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_PROJECT_ROOT), environment.get("PYTHONPATH")])
    )
    command = [
        python or nanoidp_python(),
        "-m",
        _MODULE,
        "serve",
        "--dir",
        str(directory),
        "--ca-cert",
        str(pki.ca_cert),
        "--server-cert",
        str(pki.server_cert),
        "--server-key",
        str(pki.server_key),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=_PROJECT_ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    try:
        try:
            line = _read_line(process.stdout, timeout)
        finally:
            process.stdout.close()
        if not line:
            process.wait(timeout=5)
            raise RuntimeError(f"nanoidp's server process exited {process.returncode}")
        ready = json.loads(line)
        missing = set(_READY_KEYS) - set(ready)
        if missing:
            raise RuntimeError(f"nanoidp's server process did not say {sorted(missing)}")
        key = SigningKey.load(Path(ready["private_key"]), ready["kid"])
        provider = OIDCProvider(
            base_url=ready["realm_url"],
            ca_cert=pki.ca_cert,
            config_dir=Path(ready["config_dir"]),
            signing_key=key,
        )
        answer = httpx.get(provider.jwks_uri, verify=trusting(pki.ca_cert), timeout=10)
        answer.raise_for_status()
        key.check_published(answer.json())
    except BaseException as error:
        _stop(process)
        if isinstance(error, Exception):
            raise RuntimeError(
                f"nanoidp did not start ({' '.join(command)}): {error}\n"
                f"--- {log_path} ---\n{_log_tail(log_path)}"
            ) from error
        raise
    kube = KubeIssuer(issuer=ready["kube_url"], ca_cert=pki.ca_cert, signing_key=key)
    return NanoidpServers(provider, kube, process, log_path)


if __name__ == "__main__":
    sys.exit(main())
