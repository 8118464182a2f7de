"""Small OIDC issuers for the ``demo`` command and for tests.

:class:`KeycloakIssuer` imitates one Keycloak realm (issuer ``{base}/realms/{realm}``): discovery,
JWKS, and a token endpoint with the password and client_credentials grants, the device
authorization grant (RFC 8628, PKCE included) with refresh tokens and their revocation (RFC
7009), standard token exchange (RFC 8693, Keycloak's "token exchange v2"), clients that
authenticate with a secret or with a signed JWT (private_key_jwt, RFC 7523), Keycloak's error
bodies and UUID subjects. A user replaced by another of the same username (deleted and created
again: a new ``sub``) loses every refresh token, as Keycloak ends a deleted user's sessions.
:class:`KubernetesIssuer` imitates an API server's service-account issuer: discovery and JWKS,
plus :meth:`KubernetesIssuer.mint` for projected-token files.
The interop tests use the third-party nanoidp instead (``tests/support/oidc_provider.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from .keys import SigningKey, generate_rsa_key, jwks
from .server import Request, Response, RunningServer, serve_wsgi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .tls import TestPKI


@dataclass(frozen=True)
class IssuerUser:
    """A realm user; ``sub`` is a UUID, as in Keycloak."""

    username: str
    password: str
    sub: str = field(default_factory=lambda: str(uuid.uuid4()))
    email: str | None = None


@dataclass(frozen=True)
class IssuerClient:
    """A realm client. ``secret=None`` makes it public; ``service_account`` enables
    client_credentials (confidential clients only); ``direct_access`` enables the password grant.
    ``jwt_public_key`` (an RSA or EC public key) makes it a client that authenticates with a
    signed JWT (Keycloak's "Signed JWT" authenticator, private_key_jwt) instead of a secret;
    ``token_exchange`` is Keycloak's "Standard token exchange" switch on the client.
    """

    client_id: str
    secret: str | None = None
    direct_access: bool = True
    service_account: bool = False
    service_account_sub: str = field(default_factory=lambda: str(uuid.uuid4()))
    jwt_public_key: Any = None
    token_exchange: bool = False

    @property
    def public(self) -> bool:
        return self.secret is None and self.jwt_public_key is None


_INVALID_CLIENT = "Invalid client or Invalid client credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Keycloak's defaults: a device code lives 600 s, and is polled at most every 5 s
DEVICE_CODE_LIFETIME = 600
DEVICE_POLL_INTERVAL = 5
#: a refresh token's life without offline_access (Keycloak's SSO session idle: 30 minutes)
REFRESH_LIFETIME = 1800
_SIGNED_JWT_FAILED = "Client authentication with signed JWT failed: "


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response.json(status, {"error": error, "error_description": description})


@dataclass
class _DeviceCode:
    """A device authorization waiting for its person (``sub``: None until approved)."""

    client_id: str
    scope: str
    user_code: str
    expires_at: float
    challenge: str | None
    sub: str | None = None


@dataclass(frozen=True)
class _Session:
    """What a refresh token stands for: whose it is, for which client and scope."""

    client_id: str
    sub: str
    scope: str
    expires_at: float | None


class _ServedIssuer:
    """What both issuers share: a base URL known once served, a key, and serving."""

    def __init__(self, key: SigningKey | None, base_url: str | None) -> None:
        self.key = key or generate_rsa_key()
        self.base_url = base_url
        self._server: RunningServer | None = None

    def start(
        self, *, pki: TestPKI | None, host: str = "127.0.0.1", port: int = 0
    ) -> RunningServer:
        """Serve in a background thread and take the server's URL as the base URL."""
        server = serve_wsgi(self, host=host, port=port, pki=pki)  # type: ignore[arg-type]
        self._server = server
        self.base_url = server.url
        return server

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _base(self) -> str:
        if self.base_url is None:
            raise RuntimeError("the issuer has no base URL yet: start() it or pass base_url")
        return self.base_url.rstrip("/")


class KeycloakIssuer(_ServedIssuer):
    """A WSGI app imitating one Keycloak realm.

    :param users: realm users (password grant).
    :param clients: realm clients.
    :param realm: realm name; the issuer is ``{base_url}/realms/{realm}``.
    :param token_lifetime: seconds tokens live (Keycloak's default: 300).
    """

    def __init__(
        self,
        *,
        users: Iterable[IssuerUser] = (),
        clients: Iterable[IssuerClient] = (),
        realm: str = "quay",
        token_lifetime: int = 300,
        key: SigningKey | None = None,
        base_url: str | None = None,
    ) -> None:
        super().__init__(key, base_url)
        self.realm = realm
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self.users = {user.username: user for user in users}
        self.clients = {client.client_id: client for client in clients}
        self.token_requests = 0
        self.token_exchanges = 0
        #: jti of every client assertion accepted: Keycloak refuses one used twice
        self._assertion_ids: set[str] = set()
        self._device_codes: dict[str, _DeviceCode] = {}
        #: refresh token -> its session (a refresh issues a new one; the old stays valid, as
        #: with Keycloak's default "Revoke Refresh Token: off")
        self._sessions: dict[str, _Session] = {}

    def replace_user(self, user: IssuerUser) -> None:
        """The realm's user of that username is deleted and ``user`` created in its place: the
        old person's refresh tokens stop working (their ``sub`` no longer exists)."""
        with self._lock:
            self.users[user.username] = user

    def approve_device(self, verification_uri: str, user_code: str, username: str) -> None:
        """What the person does on the verification page: sign in and approve the code."""
        if not verification_uri.startswith(f"{self.issuer}/device"):
            raise ValueError(f"not this realm's verification page: {verification_uri}")
        with self._lock:
            user = self.users[username]
            for waiting in self._device_codes.values():
                if waiting.user_code == user_code and waiting.sub is None:
                    waiting.sub = user.sub
                    return
        raise ValueError(f"no device code waits for user code {user_code}")

    def refresh_tokens(self) -> int:
        """How many refresh tokens still work (issued, not revoked, not expired)."""
        now = time.time()
        with self._lock:
            return sum(
                1
                for session in self._sessions.values()
                if session.expires_at is None or session.expires_at > now
            )

    @property
    def issuer(self) -> str:
        return f"{self._base()}/realms/{self.realm}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def discovery(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
            "token_endpoint": f"{issuer}/protocol/openid-connect/token",
            "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
            "device_authorization_endpoint": f"{issuer}/protocol/openid-connect/auth/device",
            "revocation_endpoint": f"{issuer}/protocol/openid-connect/revoke",
            "grant_types_supported": [
                "password",
                "client_credentials",
                "refresh_token",
                DEVICE_GRANT,
                TOKEN_EXCHANGE,
            ],
            "code_challenge_methods_supported": ["plain", "S256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        }

    def mint(
        self,
        sub: str,
        *,
        audience: str | list[str] = "account",
        azp: str | None = None,
        lifetime: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A token signed by this realm's key for any ``sub``/``aud`` (tests)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": now + (self.token_lifetime if lifetime is None else lifetime),
            "jti": str(uuid.uuid4()),
            "typ": "Bearer",
        }
        if azp is not None:
            claims["azp"] = azp
        claims.update(extra or {})
        return self.key.sign(claims)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        prefix = f"/realms/{self.realm}"
        path = request.path
        if path == f"{prefix}/.well-known/openid-configuration" and request.method == "GET":
            response = Response.json(200, self.discovery())
        elif path == f"{prefix}/protocol/openid-connect/certs" and request.method == "GET":
            response = Response.json(200, jwks([self.key]))
        elif path == f"{prefix}/protocol/openid-connect/token":
            if request.method != "POST":
                response = Response.json(405, {"error": "RESTEASY003650: No resource method found"})
            else:
                response = self._token(request)
        elif path == f"{prefix}/protocol/openid-connect/auth/device" and request.method == "POST":
            response = self._device_authorization(request)
        elif path == f"{prefix}/protocol/openid-connect/revoke" and request.method == "POST":
            response = self._revoke(request)
        else:
            response = Response.json(404, {"error": "Unable to find matching target resource"})
        return response(start_response)

    def _client_credentials(
        self, request: Request, form: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        header = request.header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            client_id, _, secret = decoded.partition(":")
            return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
        return form.get("client_id"), form.get("client_secret")

    def _client(self, request: Request, form: Mapping[str, str]) -> IssuerClient | Response:
        """The client the request authenticates (a public one: by its client_id alone)."""
        if "client_assertion" in form or "client_assertion_type" in form:
            return self._signed_jwt_client(form)
        client_id, secret = self._client_credentials(request, form)
        found = self.clients.get(client_id or "")
        if found is None or found.jwt_public_key is not None:
            return _oauth_error(401, "invalid_client", _INVALID_CLIENT)
        if not found.public and not (secret and secrets.compare_digest(secret, found.secret or "")):
            return _oauth_error(401, "invalid_client", _INVALID_CLIENT)
        return found

    def _token(self, request: Request) -> Response:
        with self._lock:
            self.token_requests += 1
        form = request.form()
        client = self._client(request, form)
        if isinstance(client, Response):
            return client
        grant_type = form.get("grant_type")
        if grant_type == TOKEN_EXCHANGE:
            return self._token_exchange(client, form)
        if grant_type == DEVICE_GRANT:
            return self._device_token(client, form)
        if grant_type == "refresh_token":
            return self._refresh(client, form)
        audience = form.get("audience") or None
        scope = form.get("scope", "")
        if grant_type == "password":
            if not client.direct_access:
                return _oauth_error(
                    400, "unauthorized_client", "Client not allowed for direct access grants"
                )
            user = self.users.get(form.get("username", ""))
            password = form.get("password", "")
            if user is None or not secrets.compare_digest(password, user.password):
                return _oauth_error(401, "invalid_grant", "Invalid user credentials")
            return self._token_response(client, user.sub, user.username, scope, audience, True)
        if grant_type == "client_credentials":
            if client.public or not client.service_account:
                return _oauth_error(
                    401, "unauthorized_client", "Client not enabled to retrieve service account"
                )
            username = f"service-account-{client.client_id}"
            return self._token_response(
                client, client.service_account_sub, username, scope, audience, False
            )
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")

    def _signed_jwt_client(self, form: Mapping[str, str]) -> IssuerClient | Response:
        """The client a private_key_jwt assertion authenticates, as Keycloak's JWT client
        validator checks it: its registered key, aud = this realm's token endpoint (or
        issuer), an unexpired exp, and a jti not seen before."""
        assertion_type = form.get("client_assertion_type")
        if not assertion_type:
            return _oauth_error(400, "invalid_client", "Parameter client_assertion_type is missing")
        if assertion_type != ASSERTION_TYPE:
            return _oauth_error(
                400,
                "invalid_client",
                f"Parameter client_assertion_type has value '{assertion_type}' but expected "
                f"is '{ASSERTION_TYPE}'",
            )
        assertion = form.get("client_assertion", "")
        if not assertion:
            return _oauth_error(400, "invalid_client", "client_assertion parameter missing")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_client", _SIGNED_JWT_FAILED + "Invalid token")
        client_id = unverified.get("sub")
        if not isinstance(client_id, str) or not client_id:
            return _oauth_error(
                400, "invalid_client", "Can't identify client. Subject missing on JWT token"
            )
        if form.get("client_id") and form["client_id"] != client_id:
            return _oauth_error(
                400, "invalid_client", "client_id parameter does not match sub claim"
            )
        client = self.clients.get(client_id)
        if client is None or client.jwt_public_key is None:
            return _oauth_error(401, "invalid_client", _INVALID_CLIENT)
        try:
            claims = jwt.decode(
                assertion,
                client.jwt_public_key,
                algorithms=["RS256", "ES256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return _oauth_error(
                400,
                "invalid_client",
                _SIGNED_JWT_FAILED + "Signature on JWT token failed validation",
            )
        expected = [self.issuer, self.token_endpoint]
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(aud in expected for aud in audiences):
            return _oauth_error(
                400,
                "invalid_client",
                f"{_SIGNED_JWT_FAILED}Invalid token audience. Expected audiences are "
                f"{expected} but audience from token is '{audiences}'",
            )
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp < time.time():
            return _oauth_error(400, "invalid_client", _SIGNED_JWT_FAILED + "Token is not active")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            return _oauth_error(
                400, "invalid_client", _SIGNED_JWT_FAILED + "Missing ID on the token"
            )
        with self._lock:
            if jti in self._assertion_ids:
                return _oauth_error(
                    400, "invalid_client", _SIGNED_JWT_FAILED + "Token reuse detected"
                )
            self._assertion_ids.add(jti)
        return client

    def _token_exchange(self, client: IssuerClient, form: Mapping[str, str]) -> Response:
        """Standard token exchange (Keycloak's v2, RFC 8693): an access token of this realm,
        whose audience holds the requesting client, for one with the requested audience."""
        with self._lock:
            self.token_exchanges += 1
        if not client.token_exchange or client.public:
            return _oauth_error(
                400,
                "invalid_request",
                "Standard token exchange is not enabled for the requested client",
            )
        subject_token = form.get("subject_token")
        if not subject_token:
            return _oauth_error(
                400,
                "invalid_request",
                "Parameter 'subject_token' required for standard token exchange",
            )
        subject_token_type = form.get("subject_token_type")
        if not subject_token_type:
            return _oauth_error(
                400,
                "invalid_request",
                "Parameter 'subject_token_type' required for standard token exchange",
            )
        if subject_token_type != ACCESS_TOKEN_TYPE:
            return _oauth_error(
                400, "invalid_request", "Parameter 'subject_token' supports access tokens only"
            )
        try:
            subject = jwt.decode(
                subject_token,
                self.key.private_key.public_key(),
                algorithms=[self.key.algorithm],
                issuer=self.issuer,
                options={"verify_aud": False},
            )
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_request", "Invalid token")
        if subject.get("typ") != "Bearer":
            return _oauth_error(400, "invalid_request", "Invalid token")
        requested = form.get("requested_token_type")
        if requested and requested != ACCESS_TOKEN_TYPE:
            return _oauth_error(400, "invalid_request", "requested_token_type unsupported")
        audience = subject.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client.client_id not in audiences:
            return _oauth_error(400, "invalid_request", "Client is not within the token audience")
        target = form.get("audience") or client.client_id
        if target not in self.clients:
            return _oauth_error(
                400, "invalid_request", f"Requested audience not available: {target}"
            )
        scope = str(subject.get("scope") or "profile email")
        extra = {"scope": scope}
        if "preferred_username" in subject:
            extra["preferred_username"] = str(subject["preferred_username"])
        access = self.mint(str(subject["sub"]), audience=target, azp=client.client_id, extra=extra)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.token_lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": scope,
            "issued_token_type": ACCESS_TOKEN_TYPE,
        }
        return Response.json(200, body, headers=[("Cache-Control", "no-store")])

    def _device_authorization(self, request: Request) -> Response:
        form = request.form()
        client = self._client(request, form)
        if isinstance(client, Response):
            return client
        challenge = form.get("code_challenge")
        method = form.get("code_challenge_method", "plain")
        if challenge is not None and method not in ("plain", "S256"):
            return _oauth_error(400, "invalid_request", "Invalid parameter: code challenge method")
        device_code = secrets.token_urlsafe(32)
        letters = "BCDFGHJKLMNPQRSTVWXZ"
        user_code = "-".join("".join(secrets.choice(letters) for _ in range(4)) for _ in range(2))
        stored = challenge if method == "plain" or challenge is None else f"S256:{challenge}"
        waiting = _DeviceCode(
            client.client_id,
            form.get("scope", ""),
            user_code,
            time.time() + DEVICE_CODE_LIFETIME,
            stored,
        )
        with self._lock:
            self._device_codes[device_code] = waiting
        page = f"{self.issuer}/device"
        return Response.json(
            200,
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": page,
                "verification_uri_complete": f"{page}?user_code={user_code}",
                "expires_in": DEVICE_CODE_LIFETIME,
                "interval": DEVICE_POLL_INTERVAL,
            },
        )

    def _device_token(self, client: IssuerClient, form: Mapping[str, str]) -> Response:
        with self._lock:
            waiting = self._device_codes.get(form.get("device_code", ""))
            if waiting is None or waiting.client_id != client.client_id:
                return _oauth_error(400, "invalid_grant", "Device code not valid")
            if waiting.expires_at <= time.time():
                del self._device_codes[form["device_code"]]
                return _oauth_error(400, "expired_token", "Device code is expired")
            if waiting.sub is None:
                return _oauth_error(
                    400, "authorization_pending", "The authorization request is still pending"
                )
            del self._device_codes[form["device_code"]]
        if waiting.challenge is not None and not _pkce_holds(
            waiting.challenge, form.get("code_verifier")
        ):
            return _oauth_error(400, "invalid_grant", "PKCE verification failed")
        return self._session_response(client, waiting.sub, waiting.scope)

    def _refresh(self, client: IssuerClient, form: Mapping[str, str]) -> Response:
        with self._lock:
            session = self._sessions.get(form.get("refresh_token", ""))
        if session is None or (
            session.expires_at is not None and session.expires_at <= time.time()
        ):
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if session.client_id != client.client_id:
            return _oauth_error(
                400,
                "invalid_grant",
                "Invalid refresh token. Token client and authorized client don't match",
            )
        return self._session_response(client, session.sub, session.scope)

    def _session_response(self, client: IssuerClient, sub: str, scope: str) -> Response:
        """Tokens for the user whose ``sub`` it is, with a refresh token; a user deleted since
        (no user has that ``sub`` now) has no session left."""
        with self._lock:
            user = next((u for u in self.users.values() if u.sub == sub), None)
        if user is None:
            return _oauth_error(400, "invalid_grant", "Session not active")
        offline = "offline_access" in scope.split()
        refresh = secrets.token_urlsafe(32)
        lifetime = None if offline else REFRESH_LIFETIME
        expires_at = None if lifetime is None else time.time() + lifetime
        with self._lock:
            self._sessions[refresh] = _Session(client.client_id, sub, scope, expires_at)
        return self._token_response(
            client, sub, user.username, scope, None, True, refresh=(refresh, lifetime or 0)
        )

    def _revoke(self, request: Request) -> Response:
        form = request.form()
        client = self._client(request, form)
        if isinstance(client, Response):
            return client
        with self._lock:
            session = self._sessions.get(form.get("token", ""))
            if session is not None and session.client_id == client.client_id:
                del self._sessions[form["token"]]
        return Response(200, b"")  # RFC 7009: an unknown token is no error

    def _token_response(
        self,
        client: IssuerClient,
        sub: str,
        username: str,
        scope: str,
        audience: str | None,
        user_grant: bool,
        refresh: tuple[str, int] | None = None,
    ) -> Response:
        extra = {"preferred_username": username, "scope": scope or "profile email"}
        aud = audience or client.client_id
        access = self.mint(sub, audience=aud, azp=client.client_id, extra=extra)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.token_lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": extra["scope"],
        }
        if refresh is not None:
            body["refresh_token"], body["refresh_expires_in"] = refresh
        if user_grant and "openid" in scope.split():
            body["id_token"] = self.mint(
                sub, audience=aud, azp=client.client_id, extra={**extra, "typ": "ID"}
            )
        return Response.json(200, body, headers=[("Cache-Control", "no-store")])


def _pkce_holds(stored: str, verifier: str | None) -> bool:
    """RFC 7636: the verifier matches the challenge (``S256:...``: its SHA-256, else plain)."""
    if not verifier:
        return False
    if stored.startswith("S256:"):
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        made = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return secrets.compare_digest(made, stored[5:])
    return secrets.compare_digest(verifier, stored)


class KubernetesIssuer(_ServedIssuer):
    """A WSGI app imitating a Kubernetes service-account issuer (issuer = the base URL).

    Serves ``/.well-known/openid-configuration`` and ``/openid/v1/jwks``; :meth:`mint` signs
    projected service-account tokens.
    """

    def __init__(self, *, key: SigningKey | None = None, base_url: str | None = None) -> None:
        super().__init__(key, base_url)

    @property
    def issuer(self) -> str:
        return self._base()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def mint(
        self,
        namespace: str,
        name: str,
        *,
        audience: str | list[str] = "quay",
        lifetime: int = 3600,
        issued_at: int | None = None,
    ) -> str:
        """A projected service-account token, ``sub`` = ``system:serviceaccount:NS:NAME``."""
        now = int(time.time()) if issued_at is None else issued_at
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": [audience] if isinstance(audience, str) else audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": str(uuid.uuid4())},
            },
        }
        return self.key.sign(claims)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        if request.path == "/.well-known/openid-configuration":
            response = Response.json(200, self.discovery())
        elif request.path == "/openid/v1/jwks":
            response = Response.json(200, jwks([self.key]))
        else:
            response = Response.json(404, {"kind": "Status", "status": "Failure", "code": 404})
        return response(start_response)
