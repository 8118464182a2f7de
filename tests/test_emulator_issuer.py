"""The emulator's own pieces: test PKI, WSGI server, keys, the Keycloak-shaped and Kubernetes-like
issuers, and the ``python -m quay_sandbox`` entry point."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from quay_sandbox.issuer import (
    DEVICE_GRANT,
    IssuerClient,
    IssuerUser,
    KeycloakIssuer,
    KubernetesIssuer,
)
from quay_sandbox.keys import generate_ec_key, generate_rsa_key, jwks
from quay_sandbox.quay import EXCHANGE_PATH
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI, load_or_make_test_pki, make_test_pki
from tests.support import trusting

JDOE = IssuerUser("jdoe", "secret")


@pytest.fixture(scope="module")
def tls(test_pki: TestPKI) -> ssl.SSLContext:
    return trusting(test_pki.ca_cert)


@pytest.fixture(scope="module")
def realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    issuer = KeycloakIssuer(
        users=[JDOE],
        clients=[
            IssuerClient("cli"),
            IssuerClient("ci", secret="ci-secret", service_account=True),
            IssuerClient("web", secret="web-secret"),
        ],
    )
    with issuer.start(pki=test_pki):
        yield issuer


def token_request(
    realm: KeycloakIssuer,
    tls: ssl.SSLContext,
    data: dict[str, str],
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(realm.token_endpoint, data=data, auth=auth, verify=tls, timeout=10)


def decode(realm: KeycloakIssuer, token: str, audience: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        realm.key.private_key.public_key(),
        algorithms=["RS256"],
        audience=audience,
        issuer=realm.issuer,
    )
    return claims


# --- PKI, server, keys -------------------------------------------------------------------------


def test_pki_files_and_modes(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    assert stat.S_IMODE(pki.server_key.stat().st_mode) == 0o600
    assert pki.server_cert.read_text().count("BEGIN CERTIFICATE") >= 1
    assert load_or_make_test_pki(tmp_path / "pki") == pki
    assert pki.ca_cert.read_bytes() == (tmp_path / "pki" / "ca.crt").read_bytes()


def test_server_http_https_head_and_ipv6(test_pki: TestPKI, tls: ssl.SSLContext) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    with serve_wsgi(app, pki=test_pki) as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        assert httpx.get(server.url, verify=tls).text == "ok"
        head = httpx.head(server.url, verify=tls)
        assert head.status_code == 200 and head.content == b""
    with serve_wsgi(app) as plain:
        assert httpx.get(plain.url).text == "ok"
    with serve_wsgi(app, host="::1", pki=test_pki) as six:
        assert six.url.startswith("https://[::1]:")
        assert httpx.get(six.url, verify=tls).text == "ok"


def test_jwks_exports_rsa_and_ec() -> None:
    rsa_key, ec_key = generate_rsa_key("r1"), generate_ec_key("e1")
    published = jwks([rsa_key, ec_key])["keys"]
    assert [(k["kid"], k["kty"], k["alg"]) for k in published] == [
        ("r1", "RSA", "RS256"),
        ("e1", "EC", "ES256"),
    ]
    for key, entry in zip((rsa_key, ec_key), published):
        token = key.sign({"sub": "x"})
        assert jwt.get_unverified_header(token)["kid"] == entry["kid"]
        verified = jwt.decode(token, jwt.PyJWK(entry).key, algorithms=[key.algorithm])
        assert verified == {"sub": "x"}


# --- the Keycloak-shaped issuer ----------------------------------------------------------------


def test_keycloak_discovery_and_certs(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    document = httpx.get(f"{realm.issuer}/.well-known/openid-configuration", verify=tls).json()
    assert realm.issuer.endswith("/realms/quay")
    assert document["issuer"] == realm.issuer
    assert document["token_endpoint"] == f"{realm.issuer}/protocol/openid-connect/token"
    assert document["jwks_uri"] == f"{realm.issuer}/protocol/openid-connect/certs"
    assert {"password", "client_credentials"} <= set(document["grant_types_supported"])
    certs = httpx.get(document["jwks_uri"], verify=tls).json()
    assert certs["keys"][0]["kid"] == realm.key.kid


def test_password_grant_with_openid_scope(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    data = {"grant_type": "password", "client_id": "cli", "username": "jdoe", "password": "secret"}
    without = token_request(realm, tls, data).json()
    assert "id_token" not in without and "access_token" in without
    body = token_request(realm, tls, {**data, "scope": "openid"}).json()
    assert body["expires_in"] == 300
    for kind in ("access_token", "id_token"):
        claims = decode(realm, body[kind], "cli")
        assert claims["sub"] == JDOE.sub and uuid.UUID(claims["sub"])
        assert claims["azp"] == "cli" and claims["preferred_username"] == "jdoe"
        assert claims["exp"] - claims["iat"] == 300
        assert jwt.get_unverified_header(body[kind])["kid"] == realm.key.kid


def test_password_grant_audience_parameter(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    data = {
        "grant_type": "password",
        "client_id": "cli",
        "username": "jdoe",
        "password": "secret",
        "audience": "quay.example",
    }
    token = token_request(realm, tls, data).json()["access_token"]
    assert decode(realm, token, "quay.example")["aud"] == "quay.example"


def test_bad_password(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    data = {"grant_type": "password", "client_id": "cli", "username": "jdoe", "password": "no"}
    answer = token_request(realm, tls, data)
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid user credentials",
    }


def test_client_credentials_basic_and_post(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    basic = token_request(
        realm, tls, {"grant_type": "client_credentials"}, auth=("ci", "ci-secret")
    )
    posted = token_request(
        realm,
        tls,
        {"grant_type": "client_credentials", "client_id": "ci", "client_secret": "ci-secret"},
    )
    subjects = set()
    for answer in (basic, posted):
        assert answer.status_code == 200
        body = answer.json()
        assert "id_token" not in body
        claims = decode(realm, body["access_token"], "ci")
        assert claims["preferred_username"] == "service-account-ci"
        subjects.add(claims["sub"])
    assert len(subjects) == 1 and uuid.UUID(subjects.pop())


def test_client_credentials_refusals(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    public = token_request(realm, tls, {"grant_type": "client_credentials", "client_id": "cli"})
    assert public.status_code == 401 and public.json()["error"] == "unauthorized_client"
    no_service_account = token_request(
        realm, tls, {"grant_type": "client_credentials"}, auth=("web", "web-secret")
    )
    assert no_service_account.json()["error"] == "unauthorized_client"
    bad_secret = token_request(realm, tls, {"grant_type": "client_credentials"}, auth=("ci", "x"))
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    unknown = token_request(realm, tls, {"grant_type": "password", "client_id": "nobody"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"


@pytest.fixture
def device_realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    issuer = KeycloakIssuer(
        users=[IssuerUser("jdoe", "secret")],
        clients=[IssuerClient("cli"), IssuerClient("other")],
    )
    with issuer.start(pki=test_pki):
        yield issuer


def device_code(realm: KeycloakIssuer, tls: ssl.SSLContext, **extra: str) -> dict[str, Any]:
    answer = httpx.post(
        realm.discovery()["device_authorization_endpoint"],
        data={"client_id": "cli", "scope": "openid", **extra},
        verify=tls,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_device_grant_waits_for_approval_then_gives_a_refresh_token(
    device_realm: KeycloakIssuer, tls: ssl.SSLContext
) -> None:
    code = device_code(device_realm, tls)
    assert code["interval"] == 5 and code["expires_in"] == 600
    poll = {"grant_type": DEVICE_GRANT, "client_id": "cli", "device_code": code["device_code"]}
    pending = token_request(device_realm, tls, poll)
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    with pytest.raises(ValueError, match="no device code waits"):
        device_realm.approve_device(code["verification_uri"], "WRONG-CODE", "jdoe")
    device_realm.approve_device(code["verification_uri_complete"], code["user_code"], "jdoe")
    body = token_request(device_realm, tls, poll).json()
    claims = decode(device_realm, body["id_token"], "cli")
    assert claims["sub"] == device_realm.users["jdoe"].sub
    assert claims["preferred_username"] == "jdoe"
    assert body["refresh_expires_in"] == 1800 and body["refresh_token"]
    spent = token_request(device_realm, tls, poll)
    assert (spent.status_code, spent.json()["error"]) == (400, "invalid_grant")
    other = token_request(
        device_realm, tls, {**poll, "client_id": "other", "device_code": code["device_code"]}
    )
    assert other.json()["error"] == "invalid_grant"


def test_device_grant_checks_pkce(device_realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    code = device_code(
        device_realm,
        tls,
        code_challenge=challenge.rstrip(b"=").decode(),
        code_challenge_method="S256",
    )
    device_realm.approve_device(code["verification_uri"], code["user_code"], "jdoe")
    poll = {"grant_type": DEVICE_GRANT, "client_id": "cli", "device_code": code["device_code"]}
    wrong = token_request(device_realm, tls, {**poll, "code_verifier": "w" * 50})
    assert wrong.json() == {
        "error": "invalid_grant",
        "error_description": "PKCE verification failed",
    }
    code = device_code(
        device_realm,
        tls,
        code_challenge=challenge.rstrip(b"=").decode(),
        code_challenge_method="S256",
    )
    device_realm.approve_device(code["verification_uri"], code["user_code"], "jdoe")
    poll["device_code"] = code["device_code"]
    assert (
        "id_token" in token_request(device_realm, tls, {**poll, "code_verifier": verifier}).json()
    )


def test_refresh_revoke_and_a_user_made_again(
    device_realm: KeycloakIssuer, tls: ssl.SSLContext
) -> None:
    code = device_code(device_realm, tls, scope="openid offline_access")
    device_realm.approve_device(code["verification_uri"], code["user_code"], "jdoe")
    poll = {"grant_type": DEVICE_GRANT, "client_id": "cli", "device_code": code["device_code"]}
    first = token_request(device_realm, tls, poll).json()
    assert first["refresh_expires_in"] == 0  # offline_access: no fixed end
    refresh = {"grant_type": "refresh_token", "client_id": "cli"}
    second = token_request(device_realm, tls, {**refresh, "refresh_token": first["refresh_token"]})
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    assert device_realm.refresh_tokens() == 2
    wrong_client = token_request(
        device_realm,
        tls,
        {**refresh, "client_id": "other", "refresh_token": first["refresh_token"]},
    )
    assert wrong_client.json()["error"] == "invalid_grant"
    revoked = httpx.post(
        device_realm.discovery()["revocation_endpoint"],
        data={"client_id": "cli", "token": first["refresh_token"]},
        verify=tls,
        timeout=10,
    )
    assert revoked.status_code == 200 and device_realm.refresh_tokens() == 1
    gone = token_request(device_realm, tls, {**refresh, "refresh_token": first["refresh_token"]})
    assert gone.json()["error"] == "invalid_grant"
    # jdoe is deleted and a new jdoe created: the same username, another person
    old_sub = device_realm.users["jdoe"].sub
    device_realm.replace_user(IssuerUser("jdoe", "secret2"))
    assert device_realm.users["jdoe"].sub != old_sub
    ended = token_request(
        device_realm, tls, {**refresh, "refresh_token": second.json()["refresh_token"]}
    )
    assert ended.json() == {"error": "invalid_grant", "error_description": "Session not active"}


def test_token_endpoint_refuses_get(realm: KeycloakIssuer, tls: ssl.SSLContext) -> None:
    assert httpx.get(realm.token_endpoint, verify=tls).status_code == 405


# --- the Kubernetes-like issuer ----------------------------------------------------------------


def test_kubernetes_issuer(test_pki: TestPKI, tls: ssl.SSLContext) -> None:
    kube = KubernetesIssuer()
    with kube.start(pki=test_pki):
        document = httpx.get(f"{kube.issuer}/.well-known/openid-configuration", verify=tls).json()
        assert document["issuer"] == kube.issuer
        keys = httpx.get(document["jwks_uri"], verify=tls).json()["keys"]
        token = kube.mint("ci", "builder", audience="quay.test")
        claims = jwt.decode(
            token, jwt.PyJWK(keys[0]).key, algorithms=["RS256"], audience="quay.test"
        )
        assert claims["sub"] == "system:serviceaccount:ci:builder"
        assert claims["kubernetes.io"]["namespace"] == "ci"


# --- the command line --------------------------------------------------------------------------


def run_emulator(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "quay_sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return process, json.loads(line)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stdout is not None and process.stdout.read() == ""


def test_command_line_quay_and_issuer(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    issuer, issuer_facts = run_emulator(["issuer", "--tls-dir", str(tls_dir)])
    try:
        assert issuer_facts["kind"] == "issuer"
        assert issuer_facts["issuer"] == f"{issuer_facts['url']}/realms/quay"
        assert "secret" not in json.dumps(issuer_facts)
        context = trusting(issuer_facts["ca_cert"])
        id_token = httpx.post(
            issuer_facts["token_endpoint"],
            data={
                "grant_type": "password",
                "client_id": "quayfed-cli",
                "username": "jdoe",
                "password": "secret",
                "scope": "openid",
            },
            verify=context,
        ).json()["id_token"]
        config = tmp_path / "quay.json"
        robot = {
            "name": "org+bot",
            "federation": [
                {"issuer": issuer_facts["issuer"], "subject": issuer_facts["users"]["jdoe"]}
            ],
        }
        config.write_text(json.dumps({"robots": [robot], "token_lifetime": 120}))
        quay, quay_facts = run_emulator(
            ["quay", "--tls-dir", str(tls_dir), "--config", str(config)]
        )
        try:
            assert quay_facts["ca_cert"] == issuer_facts["ca_cert"]
            assert Path(quay_facts["registry_token_cert"]).is_file()
            answer = httpx.get(
                f"{quay_facts['url']}{EXCHANGE_PATH}", auth=("org+bot", id_token), verify=context
            )
            assert answer.status_code == 200, answer.text
            claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
            assert claims["exp"] - claims["iat"] == 120
            assert claims["aud"] == quay_facts["server_hostname"] == quay_facts["host"]
        finally:
            stop(quay)
    finally:
        stop(issuer)
    assert os.path.exists(tls_dir / "server.key")
