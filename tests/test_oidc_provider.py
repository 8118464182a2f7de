"""The nanoidp wrapper: Keycloak's layout, grants and errors, and the Kubernetes-like issuer."""

from __future__ import annotations

import ssl
import time

import httpx
import jwt

from tests.support import trusting
from tests.support.oidc_provider import KubeIssuer, OIDCProvider


def _verify(
    token: str, jwks_uri: str, ca: ssl.SSLContext, issuer: str, audience: str
) -> dict[str, object]:
    keys = httpx.get(jwks_uri, verify=ca).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(entry) for entry in keys if entry["kid"] == kid)
    claims: dict[str, object] = jwt.decode(
        token, key.key, algorithms=["RS256"], issuer=issuer, audience=audience
    )
    return claims


def test_discovery_is_keycloak_shaped(oidc_provider: OIDCProvider) -> None:
    ca = trusting(oidc_provider.ca_cert)
    document = httpx.get(oidc_provider.discovery_url, verify=ca).json()
    assert oidc_provider.issuer.endswith("/realms/quay")
    assert document["issuer"] == oidc_provider.issuer
    assert document["token_endpoint"] == f"{oidc_provider.issuer}/protocol/openid-connect/token"
    assert document["jwks_uri"] == f"{oidc_provider.issuer}/protocol/openid-connect/certs"
    assert "password" in document["grant_types_supported"]
    assert "client_credentials" in document["grant_types_supported"]
    certs = httpx.get(document["jwks_uri"], verify=ca).json()
    assert certs["keys"] and certs["keys"][0]["kty"] == "RSA"


def test_password_grant_returns_a_verifiable_id_token(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={
            "grant_type": "password",
            "client_id": oidc_provider.public_client,
            "username": "jdoe",
            "password": oidc_provider.users["jdoe"],
            "scope": "openid",
        },
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code == 200
    body = answer.json()
    assert {"access_token", "id_token", "expires_in"} <= set(body)
    claims = _verify(
        body["id_token"],
        oidc_provider.jwks_uri,
        trusting(oidc_provider.ca_cert),
        oidc_provider.issuer,
        oidc_provider.public_client,
    )
    assert claims["sub"] == "jdoe"
    assert isinstance(claims["exp"], int) and claims["exp"] > time.time()


def test_bad_password_is_invalid_grant_with_nanoidps_400(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={
            "grant_type": "password",
            "client_id": oidc_provider.public_client,
            "username": "jdoe",
            "password": "wrong",
            "scope": "openid",
        },
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code == 400  # Keycloak says 401; a client must accept both
    assert answer.json()["error"] == "invalid_grant"


def test_client_credentials_with_basic_auth(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.client_credentials_token()
    claims = _verify(
        token, oidc_provider.jwks_uri, trusting(oidc_provider.ca_cert), oidc_provider.issuer, "quay"
    )
    assert claims["sub"] == oidc_provider.confidential_client


def test_client_credentials_refused_for_the_public_client(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": oidc_provider.public_client},
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] == "unauthorized_client"


def test_client_credentials_bad_secret(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(oidc_provider.confidential_client, "not-the-secret"),
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_resource_parameter_sets_the_audience(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.password_token("alice", kind="access_token", resource="https://quay.test")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://quay.test"


def test_mint_signs_with_the_published_key(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.mint("someone", audience="aud-x", exp=int(time.time()) + 60)
    claims = _verify(
        token,
        oidc_provider.jwks_uri,
        trusting(oidc_provider.ca_cert),
        oidc_provider.issuer,
        "aud-x",
    )
    assert claims["sub"] == "someone"


def test_kube_issuer_discovery_and_token(kube_issuer: KubeIssuer) -> None:
    ca = trusting(kube_issuer.ca_cert)
    document = httpx.get(f"{kube_issuer.issuer}/.well-known/openid-configuration", verify=ca)
    assert document.json()["issuer"] == kube_issuer.issuer
    assert document.json()["jwks_uri"] == f"{kube_issuer.issuer}/openid/v1/jwks"
    token = kube_issuer.mint("ci", "builder", audience="quay.test")
    claims = _verify(token, document.json()["jwks_uri"], ca, kube_issuer.issuer, "quay.test")
    assert claims["sub"] == "system:serviceaccount:ci:builder"
    assert claims["aud"] == ["quay.test"]
