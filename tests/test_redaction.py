"""Secrets never reach a printed line: redaction of every encoding, server text cut short.

Unit tests of pure logic (the response parsing is driven through httpx.MockTransport).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from docker_credential_quayfed import log, oidc, quay, transport
from docker_credential_quayfed.errors import IssuerError, QuayError
from tests.jwt_factory import fake_jwt

ROBOT = "org+bot"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    """Each test starts with no registered secrets, as a new process does."""
    saved = (set(log._raw), set(log._encoded))
    log._raw.clear()
    log._encoded.clear()
    yield
    log._raw.clear()
    log._encoded.clear()
    log._raw.update(saved[0])
    log._encoded.update(saved[1])


def basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_every_encoding_of_a_registered_secret_is_redacted() -> None:
    password = "p@ss w0rd/+=&x-long-enough"
    log.secret(password, user="quayfed-cli")
    samples = [
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote_plus(password),
        basic("quayfed-cli", password),
        "grant_type=password&username=jdoe&" + urllib.parse.urlencode({"password": password}),
    ]
    # The secret alone in base64 at each byte alignment (as inside any longer encoded blob).
    for prefix in ("", "a", "ab"):
        samples.append(base64.b64encode((prefix + password + "zz").encode()).decode())
        samples.append(base64.urlsafe_b64encode((prefix + password + "zz").encode()).decode())
    for sample in samples:
        line = log.redact(f"server said: {sample} (end)")
        assert password not in line
        assert "<redacted>" in line, sample
        assert "server said:" in line and "(end)" in line


def test_a_truncated_echo_of_the_basic_header_is_redacted() -> None:
    jwt = fake_jwt({"iss": "https://idp", "sub": "jdoe", "exp": 2_000_000_000})
    log.secret(jwt, user=ROBOT)
    header = basic(ROBOT, jwt)
    for cut in (16, 24, 60, len(header)):
        line = log.redact(f"Invalid basic auth header: Basic {header[:cut]}...")
        assert header[:16] not in line, cut


def test_unregistered_text_is_left_alone() -> None:
    log.secret("a-registered-secret-value")
    line = "Quay refused the exchange for org+bot (HTTP 400: robot not found)"
    assert log.redact(line) == line


def test_server_text_is_one_short_line_without_opaque_blobs() -> None:
    blob = "Q" * 200
    text = log.server_text(f"first line\nsecond {blob}\n" + "x" * 500)
    assert "\n" not in text and blob not in text
    assert len(text) <= log.SERVER_TEXT_LIMIT


def _session(handler: httpx.MockTransport) -> httpx.Client:
    return httpx.Client(transport=handler)


def test_quay_echoing_the_auth_header_leaks_nothing() -> None:
    jwt = fake_jwt({"iss": "https://idp", "sub": "jdoe", "exp": 2_000_000_000, "iat": 1})

    def echo(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"]
        return httpx.Response(401, json={"error": f"Invalid basic auth header: {header}"})

    with _session(httpx.MockTransport(echo)) as session, pytest.raises(QuayError) as caught:
        quay.exchange(
            session,
            "https://quay.test",
            ROBOT,
            jwt,
            deadline=transport.Deadline(5),
        )
    message = caught.value.message
    assert basic(ROBOT, jwt)[:16] not in message
    assert jwt not in message and "eyJ" not in message
    assert "Invalid basic auth header" in message


def test_issuer_echoing_the_form_leaks_neither_password_nor_client_secret() -> None:
    password, client_secret = "hunter2-correct-horse", "ci-secret-0f3a9c77"

    def echo(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        return httpx.Response(
            400,
            json={"error": "invalid_grant", "error_description": f"bad form {body} "
                  f"auth={request.headers.get('authorization')}"},
        )  # fmt: skip

    form = {"grant_type": "password", "username": "jdoe", "password": password, "scope": "openid"}
    with _session(httpx.MockTransport(echo)) as session, pytest.raises(IssuerError) as caught:
        oidc.request_token(
            session,
            "https://idp.test/token",
            form,
            deadline=transport.Deadline(5),
            token_type="id_token",
            client_auth=("quayfed-ci", client_secret),
        )
    message = caught.value.message
    for leaked in (
        password,
        urllib.parse.quote_plus(password),
        client_secret,
        basic("quayfed-ci", client_secret),
    ):
        assert leaked not in message
    assert "invalid_grant" in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"token_endpoint": "http://idp.test/token"}, "not https"),
        ({"token_endpoint": "https://elsewhere.test/token"}, "another host"),
        (
            {"token_endpoint": "https://idp.test/token", "jwks_uri": "ftp://idp.test/k"},
            "not https",
        ),
    ],
)
def test_discovery_may_not_send_credentials_elsewhere(
    document: dict[str, str], expected: str
) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://idp.test", **document})

    with _session(httpx.MockTransport(serve)) as session, pytest.raises(IssuerError) as caught:
        oidc.discover(session, "https://idp.test", transport.Deadline(5))
    assert expected in caught.value.message


def test_an_endpoint_host_listed_in_the_config_is_accepted() -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"issuer": "https://idp.test", "token_endpoint": "https://tok.test/t"}
        )

    with _session(httpx.MockTransport(serve)) as session:
        found = oidc.discover(
            session, "https://idp.test", transport.Deadline(5), endpoint_hosts=("tok.test",)
        )
    assert found.token_endpoint == "https://tok.test/t"


def test_a_huge_answer_is_refused_without_buffering_it() -> None:
    def endless() -> Iterator[bytes]:
        chunk = b"x" * (1 << 16)
        for _ in range(1 << 15):  # 2 GiB if it were all read
            yield chunk

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with _session(httpx.MockTransport(serve)) as session, pytest.raises(Exception) as caught:
        transport.request(
            session, "GET", "https://quay.test/x", deadline=transport.Deadline(5), what="test"
        )
    assert "more than" in str(caught.value)
