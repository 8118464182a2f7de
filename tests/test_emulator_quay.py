"""The Quay emulator against the facts of quay-federation.md: every row of the failure table,
the robot token, the federation admin API, the registry token server, faults and counters."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509

from quay_sandbox.issuer import KeycloakIssuer
from quay_sandbox.keys import generate_ec_key, generate_rsa_key
from quay_sandbox.quay import EXCHANGE_PATH, QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.support import trusting
from tests.support.oidc_provider import OIDCProvider

ROBOT = "quay_federation+rhbk_user"
SUBJECT = "0b4f9c3e-8d6a-4f0e-9a51-1c2d3e4f5a6b"
OTHER_SUBJECT = "9f8e7d6c-5b4a-4321-8765-0fedcba98765"


@pytest.fixture(scope="module")
def tls(test_pki: TestPKI) -> ssl.SSLContext:
    return trusting(test_pki.ca_cert)


@pytest.fixture(scope="module")
def realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    """An issuer whose key the tests sign with directly."""
    issuer = KeycloakIssuer()
    server = issuer.start(pki=test_pki)
    yield issuer
    server.close()


@pytest.fixture(scope="module")
def ec_realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    """An issuer that publishes an EC key, which Quay cannot use."""
    issuer = KeycloakIssuer(key=generate_ec_key())
    server = issuer.start(pki=test_pki)
    yield issuer
    server.close()


@pytest.fixture
def federated(quay: QuayEmulator, realm: KeycloakIssuer) -> QuayEmulator:
    quay.add_robot(ROBOT, federation=[(realm.issuer, SUBJECT)])
    return quay


def claims(issuer: str, sub: str = SUBJECT, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": issuer, "sub": sub, "aud": "quay", "iat": now, "exp": now + 300}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def exchange(
    quay: QuayEmulator,
    tls: ssl.SSLContext,
    username: str | None = ROBOT,
    password: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: float = 10,
) -> httpx.Response:
    auth = (username, password) if username is not None and password is not None else None
    return httpx.request(
        method,
        f"{quay.url}{EXCHANGE_PATH}",
        auth=auth,
        headers=headers,
        verify=tls,
        timeout=timeout,
    )


def assert_400(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == message
    assert body["error_message"] == message
    assert body["detail"] == message
    assert body["status"] == 400
    assert {"title", "type"} <= set(body)


def assert_500_html(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>500 Internal Server Error</title>" in response.text


# --- the failure table -------------------------------------------------------------------------


def test_no_auth_header(federated: QuayEmulator, tls: ssl.SSLContext) -> None:
    response = exchange(federated, tls, None)
    assert response.status_code == 401
    assert response.json() == {"error": "No auth header"}


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("Bearer abc.def.ghi", "Invalid basic auth header"),
        ("Basic", "Invalid basic auth header"),
        ("Basic !!!notbase64", "Could not parse basic auth header"),
    ],
)
def test_bad_authorization_header(
    federated: QuayEmulator, tls: ssl.SSLContext, header: str, error: str
) -> None:
    response = exchange(federated, tls, None, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json() == {"error": error}


def test_username_without_plus(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    response = exchange(federated, tls, "rhbk_user", realm.key.sign(claims(realm.issuer)))
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid robot"}


@pytest.mark.parametrize("name", ["quay_federation+nobody", "Quay_Federation+rhbk_user"])
def test_unknown_robot_names_are_case_sensitive(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer, name: str
) -> None:
    response = exchange(federated, tls, name, realm.key.sign(claims(realm.issuer)))
    assert_400(response, "Could not find robot with specified username")


def test_robot_without_federation(
    quay: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    quay.add_robot(ROBOT)
    response = exchange(quay, tls, ROBOT, realm.key.sign(claims(realm.issuer)))
    assert_400(response, "Robot does not have federated login configured")


@pytest.mark.parametrize("suffix", ["/", "X"])
def test_issuer_compared_exactly(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer, suffix: str
) -> None:
    issuer = realm.issuer + suffix if suffix == "/" else realm.issuer.upper()
    response = exchange(federated, tls, ROBOT, realm.key.sign(claims(issuer)))
    assert_400(response, f"issuer {issuer} not configured for this robot")


def test_subject_not_configured(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    token = realm.key.sign(claims(realm.issuer, sub=OTHER_SUBJECT))
    assert_400(exchange(federated, tls, ROBOT, token), "Token does not match robot")


@pytest.mark.parametrize(
    ("overrides", "algorithm", "reason"),
    [
        ({"exp": int(time.time()) - 120}, None, "Signature has expired"),
        ({"exp": None}, None, 'Token is missing the "exp" claim'),
        ({"iat": None}, None, 'Token is missing the "iat" claim'),
        ({"iat": int(time.time()) + 600, "exp": int(time.time()) + 900}, None, "(iat)"),
        ({}, "RS512", "The specified alg value is not allowed"),
    ],
    ids=["expired", "no-exp", "no-iat", "future-iat", "rs512"],
)
def test_invalid_token_reasons(
    federated: QuayEmulator,
    tls: ssl.SSLContext,
    realm: KeycloakIssuer,
    overrides: dict[str, Any],
    algorithm: str | None,
    reason: str,
) -> None:
    token = realm.key.sign(claims(realm.issuer, **overrides), algorithm=algorithm)
    response = exchange(federated, tls, ROBOT, token)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("Invalid token: ") and reason in message


def test_missing_kid(federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    token = realm.key.sign(claims(realm.issuer), include_kid=False)
    assert_400(exchange(federated, tls, ROBOT, token), "Invalid token: Missing `kid` header")


def test_bad_signature(federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    impostor = generate_rsa_key(kid=realm.key.kid)
    response = exchange(federated, tls, ROBOT, impostor.sign(claims(realm.issuer)))
    assert_400(response, "Invalid token: Signature verification failed")


def test_rs384_is_accepted(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    token = realm.key.sign(claims(realm.issuer), algorithm="RS384")
    assert exchange(federated, tls, ROBOT, token).status_code == 200


def test_clock_skew_of_30_seconds(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    now = int(time.time())
    expired_recently = realm.key.sign(claims(realm.issuer, iat=now - 400, exp=now - 20))
    assert exchange(federated, tls, ROBOT, expired_recently).status_code == 200
    issued_soon = realm.key.sign(claims(realm.issuer, iat=now + 20, exp=now + 320))
    assert exchange(federated, tls, ROBOT, issued_soon).status_code == 200


def test_nbf_is_not_checked(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    token = realm.key.sign(claims(realm.issuer, nbf=int(time.time()) + 3600))
    assert exchange(federated, tls, ROBOT, token).status_code == 200


def test_password_not_a_jwt_is_a_500_page(federated: QuayEmulator, tls: ssl.SSLContext) -> None:
    assert_500_html(exchange(federated, tls, ROBOT, "a-long-lived-robot-password"))


def test_unknown_kid_is_a_500_page(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    stranger = generate_rsa_key(kid="not-published")
    assert_500_html(exchange(federated, tls, ROBOT, stranger.sign(claims(realm.issuer))))


def test_ec_key_is_a_500_page(
    quay: QuayEmulator, tls: ssl.SSLContext, ec_realm: KeycloakIssuer
) -> None:
    quay.federate(ROBOT, ec_realm.issuer, SUBJECT)
    assert_500_html(exchange(quay, tls, ROBOT, ec_realm.key.sign(claims(ec_realm.issuer))))


def test_unreachable_issuer_is_a_500_page(
    quay: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    issuer = "https://127.0.0.1:9/realms/quay"
    quay.federate(ROBOT, issuer, SUBJECT)
    assert_500_html(exchange(quay, tls, ROBOT, realm.key.sign(claims(issuer))))


def test_untrusted_issuer_certificate_is_a_500_page(
    test_pki: TestPKI, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    elsewhere = QuayEmulator(ca_bundle=None)  # system CAs: the test CA is not trusted
    with elsewhere.start(pki=test_pki):
        elsewhere.federate(ROBOT, realm.issuer, SUBJECT)
        assert_500_html(exchange(elsewhere, tls, ROBOT, realm.key.sign(claims(realm.issuer))))


def test_http_issuer_is_a_500_page(
    quay: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    issuer = realm.issuer.replace("https://", "http://")
    quay.federate(ROBOT, issuer, SUBJECT)
    assert_500_html(exchange(quay, tls, ROBOT, realm.key.sign(claims(issuer))))
    assert quay.counters_snapshot()["discovery_fetches"] == 0


class _SlashedIssuer(KeycloakIssuer):
    """Discovery names the issuer with a trailing slash: not equal to the token's ``iss``."""

    def discovery(self) -> dict[str, Any]:
        document = super().discovery()
        document["issuer"] += "/"
        return document


def test_discovery_issuer_must_match(
    test_pki: TestPKI, quay: QuayEmulator, tls: ssl.SSLContext
) -> None:
    liar = _SlashedIssuer()
    with liar.start(pki=test_pki):
        quay.federate(ROBOT, liar.issuer, SUBJECT)
        response = exchange(quay, tls, ROBOT, liar.key.sign(claims(liar.issuer)))
    assert_400(response, "Invalid token: Invalid issuer")


def test_post_is_405_and_head_works(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    token = realm.key.sign(claims(realm.issuer))
    assert exchange(federated, tls, ROBOT, token, method="POST").status_code == 405
    head = exchange(federated, tls, ROBOT, token, method="HEAD")
    assert head.status_code == 200
    assert head.content == b""


# --- success -----------------------------------------------------------------------------------


def test_success_with_nanoidp_id_token(
    quay: QuayEmulator, tls: ssl.SSLContext, oidc_provider: OIDCProvider
) -> None:
    quay.federate(ROBOT, oidc_provider.issuer, "jdoe")
    response = exchange(quay, tls, ROBOT, oidc_provider.password_token("jdoe"))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token"}


def test_robot_token_claims(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    before = int(time.time())
    response = exchange(federated, tls, ROBOT, realm.key.sign(claims(realm.issuer)))
    token = response.json()["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == federated.instance_key.kid
    key = jwt.PyJWK(federated.instance_jwks()["keys"][0]).key
    decoded = jwt.decode(token, key, algorithms=["RS256"], audience=federated.host)
    assert decoded["iss"] == "quay"
    assert decoded["sub"] == ROBOT
    assert decoded["nbf"] == decoded["iat"] and decoded["iat"] >= before
    assert decoded["exp"] == decoded["iat"] + 3600
    assert decoded["access"] == [] and decoded["context"] == {}


def test_token_lifetime_is_configurable(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    federated.set_token_lifetime(5)
    token = exchange(federated, tls, ROBOT, realm.key.sign(claims(realm.issuer))).json()["token"]
    decoded = jwt.decode(token, options={"verify_signature": False})
    assert decoded["exp"] - decoded["iat"] == 5


def test_discovery_fetched_on_every_exchange(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    for _ in range(3):
        exchange(federated, tls, ROBOT, realm.key.sign(claims(realm.issuer)))
    counters = federated.counters_snapshot()
    assert counters["discovery_fetches"] == 3
    assert counters["exchanges_attempted"] == 3
    assert counters["exchanges_succeeded"] == 3
    assert counters["succeeded_by_robot"] == {ROBOT: 3}


def test_kube_issuer_token_federates(
    quay: QuayEmulator, tls: ssl.SSLContext, kube_issuer: Any
) -> None:
    quay.federate(ROBOT, kube_issuer.issuer, "system:serviceaccount:ci:builder")
    token = kube_issuer.mint("ci", "builder", audience=quay.host)
    assert exchange(quay, tls, ROBOT, token).status_code == 200


def test_concurrent_exchanges(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    token = realm.key.sign(claims(realm.issuer))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: exchange(federated, tls, ROBOT, token).status_code, range(16))
        )
    assert statuses == [200] * 16
    assert federated.counters_snapshot()["exchanges_succeeded"] == 16


# --- the federation admin API ------------------------------------------------------------------


def api(
    quay: QuayEmulator,
    tls: ssl.SSLContext,
    method: str,
    path: str,
    token: str | None = "org-admin",
    body: Any = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, f"{quay.url}/api/v1{path}", headers=headers, json=body, verify=tls, timeout=10
    )


ORG_PATH = "/organization/quay_federation/robots/rhbk_user/federation"


@pytest.fixture
def admin(quay: QuayEmulator) -> QuayEmulator:
    quay.add_robot(ROBOT)
    quay.add_robot("jdoe+bot")
    quay.add_admin_token("org-admin", ["quay_federation"], username="jdoe")
    quay.add_admin_token("outsider", ["elsewhere"])
    return quay


def test_admin_api_requires_auth(admin: QuayEmulator, tls: ssl.SSLContext) -> None:
    assert api(admin, tls, "GET", ORG_PATH, token=None).status_code == 401
    assert api(admin, tls, "GET", ORG_PATH, token="unknown").status_code == 401
    basic = httpx.get(f"{admin.url}/api/v1{ORG_PATH}", auth=(ROBOT, "x"), verify=tls)
    assert basic.status_code == 401


def test_admin_api_requires_admin(admin: QuayEmulator, tls: ssl.SSLContext) -> None:
    assert api(admin, tls, "GET", ORG_PATH, token="outsider").status_code == 403
    assert api(admin, tls, "POST", ORG_PATH, token="outsider", body=[]).status_code == 403


def test_admin_api_post_get_delete(admin: QuayEmulator, tls: ssl.SSLContext) -> None:
    assert api(admin, tls, "GET", ORG_PATH).json() == []
    body = [
        {"issuer": "https://sso.example/realms/quay", "subject": SUBJECT, "extra": "dropped"},
        {"issuer": "http://kube.example", "subject": "system:serviceaccount:ci:builder"},
    ]
    posted = api(admin, tls, "POST", ORG_PATH, body=body)
    expected = [{"issuer": e["issuer"], "subject": e["subject"]} for e in body]
    assert posted.status_code == 200 and posted.json() == expected
    assert api(admin, tls, "GET", ORG_PATH).json() == expected
    replaced = api(admin, tls, "POST", ORG_PATH, body=body[:1]).json()
    assert replaced == expected[:1]
    assert admin.get_federation(ROBOT) == expected[:1]
    deleted = api(admin, tls, "DELETE", ORG_PATH)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api(admin, tls, "GET", ORG_PATH).json() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            [{"issuer": "sso.example", "subject": "s"}],
            "Issuer must be a URL (http:// or https://)",
        ),
        (
            [{"issuer": "https://a", "subject": "s"}, {"issuer": "https://a", "subject": "s"}],
            "Duplicate federation config entry",
        ),
        ([{"issuer": "https://a"}], "Missing one or more required fields (issuer, subject)"),
    ],
)
def test_admin_api_rejects_bad_bodies(
    admin: QuayEmulator, tls: ssl.SSLContext, body: Any, message: str
) -> None:
    assert_400(api(admin, tls, "POST", ORG_PATH, body=body), message)
    assert admin.get_federation(ROBOT) == []


def test_admin_api_unknown_robot(admin: QuayEmulator, tls: ssl.SSLContext) -> None:
    path = "/organization/quay_federation/robots/nobody/federation"
    assert_400(api(admin, tls, "GET", path), "Could not find robot with specified username")


def test_admin_api_user_form(admin: QuayEmulator, tls: ssl.SSLContext) -> None:
    body = [{"issuer": "https://sso.example/realms/quay", "subject": SUBJECT}]
    path = "/user/robots/bot/federation"
    assert api(admin, tls, "POST", path, body=body).json() == body
    assert admin.get_federation("jdoe+bot") == body
    assert api(admin, tls, "GET", path, token="outsider").status_code == 403


def test_admin_api_returns_and_keeps_audiences_only_where_quay_does(
    admin: QuayEmulator, tls: ssl.SSLContext
) -> None:
    entry = {"issuer": "https://sso.example/realms/quay", "subject": SUBJECT,
             "audiences": ["quay.example"]}  # fmt: skip
    admin.set_federation(ROBOT, [entry])
    assert api(admin, tls, "GET", ORG_PATH).json() == [entry]
    # quay/quay's API stores issuer and subject only.
    assert api(admin, tls, "POST", ORG_PATH, body=[entry]).json() == [
        {"issuer": entry["issuer"], "subject": SUBJECT}
    ]
    admin.posted_entry_keys = frozenset({"audiences"})
    try:
        assert api(admin, tls, "POST", ORG_PATH, body=[entry]).json() == [entry]
    finally:
        admin.posted_entry_keys = frozenset()
    assert admin.get_federation(ROBOT) == [entry]


@pytest.mark.parametrize(("aud", "status"), [("quay.example", 200), ("elsewhere", 400)])
def test_an_entry_with_audiences_checks_the_tokens_aud(
    quay: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer, aud: str, status: int
) -> None:
    quay.federate(ROBOT, realm.issuer, SUBJECT, audiences=["quay.example"])
    response = exchange(quay, tls, ROBOT, realm.key.sign(claims(realm.issuer, aud=aud)))
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["message"].startswith("Invalid token: ")


# --- the registry token server -----------------------------------------------------------------


def registry_auth(
    quay: QuayEmulator,
    tls: ssl.SSLContext,
    scope: str,
    auth: tuple[str, str] | None = None,
    service: str = "registry.test:5000",
) -> httpx.Response:
    return httpx.get(
        f"{quay.url}/v2/auth",
        params={"service": service, "scope": scope},
        auth=auth,
        verify=tls,
        timeout=10,
    )


def registry_claims(quay: QuayEmulator, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"]
    assert {"expires_in", "issued_at"} <= set(body)
    header = jwt.get_unverified_header(body["token"])
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    trusted = x509.load_pem_x509_certificate(quay.registry_token_cert_pem)
    assert cert == trusted
    decoded: dict[str, Any] = jwt.decode(
        body["token"],
        cert.public_key(),  # type: ignore[arg-type]
        algorithms=["RS256"],
        audience="registry.test:5000",
        issuer="quay",
    )
    return decoded


@pytest.fixture
def permitted(quay: QuayEmulator) -> QuayEmulator:
    quay.add_robot(
        ROBOT, permissions={"quay_federation/app": {"pull", "push"}, "shared/*": {"pull"}}
    )
    return quay


def test_registry_grants_robot_permissions(permitted: QuayEmulator, tls: ssl.SSLContext) -> None:
    token = permitted.issue_robot_token(ROBOT)
    scope = "repository:quay_federation/app:pull,push"
    decoded = registry_claims(permitted, registry_auth(permitted, tls, scope, (ROBOT, token)))
    assert isinstance(decoded["aud"], str)
    assert decoded["sub"] == ROBOT
    assert decoded["access"] == [
        {"type": "repository", "name": "quay_federation/app", "actions": ["pull", "push"]}
    ]
    assert {"exp", "nbf", "iat", "jti"} <= set(decoded)
    shared = registry_claims(
        permitted, registry_auth(permitted, tls, "repository:shared/x:pull,push", (ROBOT, token))
    )
    assert shared["access"][0]["actions"] == ["pull"]
    assert permitted.counters_snapshot()["registry_auth_calls"] == 2


def test_registry_anonymous_pulls_public_only(permitted: QuayEmulator, tls: ssl.SSLContext) -> None:
    public = registry_claims(
        permitted, registry_auth(permitted, tls, "repository:public/hello:pull")
    )
    assert public["access"][0]["actions"] == ["pull"]
    private = registry_claims(
        permitted, registry_auth(permitted, tls, "repository:quay_federation/app:pull")
    )
    assert private["access"][0]["actions"] == []


def test_registry_wrong_robot_name(permitted: QuayEmulator, tls: ssl.SSLContext) -> None:
    permitted.add_robot("quay_federation+other")
    token = permitted.issue_robot_token(ROBOT)
    scope = "repository:quay_federation/app:pull"
    response = registry_auth(permitted, tls, scope, ("quay_federation+other", token))
    assert response.status_code == 401
    assert response.json() == {"error": "Token does not match robot"}


def test_registry_bad_password(permitted: QuayEmulator, tls: ssl.SSLContext) -> None:
    scope = "repository:quay_federation/app:pull"
    assert registry_auth(permitted, tls, scope, (ROBOT, "nope")).status_code == 401
    forged = generate_rsa_key().sign({"sub": ROBOT, "exp": int(time.time()) + 60})
    assert registry_auth(permitted, tls, scope, (ROBOT, forged)).status_code == 401


def test_registry_expired_robot_token_is_a_500(
    permitted: QuayEmulator, tls: ssl.SSLContext
) -> None:
    expired = permitted.issue_robot_token(ROBOT, issued_at=time.time() - 4000)
    scope = "repository:quay_federation/app:pull"
    assert_500_html(registry_auth(permitted, tls, scope, (ROBOT, expired)))


def test_robot_token_outlives_federation_deletion(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    federated.set_permissions(ROBOT, {"quay_federation/app": ["pull"]})
    token = exchange(federated, tls, ROBOT, realm.key.sign(claims(realm.issuer))).json()["token"]
    federated.set_federation(ROBOT, [])
    scope = "repository:quay_federation/app:pull"
    decoded = registry_claims(federated, registry_auth(federated, tls, scope, (ROBOT, token)))
    assert decoded["access"][0]["actions"] == ["pull"]


def test_registry_token_cert_file(quay: QuayEmulator) -> None:
    assert quay.registry_token_cert_path is not None
    assert quay.registry_token_cert_path.read_bytes() == quay.registry_token_cert_pem


# --- faults, down mode, counters and the control API -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [("html500", 500, None), ("502", 502, None), ("503", 503, "7"), ("429", 429, "7")],
)
def test_faults_answer_then_clear(
    federated: QuayEmulator,
    tls: ssl.SSLContext,
    realm: KeycloakIssuer,
    kind: str,
    status: int,
    retry_after: str | None,
) -> None:
    federated.inject_fault(kind, 2, retry_after=7)
    token = realm.key.sign(claims(realm.issuer))
    for _ in range(2):
        response = exchange(federated, tls, ROBOT, token)
        assert response.status_code == status
        assert response.headers.get("retry-after") == retry_after
    assert exchange(federated, tls, ROBOT, token).status_code == 200
    counters = federated.counters_snapshot()
    assert counters["attempted_by_robot"] == {ROBOT: 3}
    assert counters["succeeded_by_robot"] == {ROBOT: 1}


def test_garbage_fault(federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    federated.inject_fault("garbage")
    response = exchange(federated, tls, ROBOT, realm.key.sign(claims(realm.issuer)))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_hang_fault(federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    federated.inject_fault("hang", seconds=1.0)
    token = realm.key.sign(claims(realm.issuer))
    with pytest.raises(httpx.TimeoutException):
        exchange(federated, tls, ROBOT, token, timeout=0.2)
    assert exchange(federated, tls, ROBOT, token).status_code == 200


def test_reset_ends_a_hang_and_keeps_its_count_out_of_the_new_counters(
    federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer
) -> None:
    federated.inject_fault("hang", seconds=30.0)
    token = realm.key.sign(claims(realm.issuer))
    with ThreadPoolExecutor(max_workers=1) as pool:
        hanging = pool.submit(exchange, federated, tls, ROBOT, token, timeout=20)
        time.sleep(0.5)  # let it reach the hang
        assert not hanging.done()
        started = time.monotonic()
        federated.reset()
        assert hanging.result().status_code == 200
        assert time.monotonic() - started < 10
    counters = federated.counters_snapshot()
    assert counters["exchanges_attempted"] == 0
    assert counters["exchanges_succeeded"] == 0
    assert counters["discovery_fetches"] == 0
    assert exchange(federated, tls, ROBOT, token).status_code == 200
    counters = federated.counters_snapshot()
    assert (counters["exchanges_attempted"], counters["exchanges_succeeded"]) == (1, 1)


def test_down_mode(federated: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    federated.set_down()
    token = realm.key.sign(claims(realm.issuer))
    assert exchange(federated, tls, ROBOT, token).status_code == 503
    assert registry_auth(federated, tls, "repository:public/x:pull").status_code == 503
    federated.set_down(False)
    assert exchange(federated, tls, ROBOT, token).status_code == 200


def test_unknown_fault_kind(quay: QuayEmulator) -> None:
    with pytest.raises(ValueError):
        quay.inject_fault("teapot")


def test_control_api(quay: QuayEmulator, tls: ssl.SSLContext, realm: KeycloakIssuer) -> None:
    def control(method: str, route: str, body: Any = None) -> httpx.Response:
        url = f"{quay.url}/_emulator/{route}"
        return httpx.request(method, url, json=body, verify=tls, timeout=10)

    robot = {
        "name": ROBOT,
        "federation": [{"issuer": realm.issuer, "subject": SUBJECT}],
        "permissions": {"quay_federation/app": ["pull"]},
    }
    assert control("POST", "robots", robot).status_code == 200
    assert control("GET", "robots").json()[ROBOT]["permissions"] == {
        "quay_federation/app": ["pull"]
    }
    assert control("POST", "token-lifetime", {"seconds": 60}).status_code == 200
    assert control("POST", "faults", {"kind": "503", "count": 1, "retry_after": 3}).is_success
    token = realm.key.sign(claims(realm.issuer))
    assert exchange(quay, tls, ROBOT, token).status_code == 503
    robot_token = exchange(quay, tls, ROBOT, token).json()["token"]
    decoded = jwt.decode(robot_token, options={"verify_signature": False})
    assert decoded["exp"] - decoded["iat"] == 60
    counters = control("GET", "counters").json()
    assert counters["exchanges_attempted"] == 2 and counters["exchanges_succeeded"] == 1
    minted = control("POST", "robot-token", {"robot": ROBOT, "lifetime": 10}).json()["token"]
    assert jwt.decode(minted, options={"verify_signature": False})["sub"] == ROBOT
    assert control("POST", "admin-tokens", {"token": "t", "orgs": ["o"]}).is_success
    assert control("POST", "down", {"down": True}).is_success
    assert exchange(quay, tls, ROBOT, token).status_code == 503
    assert control("POST", "reset", {}).is_success
    assert control("GET", "counters").json()["exchanges_attempted"] == 0
    assert control("DELETE", f"robots/{ROBOT}").is_success
    assert quay.robot_names() == []
    assert control("POST", "faults", {"kind": "bogus"}).status_code == 400
    assert control("GET", "nothing").status_code == 404


def test_counters_are_thread_safe(quay: QuayEmulator) -> None:
    def bump() -> None:
        for _ in range(200):
            quay.inject_fault("html500")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    quay.reset()
    assert quay.counters_snapshot()["exchanges_attempted"] == 0
