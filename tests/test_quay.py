"""Quay's federation exchange: every answer Quay (or a proxy) gives becomes a one-line fix.

Unit tests of pure logic: Quay is an httpx.MockTransport handler, retries do not sleep.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from docker_credential_quayfed import quay, transport
from docker_credential_quayfed.errors import NetworkError, QuayError, QuayfedError
from tests.jwt_factory import fake_jwt

QUAY = "https://quay.example.com"
ROBOT = "org+bot"
ISSUER = "https://idp.example.com/realms/quay"
OIDC_JWT = fake_jwt({"iss": ISSUER, "sub": "jdoe", "iat": 1_700_000_000, "exp": 1_700_000_300})
ROBOT_TOKEN = fake_jwt({"sub": ROBOT, "iat": 1_700_000_000, "exp": 1_700_003_600})
PAIR = f"issuer {ISSUER!r} and subject 'jdoe'"


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries record their waits instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    return recorded


class Quay:
    """Answers every request alike and keeps the requests."""

    def __init__(self, status: int, **response: Any) -> None:
        self.status = status
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, **self.response)


def exchange(handler: Quay, quay_url: str = QUAY) -> str:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        return quay.exchange(session, quay_url, ROBOT, OIDC_JWT, deadline=transport.Deadline(20))


def quay_400(message: str) -> Quay:
    """Quay's API error body, as its InvalidRobotCredentialException answers it."""
    return Quay(
        400,
        json={
            "detail": message,
            "error_message": message,
            "error_type": "invalid_request",
            "message": message,
            "status": 400,
            "title": "invalid_request",
        },
    )


def test_a_200_with_a_token_returns_it_and_sends_the_jwt_as_basic_auth() -> None:
    handler = Quay(200, json={"token": ROBOT_TOKEN})

    assert exchange(handler, QUAY + "/") == ROBOT_TOKEN

    (request,) = handler.requests
    assert (request.method, str(request.url)) == ("GET", QUAY + quay.FEDERATION_PATH)
    credentials = base64.b64encode(f"{ROBOT}:{OIDC_JWT}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"


FAILURES = [
    pytest.param(
        Quay(200, json={"token": ""}),
        QuayError,
        "answered 200 without a token",
        "not a proxy or login page",
        id="200-empty-token",
    ),
    pytest.param(
        Quay(200, text="<html><body>Log in</body></html>"),
        QuayError,
        "answered 200 without a token",
        "check quay_url",
        id="200-html",
    ),
    pytest.param(
        quay_400("Could not find robot with specified username"),
        QuayError,
        "HTTP 400: Could not find robot with specified username",
        f"check robot = {ROBOT!r} in the config (robot names are case-sensitive)",
        id="400-no-robot",
    ),
    pytest.param(
        quay_400("Robot does not have federated login configured"),
        QuayError,
        "HTTP 400: Robot does not have federated login configured",
        f"add a federation entry to {ROBOT} in Quay with {PAIR}",
        id="400-no-federation",
    ),
    pytest.param(
        quay_400(f"issuer {ISSUER} not configured for this robot"),
        QuayError,
        f"HTTP 400: issuer {ISSUER} not configured for this robot",
        f"Quay's federation for {ROBOT} must list exactly {PAIR}",
        id="400-issuer-not-configured",
    ),
    pytest.param(
        quay_400("Token does not match robot"),
        QuayError,
        "HTTP 400: Token does not match robot",
        f"Quay's federation for {ROBOT} must list exactly {PAIR}",
        id="400-subject-mismatch",
    ),
    pytest.param(
        quay_400("Invalid token: Signature has expired"),
        QuayError,
        "Invalid token: Signature has expired",
        "check this machine's clock",
        id="400-expired",
    ),
    pytest.param(
        quay_400("Invalid token: Missing `kid` header"),
        QuayError,
        "Missing `kid` header",
        "the issuer must sign with an RSA key",
        id="400-no-kid",
    ),
    pytest.param(
        Quay(401, json={"error": "Invalid robot"}),
        QuayError,
        "HTTP 401: Invalid robot",
        "robot must be the full name 'namespace+shortname'",
        id="401-invalid-robot",
    ),
    pytest.param(
        Quay(401, json={"error": "Invalid basic auth header"}),
        QuayError,
        "HTTP 401: Invalid basic auth header",
        "this is a client bug",
        id="401-auth-header",
    ),
    pytest.param(
        Quay(401, text="<html>Unauthorized</html>"),
        QuayError,
        f"Quay answered HTTP 401 to the federation exchange for {ROBOT}",
        "check quay_url and Quay's logs",
        id="401-html",
    ),
    pytest.param(
        Quay(500, text="<html><h1>Internal Server Error</h1></html>"),
        QuayError,
        "HTTP 500 (its error page)",
        "known causes: the JWT's kid is not in the issuer's JWKS",
        id="500-html",
    ),
    pytest.param(
        Quay(404, text="<html>Not Found</html>"),
        QuayError,
        "answered HTTP 404: no federation endpoint there",
        "robot federation needs Quay 3.13 or newer",
        id="404",
    ),
    pytest.param(
        Quay(405, json={"error": "Method Not Allowed"}),
        QuayError,
        "answered HTTP 405: no federation endpoint there",
        "robot federation needs Quay 3.13 or newer",
        id="405",
    ),
    pytest.param(
        Quay(429, json={"error": "Too Many Requests"}, headers={"Retry-After": "1"}),
        NetworkError,
        f"Quay at {QUAY} kept answering HTTP 429",
        "retry later",
        id="429",
    ),
    pytest.param(
        Quay(502, text="<html>502 Bad Gateway</html>"),
        NetworkError,
        "kept answering HTTP 502",
        "Quay or its proxy is overloaded or down",
        id="502",
    ),
    pytest.param(
        Quay(503, text="<html>503 Service Unavailable</html>"),
        NetworkError,
        "kept answering HTTP 503",
        "Quay or its proxy is overloaded or down",
        id="503",
    ),
]


@pytest.mark.parametrize(("handler", "kind", "problem", "fix"), FAILURES)
def test_each_refusal_raises_its_error_with_a_one_line_fix(
    handler: Quay, kind: type[QuayfedError], problem: str, fix: str
) -> None:
    with pytest.raises(QuayfedError) as caught:
        exchange(handler)

    error = caught.value
    assert type(error) is kind
    assert problem in error.problem
    assert fix in error.fix
    assert "\n" not in str(error)


@pytest.mark.parametrize(("handler", "kind", "problem", "fix"), FAILURES)
def test_no_refusal_shows_the_jwt(
    handler: Quay, kind: type[Exception], problem: str, fix: str
) -> None:
    with pytest.raises(QuayfedError) as caught:
        exchange(handler)

    text = str(caught.value)
    header, payload, signature = OIDC_JWT.split(".")
    for part in (OIDC_JWT, header, payload, signature, "eyJ"):
        assert part not in text


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_overload_statuses_are_retried_before_giving_up(status: int, waits: list[float]) -> None:
    handler = Quay(status, text="busy")

    with pytest.raises(NetworkError):
        exchange(handler)

    assert len(handler.requests) == transport.MAX_ATTEMPTS
    assert len(waits) == transport.MAX_ATTEMPTS - 1


def test_quays_own_500_is_not_retried(waits: list[float]) -> None:
    handler = Quay(500, text="<html>Internal Server Error</html>")

    with pytest.raises(QuayError):
        exchange(handler)

    assert (len(handler.requests), waits) == (1, [])


def test_a_quay_echoing_the_jwt_in_its_message_has_it_redacted() -> None:
    with pytest.raises(QuayError) as caught:
        exchange(quay_400(f"Invalid token: could not decode {OIDC_JWT}"))

    assert OIDC_JWT not in str(caught.value)
    assert "Invalid token: could not decode" in str(caught.value)


# -- federation_api_url ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quay_url", "user_form", "expected"),
    [
        (QUAY, False, f"{QUAY}/api/v1/organization/org/robots/bot/federation"),
        (QUAY + "/", False, f"{QUAY}/api/v1/organization/org/robots/bot/federation"),
        (QUAY, True, f"{QUAY}/api/v1/user/robots/bot/federation"),
        ("https://q.test:8443/", True, "https://q.test:8443/api/v1/user/robots/bot/federation"),
    ],
)
def test_federation_api_url_forms(quay_url: str, user_form: bool, expected: str) -> None:
    assert quay.federation_api_url(quay_url, ROBOT, user_form) == expected


@pytest.mark.parametrize("robot", ["bot", "+bot", "org+", ""])
def test_federation_api_url_refuses_what_is_not_a_robot_name(robot: str) -> None:
    with pytest.raises(QuayError, match="namespace\\+shortname"):
        quay.federation_api_url(QUAY, robot, user_form=False)
