"""The issuer's services: discovery, the token endpoint's grants and errors, how a client
authenticates (client_secret_basic, client_secret_post, private_key_jwt), the token exchange
(RFC 8693) that trades a token for one with another audience, and revocation (RFC 7009).
Sources call these; nothing here knows a source."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import httpx

from docker_credential_quayfed import claims, log, transport, urls
from docker_credential_quayfed.config import CLIENT_SECRET_KEYS
from docker_credential_quayfed.errors import (
    ConfigError,
    GrantRefused,
    IssuerError,
    QuayfedError,
    SecretError,
)
from docker_credential_quayfed.transport import Deadline

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.request import SourceContext

#: how long a discovery document is used from disk before it is fetched again
DISCOVERY_LIFETIME = 3600.0
DISCOVERY_MAGIC = "quayfed-discovery 1"


@dataclass(frozen=True)
class Discovery:
    issuer: str
    token_endpoint: str
    jwks_uri: str
    #: RFC 8628; empty when the issuer does not offer the device flow
    device_authorization_endpoint: str = ""
    #: for the authorization-code flow with PKCE (``login --browser``)
    authorization_endpoint: str = ""
    #: RFC 7009; empty when the issuer cannot revoke tokens
    revocation_endpoint: str = ""
    code_challenge_methods: tuple[str, ...] = ()
    #: what the document says beyond the endpoints, for doctor (e.g. grant types)

    #: the endpoints a discovery document may name, each held to the issuer's host
    ENDPOINTS = (
        "token_endpoint",
        "jwks_uri",
        "device_authorization_endpoint",
        "authorization_endpoint",
        "revocation_endpoint",
    )


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def discover(
    session: httpx.Client,
    issuer: str,
    deadline: Deadline,
    *,
    endpoint_hosts: tuple[str, ...] = (),
    allow_http: bool = False,
) -> Discovery:
    """The issuer's discovery document; its endpoints must be https on the issuer's host (or
    on one of ``endpoint_hosts``): a document may not send credentials anywhere else."""
    url = discovery_url(issuer)
    response = transport.request(session, "GET", url, deadline=deadline, what="OIDC discovery")
    if response.status_code != 200:
        raise IssuerError(
            f"OIDC discovery at {url} answered HTTP {response.status_code}",
            "check issuer in the config: it must be the issuer URL, e.g. "
            "https://HOST/realms/REALM for Keycloak",
        )
    document = transport.json_object(response)
    endpoint = document.get("token_endpoint") if document is not None else None
    if document is None or not isinstance(endpoint, str) or not endpoint.strip():
        raise IssuerError(
            f"OIDC discovery at {url} is not an OpenID configuration (no token_endpoint)",
            "check issuer in the config",
        )
    announced = document.get("issuer")
    if isinstance(announced, str) and announced != issuer:
        log.warn(
            f"the issuer announces itself as {log.server_text(repr(announced))} but the config "
            f"says {issuer!r}; "
            "Quay compares them exactly, so use the announced value"
        )
    found = Discovery(
        issuer=announced if isinstance(announced, str) else issuer,
        token_endpoint=document["token_endpoint"],
        jwks_uri=_text(document, "jwks_uri"),
        device_authorization_endpoint=_text(document, "device_authorization_endpoint"),
        authorization_endpoint=_text(document, "authorization_endpoint"),
        revocation_endpoint=_text(document, "revocation_endpoint"),
        code_challenge_methods=_texts(document, "code_challenge_methods_supported"),
    )
    for name in Discovery.ENDPOINTS:
        endpoint = getattr(found, name)
        if endpoint:
            _check_endpoint(name, endpoint, issuer, endpoint_hosts, allow_http)
    return found


def discovery_name(issuer: str) -> str:
    import hashlib

    return f"@discovery-{hashlib.sha256(issuer.encode('utf-8')).hexdigest()[:16]}.json"


def cached_discovery(
    cache: TokenCache,
    issuer: str,
    now: float,
    *,
    endpoint_hosts: tuple[str, ...] = (),
    allow_http: bool = False,
) -> Discovery | None:
    """The issuer's discovery from disk while younger than DISCOVERY_LIFETIME, its endpoints
    held to today's settings again; None when absent, old, damaged or now refused."""
    text = cache.read_private(discovery_name(issuer))
    if text is None:
        return None
    try:
        document = json.loads(text)
        fetched = float(document.pop("fetched_at"))
        if document.pop("format") != DISCOVERY_MAGIC or document.pop("for_issuer") != issuer:
            return None
        document.pop("grant_types", None)  # kept by earlier versions, read by none
        document["code_challenge_methods"] = tuple(
            str(v) for v in document.get("code_challenge_methods", ())
        )
        found = Discovery(**document)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not 0 <= now - fetched < DISCOVERY_LIFETIME:
        return None
    try:
        for name in Discovery.ENDPOINTS:
            endpoint = getattr(found, name)
            if endpoint:
                _check_endpoint(name, endpoint, issuer, endpoint_hosts, allow_http)
    except IssuerError:
        return None
    return found


def keep_discovery(cache: TokenCache, issuer: str, found: Discovery, now: float) -> None:
    """Write the discovery for later gets (best effort: a cold get works without it)."""
    document = {
        "format": DISCOVERY_MAGIC,
        "for_issuer": issuer,
        "fetched_at": now,
        **asdict(found),
    }
    try:
        cache.write_private(discovery_name(issuer), json.dumps(document, ensure_ascii=True))
    except (OSError, QuayfedError, UnicodeEncodeError) as exc:
        log.debug(f"could not keep the discovery document: {exc}")


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    return value.strip() if isinstance(value, str) else ""


def _texts(document: dict[str, Any], name: str) -> tuple[str, ...]:
    value = document.get(name)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))[:64]


def _check_endpoint(
    name: str, endpoint: str, issuer: str, endpoint_hosts: tuple[str, ...], allow_http: bool
) -> None:
    refused = urls.refusal(endpoint, allow_http=allow_http)
    if refused is not None:
        raise IssuerError(
            f"the issuer's discovery document gives {name} {refused[0]}",
            "the issuer must announce https endpoints; check its frontend URL settings",
        )
    if not urls.same_origin(endpoint, issuer, endpoint_hosts):
        host = urls.netloc(endpoint)
        found, expected = urls.origin(endpoint), urls.origin(issuer)
        same_host = found is not None and expected is not None and found[1] == expected[1]
        where = "another port" if same_host else "another host"
        raise IssuerError(
            f"the issuer's discovery document puts {name} on {where} ({host})",
            f'if that host is really the issuer\'s, add endpoint_hosts = ["{host}"]',
        )


def request_token(
    session: httpx.Client,
    endpoint: str,
    form: dict[str, str],
    *,
    deadline: Deadline,
    token_type: str,
    client_auth: tuple[str, str] | None = None,
) -> str:
    """POST a grant to the token endpoint and return the token named by token_type."""
    body = token_response(session, endpoint, form, deadline=deadline, client_auth=client_auth)
    return pick_token(body, token_type, form.get("grant_type", "?"))


def token_response(
    session: httpx.Client,
    endpoint: str,
    form: dict[str, str],
    *,
    deadline: Deadline,
    client_auth: tuple[str, str] | None = None,
    what: str = "",
    on_success: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """POST a grant (or a device authorization) and return the JSON answer; every token in it
    is registered as a secret. An OAuth error answer raises :class:`GrantRefused`.
    ``on_success`` gets a 200's JSON at once, with the deadline's alarm held back: what it
    writes (a rotated refresh token) is written whatever happens next."""
    grant = what or _grant_name(form.get("grant_type", "?"))
    response = transport.request(
        session,
        "POST",
        endpoint,
        deadline=deadline,
        what=f"token request ({grant})",
        data=form,
        auth=client_auth,
        headers={"Accept": "application/json"},
    )
    body = transport.json_object(response)
    if body is not None:
        for name in ("id_token", "access_token", "refresh_token", "device_code"):
            value = body.get(name)
            if isinstance(value, str):
                log.secret(value)
    if response.status_code != 200:
        raise _token_error(response.status_code, body, grant, endpoint)
    if body is None:
        raise IssuerError(
            f"the endpoint {urls.shown(endpoint)} answered HTTP 200 without JSON",
            "check that issuer points at an OIDC provider",
        )
    if on_success is not None:
        from docker_credential_quayfed.deadline import shielded

        with shielded():
            on_success(body)
    return body


def _grant_name(grant_type: str) -> str:
    """The short name people know a grant by (device_code for RFC 8628's URN)."""
    return grant_type.rsplit(":", 1)[-1] if grant_type.startswith("urn:") else grant_type


def pick_token(body: dict[str, Any], token_type: str, grant_type: str) -> str:
    """The token named by ``token_type`` in a token response, or a one-line refusal."""
    grant = _grant_name(grant_type)
    token = body.get(token_type)
    if not isinstance(token, str) or not token:
        present = sorted(
            k for k in ("id_token", "access_token") if isinstance(body.get(k), str) and body[k]
        )
        fix = (
            "add openid to scope (id_tokens need it)"
            if token_type == "id_token"
            else "set token_type to one the issuer returns"
        )
        raise IssuerError(
            f"the issuer returned no {token_type} for the {grant} grant "
            f"(it returned: {', '.join(present) or 'nothing usable'})",
            fix,
        )
    return token


_ERROR_FIXES = {
    "invalid_grant": "check the username and password (or the refresh token has expired)",
    "invalid_client": "check client_id and the client secret",
    "unauthorized_client": (
        "enable this grant on the client (Keycloak: Direct access grants for password, "
        "Service accounts for client_credentials)"
    ),
    "unsupported_grant_type": "enable this grant for the client at the issuer",
    "invalid_scope": "check scope in the config",
    "invalid_request": "check client_id, scope and audience in the config",
}


def _token_error(status: int, body: dict[str, Any] | None, grant: str, endpoint: str) -> Exception:
    if body is not None and isinstance(body.get("error"), str):
        raw_code = body["error"]
        code = log.server_text(body["error"], limit=60)
        description = body.get("error_description")
        detail = (
            f"{code}: {log.server_text(description, limit=60)}"
            if isinstance(description, str)
            else code
        )
        if raw_code == "unauthorized_client" and _names_client_credentials(description):
            # Keycloak 26 answers a wrong client secret or assertion with unauthorized_client
            # ("Invalid client or Invalid client credentials"), where RFC 6749 says invalid_client
            raw_code = code = "invalid_client"
        return GrantRefused(
            f"the issuer refused the {grant} grant (HTTP {status}, {detail})",
            _ERROR_FIXES.get(code, "check the client settings at the issuer"),
            code=raw_code if raw_code.isascii() and len(raw_code) <= 64 else "",
        )
    return IssuerError(
        f"the token endpoint {urls.shown(endpoint)} answered HTTP {status} to the {grant} grant",
        "check issuer and client_id in the config, and that the issuer is healthy",
    )


def _names_client_credentials(description: Any) -> bool:
    return isinstance(description, str) and "invalid client credentials" in description.lower()


def check_jwt(token: str, source: str, now: float) -> dict[str, Any]:
    """Claims of the token a source produced; refuses what Quay would refuse with a 500 or 400."""
    fix = f"check the {source!r} token source"
    try:  # read as Quay reads it before its checks; no jwt import (cryptography) for that
        header, token_claims = claims.split(token)
    except claims.NotAJWT:
        raise IssuerError(f"the {source!r} token source did not produce a JWT", fix) from None
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise IssuerError(
            f"the JWT from the {source!r} source has no kid header, which Quay requires",
            "configure the issuer to put kid in its tokens",
        )
    exp = claims.numeric_claim(token_claims, "exp")
    if exp is not None and exp <= now:
        raise IssuerError(
            f"the JWT from the {source!r} source expired {int(now - exp)}s ago "
            f"({_claim_summary(token_claims)})",
            "refresh the token file or variable (projected tokens are rotated by the kubelet)",
        )
    if not isinstance(token_claims.get("iss"), str) or not isinstance(token_claims.get("sub"), str):
        raise IssuerError(f"the JWT from the {source!r} source has no iss or sub claim", fix)
    return token_claims


def _claim_summary(token_claims: dict[str, Any]) -> str:
    return f"iss={token_claims.get('iss')} sub={token_claims.get('sub')}"


def discovery(context: SourceContext) -> Discovery:
    """The issuer's discovery document, its endpoints held to the registry's settings:
    from the cache directory while recent (``fresh_discovery`` forces a fetch)."""
    registry, cache, clock = context.registry, context.request.cache, context.request.clock
    if not context.fresh_discovery:
        found = cached_discovery(
            cache,
            registry.issuer,
            clock(),
            endpoint_hosts=registry.endpoint_hosts,
            allow_http=registry.allow_insecure_http,
        )
        if found is not None:
            context.discovered_from_cache = True
            return found
    found = discover(
        context.session,
        registry.issuer,
        context.deadline,
        endpoint_hosts=registry.endpoint_hosts,
        allow_http=registry.allow_insecure_http,
    )
    keep_discovery(cache, registry.issuer, found, clock())
    return found


# -- client authentication, grants, token exchange, revocation -----------------------------

#: RFC 7523 section 2.2: the client_assertion_type of a JWT assertion
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: a client assertion is good for this many seconds (it is made just before the request)
ASSERTION_LIFETIME = 60
#: private key type -> the JWS algorithm its assertions are signed with
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
#: RFC 8693 section 3: token type identifiers, by our token_type setting
TOKEN_TYPE_URIS = {
    "access_token": "urn:ietf:params:oauth:token-type:access_token",
    "id_token": "urn:ietf:params:oauth:token-type:id_token",
}
_EXCHANGE_FIX = (
    "enable standard token exchange on client_id at the issuer, make exchange_audience a "
    "client id of the realm, and use token_type = 'access_token' (Keycloak exchanges access "
    "tokens only)"
)


def common_form(context: SourceContext) -> dict[str, str]:
    registry = context.registry
    form = {"scope": registry.scope}
    if registry.audience:
        form["audience"] = registry.audience
    return form


def has_client_secret(context: SourceContext) -> bool:
    return any(getattr(context.registry, name) for name in CLIENT_SECRET_KEYS)


def client_secret(context: SourceContext) -> str:
    return context.secret("client_secret", "client secret")


def authenticate(
    context: SourceContext, form: dict[str, str], endpoint: str
) -> tuple[str, str] | None:
    """Authenticate the client to ``endpoint`` as ``client_auth`` says.

    Adds to ``form`` what the method sends in the body (client_id, client_secret, or the
    private_key_jwt assertion) and returns the (client_id, secret) pair for HTTP Basic, or
    None. A client without a secret and without private_key_jwt is public: client_id only.
    """
    registry = context.registry
    if registry.client_auth == "private_key_jwt":
        form["client_id"] = registry.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = client_assertion(context, endpoint)
        return None
    if not has_client_secret(context):
        form["client_id"] = registry.client_id
        return None
    secret = client_secret(context)
    if registry.client_auth == "client_secret_post":
        form["client_id"] = registry.client_id
        form["client_secret"] = secret
        return None
    return (registry.client_id, secret)


def client_assertion(context: SourceContext, endpoint: str) -> str:
    """A JWT signed with the client's private key (RFC 7523): iss = sub = client_id,
    aud = the token endpoint, a random jti, valid for ASSERTION_LIFETIME seconds."""
    import secrets
    import time

    from docker_credential_quayfed import log

    registry = context.registry
    key, algorithm = _signing_key(registry.client_key_file)
    import jwt  # after the key: its one-line error when cryptography is missing comes first

    now = int(time.time())
    claims = {
        "iss": registry.client_id,
        "sub": registry.client_id,
        "aud": endpoint,
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    }
    headers = {"kid": registry.client_key_id} if registry.client_key_id else None
    assertion = jwt.encode(claims, key, algorithm=algorithm, headers=headers)
    log.secret(assertion)
    return assertion


def _signing_key(key_file: str) -> tuple[RSAPrivateKey | EllipticCurvePrivateKey, str]:
    """The private key in ``key_file`` and the algorithm to sign with: RS256 for RSA, ES256
    (or ES384/ES512 by curve) for EC. Read like every secret file; never shown."""

    from docker_credential_quayfed import paths, secret_reader

    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise ConfigError(
            "client_auth = 'private_key_jwt' needs the Python package cryptography, which is "
            "not installed",
            "pip install 'docker-credential-quayfed[keys]' (or your distribution's "
            "python3-cryptography)",
        ) from None
    pem = secret_reader.read_secret_file("client key", key_file, where="client_key_file")
    path = paths.resolve_path(key_file)
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except TypeError:
        raise SecretError(
            f"the client key file {path} (client_key_file) is encrypted",
            "store the key unencrypted in a 0600 file (openssl pkey -in KEY -out PLAIN)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SecretError(
            f"the client key file {path} (client_key_file) holds no PEM private key",
            "point client_key_file at an RSA or EC private key in PEM "
            "(openssl genpkey -algorithm RSA -out key.pem)",
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return key, _EC_ALGORITHMS[key.curve.name]
    raise SecretError(
        f"the client key file {path} (client_key_file) holds a key that cannot sign "
        "RS256 or ES256 assertions",
        "use an RSA key or an EC key on P-256",
    )


def grant(context: SourceContext, form: dict[str, str]) -> str:
    """POST ``form`` to the issuer's token endpoint (found by discovery), the client
    authenticated by :func:`authenticate`, and return the token named by token_type."""
    found = discovery(context)
    client_auth = authenticate(context, form, found.token_endpoint)
    return request_token(
        context.session,
        found.token_endpoint,
        form,
        deadline=context.deadline,
        token_type=context.registry.token_type,
        client_auth=client_auth,
    )


def exchange_for_audience(context: SourceContext, subject_token: str) -> str:
    """Trade ``subject_token`` at the issuer for a token whose audience is
    ``exchange_audience`` (RFC 8693 token exchange) and return it.

    The subject token's type follows token_type; the requested type is an access token, which
    is what Keycloak's standard token exchange issues (RFC 8693 puts the issued token in the
    answer's access_token, whatever its type).
    """
    from docker_credential_quayfed import log

    registry = context.registry
    log.secret(subject_token)
    found = discovery(context)
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": TOKEN_TYPE_URIS[registry.token_type],
        "requested_token_type": TOKEN_TYPE_URIS["access_token"],
        "audience": registry.exchange_audience,
    }
    client_auth = authenticate(context, form, found.token_endpoint)
    try:
        token = request_token(
            context.session,
            found.token_endpoint,
            form,
            deadline=context.deadline,
            token_type="access_token",
            client_auth=client_auth,
        )
    except IssuerError as exc:
        if "invalid_client" in exc.problem or getattr(exc, "code", "") == "invalid_client":
            raise  # its fix (the client's credentials) is the right one
        raise IssuerError(exc.problem, _EXCHANGE_FIX) from None
    log.debug(f"token exchanged at the issuer for audience {registry.exchange_audience!r}")
    return token


def revoke(context: SourceContext, refresh_token: str) -> bool:
    """Revoke the refresh token at the issuer (RFC 7009); False when it has no endpoint."""
    found = discovery(context)
    endpoint = found.revocation_endpoint
    if not endpoint:
        return False
    form = {"token": refresh_token, "token_type_hint": "refresh_token"}
    # A client assertion's audience is the token endpoint, as issuers expect everywhere.
    client_auth = authenticate(context, form, found.token_endpoint)
    response = transport.request(
        context.session,
        "POST",
        endpoint,
        deadline=context.deadline,
        what="token revocation",
        data=form,
        auth=client_auth,
    )
    if response.status_code != 200:
        body = transport.json_object(response)
        error = body.get("error") if body else None
        detail = f", {log.server_text(error, limit=60)}" if isinstance(error, str) else ""
        raise IssuerError(
            f"the issuer did not revoke the refresh token (HTTP {response.status_code}{detail})",
            "it is forgotten here; revoke the session at the issuer if it must end now",
        )
    return True
