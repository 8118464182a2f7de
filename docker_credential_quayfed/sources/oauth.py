"""What the sources that call the issuer's token endpoint share: how the client authenticates
(client_secret_basic, client_secret_post, private_key_jwt), the grant form, and the token
exchange (RFC 8693) that trades a token for one with another audience."""

from __future__ import annotations

from typing import TYPE_CHECKING

# a setting group config validates: the sources' declarations name it from here
from docker_credential_quayfed.config import CLIENT_SECRET_KEYS as CLIENT_SECRET_KEYS
from docker_credential_quayfed.errors import ConfigError, IssuerError, SecretError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from docker_credential_quayfed.sources.base import SourceContext

#: how a confidential client proves who it is, and the key private_key_jwt signs with
CLIENT_AUTH_KEYS = ("client_auth", "client_key_file", "client_key_id")
#: settings every token-endpoint grant reads
GRANT_OPTIONS = ("scope", "token_type", "audience")

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


def request_token(context: SourceContext, form: dict[str, str]) -> str:
    """POST ``form`` to the issuer's token endpoint (found by discovery), the client
    authenticated by :func:`authenticate`, and return the token named by token_type."""
    from docker_credential_quayfed import oidc

    found = context.discover()
    client_auth = authenticate(context, form, found.token_endpoint)
    return oidc.request_token(
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
    from docker_credential_quayfed import log, oidc

    registry = context.registry
    log.secret(subject_token)
    found = context.discover()
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": TOKEN_TYPE_URIS[registry.token_type],
        "requested_token_type": TOKEN_TYPE_URIS["access_token"],
        "audience": registry.exchange_audience,
    }
    client_auth = authenticate(context, form, found.token_endpoint)
    try:
        token = oidc.request_token(
            context.session,
            found.token_endpoint,
            form,
            deadline=context.deadline,
            token_type="access_token",
            client_auth=client_auth,
        )
    except IssuerError as exc:
        if "invalid_client" in exc.problem:
            raise  # its fix (the client's credentials) is the right one
        raise IssuerError(exc.problem, _EXCHANGE_FIX) from None
    log.debug(f"token exchanged at the issuer for audience {registry.exchange_audience!r}")
    return token


def revoke(context: SourceContext, refresh_token: str) -> bool:
    """Revoke the refresh token at the issuer (RFC 7009); False when it has no endpoint."""
    from docker_credential_quayfed import log, transport

    found = context.discover()
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
