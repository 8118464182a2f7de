"""OIDC discovery, the token endpoint's answers, and the checks on a source's JWT.

Unit tests of pure logic: the issuer is an httpx.MockTransport handler.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from docker_credential_quayfed import log, oidc, transport
from docker_credential_quayfed.errors import GrantRefused, IssuerError
from tests.jwt_factory import fake_jwt

ISSUER = "https://idp.example.com/realms/quay"
TOKEN_ENDPOINT = f"{ISSUER}/protocol/openid-connect/token"
NOW = 1_700_000_000.0
CLAIMS = {"iss": ISSUER, "sub": "jdoe", "iat": NOW - 10, "exp": NOW + 300}

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def fresh_log_state() -> Iterator[None]:
    """Secrets and warnings registered here stay here, as in a process of their own."""
    saved = (set(log._raw), set(log._encoded), set(log._said))
    log._said.clear()
    yield
    for live, kept in zip((log._raw, log._encoded, log._said), saved):
        live.clear()
        live.update(kept)


def serving(status: int, **response: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **response)

    return handler


def discover(handler: Handler, issuer: str = ISSUER, **options: Any) -> oidc.Discovery:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        return oidc.discover(session, issuer, transport.Deadline(10), **options)


def request_token(handler: Handler, token_type: str = "id_token", grant: str = "password") -> str:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        return oidc.request_token(
            session,
            TOKEN_ENDPOINT,
            {"grant_type": grant, "scope": "openid"},
            deadline=transport.Deadline(10),
            token_type=token_type,
        )


# -- discover ------------------------------------------------------------------------------
def test_discovery_fetches_the_well_known_document_under_the_issuer() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json={"issuer": ISSUER, "token_endpoint": TOKEN_ENDPOINT, "jwks_uri": f"{ISSUER}/k"},
        )

    found = discover(handler, ISSUER + "/")

    assert seen == [f"{ISSUER}/.well-known/openid-configuration"]
    assert found == oidc.Discovery(ISSUER, TOKEN_ENDPOINT, f"{ISSUER}/k")


@pytest.mark.parametrize("status", [301, 401, 404])
def test_discovery_refuses_an_answer_other_than_200(status: int) -> None:
    with pytest.raises(IssuerError) as caught:
        discover(serving(status, text="nope"))

    assert f"answered HTTP {status}" in caught.value.message
    assert "check issuer in the config" in caught.value.message


@pytest.mark.parametrize(
    "response",
    [
        {"text": "<html><body>Welcome</body></html>"},
        {"json": ["token_endpoint"]},
        {"json": {"issuer": ISSUER}},
        {"json": {"issuer": ISSUER, "token_endpoint": 42}},
    ],
    ids=["html", "json-list", "no-token-endpoint", "token-endpoint-not-a-string"],
)
def test_discovery_refuses_what_is_not_an_openid_configuration(response: dict[str, Any]) -> None:
    with pytest.raises(IssuerError, match="is not an OpenID configuration"):
        discover(serving(200, **response))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"token_endpoint": "http://idp.example.com/token"}, "token_endpoint http"),
        ({"token_endpoint": TOKEN_ENDPOINT, "jwks_uri": "http://idp.example.com/k"}, "jwks_uri"),
        ({"token_endpoint": "https://evil.example.net/token"}, "another host (evil.example.net)"),
        ({"token_endpoint": "https://user@idp.example.com/token"}, "carries user info"),
    ],
    ids=["http-token-endpoint", "http-jwks", "other-host", "user-info"],
)
def test_discovery_refuses_endpoints_that_would_send_credentials_elsewhere(
    document: dict[str, str], expected: str
) -> None:
    with pytest.raises(IssuerError) as caught:
        discover(serving(200, json={"issuer": ISSUER, **document}))

    assert expected in caught.value.message


def test_discovery_names_the_setting_that_would_accept_another_host() -> None:
    with pytest.raises(IssuerError) as caught:
        discover(serving(200, json={"token_endpoint": "https://sso.example.org/token"}))

    assert 'endpoint_hosts = ["sso.example.org"]' in caught.value.message


def test_discovery_accepts_an_endpoint_on_a_host_listed_in_endpoint_hosts() -> None:
    document = {"issuer": ISSUER, "token_endpoint": "https://sso.example.org/token"}

    found = discover(serving(200, json=document), endpoint_hosts=("sso.example.org",))

    assert found.token_endpoint == "https://sso.example.org/token"


@pytest.mark.parametrize("allow_http", [False, True])
def test_discovery_accepts_http_endpoints_only_on_loopback_when_allowed(allow_http: bool) -> None:
    issuer = "http://127.0.0.1:8080/realms/quay"
    document = {"issuer": issuer, "token_endpoint": f"{issuer}/token"}

    if allow_http:
        found = discover(serving(200, json=document), issuer, allow_http=True)
        assert found.token_endpoint == f"{issuer}/token"
    else:
        with pytest.raises(IssuerError, match="plain http"):
            discover(serving(200, json=document), issuer)


def test_discovery_warns_when_the_announced_issuer_differs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    announced = ISSUER + "/"
    document = {"issuer": announced, "token_endpoint": TOKEN_ENDPOINT}

    found = discover(serving(200, json=document))

    err = capsys.readouterr().err
    assert f"announces itself as {announced!r}" in err
    assert f"the config says {ISSUER!r}" in err
    assert found.issuer == announced


def test_discovery_is_silent_when_the_announced_issuer_matches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    discover(serving(200, json={"issuer": ISSUER, "token_endpoint": TOKEN_ENDPOINT}))

    assert capsys.readouterr().err == ""


# -- request_token ---------------------------------------------------------------------------
@pytest.mark.parametrize("token_type", ["id_token", "access_token"])
def test_request_token_returns_the_token_named_by_token_type(token_type: str) -> None:
    tokens = {"id_token": "the-id-token", "access_token": "the-access-token"}

    token = request_token(serving(200, json=tokens), token_type)

    assert token == tokens[token_type]


def test_request_token_posts_the_form_and_asks_for_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id_token": "the-id-token"})

    request_token(handler)

    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", TOKEN_ENDPOINT)
    assert request.headers["accept"] == "application/json"
    assert request.content == b"grant_type=password&scope=openid"


@pytest.mark.parametrize(
    ("token_type", "answer", "returned", "fix"),
    [
        ("id_token", {"access_token": "a-token"}, "access_token", "add openid to scope"),
        ("access_token", {"id_token": "an-id-token"}, "id_token", "set token_type"),
        ("id_token", {"id_token": "", "token_type": "Bearer"}, "nothing usable", "openid"),
        ("id_token", {"id_token": None, "access_token": "a"}, "access_token", "openid"),
    ],
    ids=["no-id-token", "no-access-token", "empty", "null"],
)
def test_request_token_names_what_was_returned_when_the_wanted_token_is_absent(
    token_type: str, answer: dict[str, Any], returned: str, fix: str
) -> None:
    with pytest.raises(IssuerError) as caught:
        request_token(serving(200, json=answer), token_type)

    message = caught.value.message
    assert f"returned no {token_type} for the password grant" in message
    assert f"(it returned: {returned})" in message
    assert fix in message


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("invalid_grant", "check the username and password"),
        ("invalid_client", "check client_id and the client secret"),
        ("unauthorized_client", "enable this grant on the client (Keycloak"),
        ("unsupported_grant_type", "enable this grant for the client"),
        ("something_new", "check the client settings at the issuer"),
    ],
)
def test_request_token_maps_the_issuers_error_code_to_its_fix(code: str, fix: str) -> None:
    answer = {"error": code, "error_description": "Invalid user credentials"}

    with pytest.raises(IssuerError) as caught:
        request_token(serving(401 if code == "invalid_client" else 400, json=answer))

    message = caught.value.message
    assert f"{code}: Invalid user credentials" in message
    assert f"; {fix}" in message


def test_keycloaks_unauthorized_client_for_a_wrong_secret_asks_for_the_secret() -> None:
    """Keycloak 26 answers a wrong client secret with 401 unauthorized_client, "Invalid client
    or Invalid client credentials": the fix is the secret, not enabling the grant."""
    answer = {
        "error": "unauthorized_client",
        "error_description": "Invalid client or Invalid client credentials",
    }

    with pytest.raises(GrantRefused) as caught:
        request_token(serving(401, json=answer), grant="client_credentials")

    message = caught.value.message
    assert "HTTP 401, unauthorized_client: Invalid client or Invalid client credentials" in message
    assert "; check client_id and the client secret" in message
    assert caught.value.code == "invalid_client"


def test_request_token_without_an_error_body_names_the_status() -> None:
    with pytest.raises(IssuerError) as caught:
        request_token(serving(403, text="<html>Forbidden</html>"), grant="client_credentials")

    assert "answered HTTP 403 to the client_credentials grant" in caught.value.message


def test_request_token_refuses_a_200_html_page() -> None:
    page = serving(200, text="<html><body>Sign in</body></html>")

    with pytest.raises(IssuerError, match="answered HTTP 200 without JSON"):
        request_token(page)


# -- check_jwt ---------------------------------------------------------------------------------
def jwt_without_kid(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'RS256', 'typ': 'JWT'})}.{segment(claims)}.c2lnbmF0dXJl"


def test_check_jwt_returns_the_claims_of_a_usable_token() -> None:
    assert oidc.check_jwt(fake_jwt(CLAIMS), "password", NOW) == CLAIMS


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", fake_jwt(CLAIMS)[:-40]])
def test_check_jwt_refuses_what_is_not_a_jwt(token: str) -> None:
    with pytest.raises(IssuerError, match="'file' token source did not produce a JWT"):
        oidc.check_jwt(token, "file", NOW)


def test_check_jwt_refuses_a_token_without_kid() -> None:
    with pytest.raises(IssuerError, match="has no kid header"):
        oidc.check_jwt(jwt_without_kid(CLAIMS), "env", NOW)


@pytest.mark.parametrize("age", [0, 90])
def test_check_jwt_refuses_an_expired_token(age: int) -> None:
    token = fake_jwt({**CLAIMS, "exp": NOW - age})

    with pytest.raises(IssuerError) as caught:
        oidc.check_jwt(token, "file", NOW)

    assert f"expired {age}s ago (iss={ISSUER} sub=jdoe)" in caught.value.message


@pytest.mark.parametrize("missing", ["iss", "sub"])
def test_check_jwt_refuses_a_token_without_iss_or_sub(missing: str) -> None:
    claims = {name: value for name, value in CLAIMS.items() if name != missing}

    with pytest.raises(IssuerError, match="has no iss or sub claim"):
        oidc.check_jwt(fake_jwt(claims), "env", NOW)


def test_check_jwt_refuses_a_numeric_sub() -> None:
    with pytest.raises(IssuerError, match="has no iss or sub claim"):
        oidc.check_jwt(fake_jwt({**CLAIMS, "sub": 42}), "env", NOW)


@pytest.mark.parametrize(
    "endpoint",
    ["https://idp.example.com:8443/token", "https://idp.example.com:444/realms/quay/token"],
)
def test_discovery_refuses_an_endpoint_on_another_port_of_the_issuer_s_host(
    endpoint: str,
) -> None:
    """Another port is another server: it would receive the password grant."""
    with pytest.raises(IssuerError) as caught:
        discover(serving(200, json={"issuer": ISSUER, "token_endpoint": endpoint}))

    assert "token_endpoint on another port" in caught.value.message
    port = endpoint.split(":")[2].split("/")[0]
    assert f'endpoint_hosts = ["idp.example.com:{port}"]' in caught.value.message


def test_discovery_accepts_the_issuer_s_port_written_out_and_a_listed_host_and_port() -> None:
    written = {"issuer": ISSUER, "token_endpoint": "https://idp.example.com:443/token"}
    assert discover(serving(200, json=written)).token_endpoint.endswith(":443/token")
    listed = {"issuer": ISSUER, "token_endpoint": "https://sso.example.org:8443/token"}
    found = discover(serving(200, json=listed), endpoint_hosts=("sso.example.org:8443",))
    assert found.token_endpoint == "https://sso.example.org:8443/token"
    with pytest.raises(IssuerError, match=r'endpoint_hosts = \["sso.example.org:8443"\]'):
        discover(serving(200, json=listed), endpoint_hosts=("sso.example.org",))
