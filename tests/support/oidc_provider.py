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
============================================  =====================================

Differences from Keycloak that stay visible (on purpose, the helper must cope): ``sub`` is the
username, not a UUID; a bad password answers 400 ``invalid_grant``, not 401; the audience of an
access token is the ``resource`` parameter (RFC 8707) or the configured default ``quay``.

A second server presents the same nanoidp as a Kubernetes service-account issuer
(``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` at its own base URL); its tokens
are signed by nanoidp's key (``CryptoService.create_jwt``), with the Kubernetes claims.

nanoidp supports one application per process, so :func:`start_nanoidp` may be called once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import httpx

from docker_credential_quayfed.emulator.server import RunningServer, serve_wsgi
from tests.support import trusting

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from docker_credential_quayfed.emulator.tls import TestPKI

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
}
_DISCOVERY_ENDPOINTS = {
    "token_endpoint": "/protocol/openid-connect/token",
    "jwks_uri": "/protocol/openid-connect/certs",
    "device_authorization_endpoint": "/protocol/openid-connect/auth/device",
    "userinfo_endpoint": "/protocol/openid-connect/userinfo",
    "authorization_endpoint": "/protocol/openid-connect/auth",
    "end_session_endpoint": "/protocol/openid-connect/logout",
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


def _sign(sub: str, issuer: str, audience: str | list[str], claims: Mapping[str, Any]) -> str:
    """Sign with nanoidp's current key; ``claims`` override any standard claim."""
    from nanoidp.services.crypto import get_crypto_service

    token: str = get_crypto_service().create_jwt(
        sub=sub, issuer=issuer, audience=audience, extra=dict(claims)
    )
    return token


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

    def mint(
        self, sub: str = "jdoe", *, audience: str | list[str] = DEFAULT_AUDIENCE, **claims: Any
    ) -> str:
        """A JWT signed directly by nanoidp's key with this issuer; ``claims`` (e.g. ``exp``,
        ``iat``, ``iss``) override the defaults (iat/nbf = now, exp = now + 300)."""
        now = int(time.time())
        merged: dict[str, Any] = {"iat": now, "nbf": now, "exp": now + 300, **claims}
        return _sign(sub, self.issuer, audience, merged)


@dataclass
class KubeIssuer:
    """A Kubernetes-like service-account issuer whose tokens nanoidp signs.

    ``issuer`` is its base URL; discovery at ``{issuer}/.well-known/openid-configuration``,
    JWKS at ``{issuer}/openid/v1/jwks``.
    """

    issuer: str
    ca_cert: Path

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
        return _sign(f"system:serviceaccount:{namespace}:{name}", self.issuer, audience, merged)

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
    - client_id: "{confidential_client}"
      client_secret: "{confidential_secret}"
      token_endpoint_auth_method: "client_secret_basic"
      description: "confidential client, client_credentials"
jwt:
  keys_dir: "{keys_dir}"
logging:
  level: "ERROR"
  log_token_requests: false
  log_saml_requests: false
  verbose_logging: false
"""

_started = threading.Lock()


@dataclass
class NanoidpServers:
    """The running provider and Kubernetes issuer, and their servers (close() stops both)."""

    provider: OIDCProvider
    kube: KubeIssuer
    servers: list[RunningServer]

    def close(self) -> None:
        for server in self.servers:
            server.close()


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


def start_nanoidp(directory: Path, pki: TestPKI) -> NanoidpServers:
    """Configure nanoidp in ``directory`` and serve it over TLS (realm and Kubernetes issuer).

    Only once per process: nanoidp keeps its configuration in process-wide state.
    """
    if not _started.acquire(blocking=False):
        raise RuntimeError("nanoidp runs once per process; reuse the first provider")
    from nanoidp.app import create_app

    realm_front, kube_front = _Deferred(), _Deferred()
    realm_server = serve_wsgi(realm_front, pki=pki)
    kube_server = serve_wsgi(kube_front, pki=pki)
    config_dir = directory / "nanoidp"
    provider = OIDCProvider(base_url=realm_server.url, ca_cert=pki.ca_cert, config_dir=config_dir)
    _write_config(config_dir, realm_server.port, provider.issuer)
    app = create_app(str(config_dir))
    logging.getLogger("nanoidp").setLevel(logging.ERROR)  # audit lines would name users
    realm_front.target = KeycloakLayout(app, provider.issuer)
    kube_front.target = KubernetesLayout(app, kube_server.url)
    kube = KubeIssuer(issuer=kube_server.url, ca_cert=pki.ca_cert)
    return NanoidpServers(provider, kube, [realm_server, kube_server])
