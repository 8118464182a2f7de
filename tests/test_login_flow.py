"""The device grant's polling rules (RFC 8628 3.5) against a scripted issuer over TLS, and the
login store's pure logic: what each answer of the issuer makes ``login`` do."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from docker_credential_quayfed import broker, login_flow, logins, transport
from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import IssuerError
from docker_credential_quayfed.sources import SourceContext
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.jwt_factory import fake_jwt
from tests.support.requests import request_here


class ScriptedIssuer:
    """Discovery, a device endpoint, and a token endpoint answering from a script."""

    def __init__(self, polls: list[tuple[int, dict[str, Any]]], device: dict[str, Any]) -> None:
        self.polls = polls
        self.device = device
        self.base = ""
        self.token_forms: list[dict[str, list[str]]] = []
        self.device_forms: list[dict[str, list[str]]] = []
        #: code_challenge_methods_supported in discovery (Keycloak offers S256)
        self.challenge_methods: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(length).decode())
        body: dict[str, Any]
        if path == "/.well-known/openid-configuration":
            status, body = (
                200,
                {
                    "issuer": self.base,
                    "token_endpoint": f"{self.base}/token",
                    "device_authorization_endpoint": f"{self.base}/device",
                    **(
                        {"code_challenge_methods_supported": self.challenge_methods}
                        if self.challenge_methods
                        else {}
                    ),
                },
            )
        elif path == "/device":
            self.device_forms.append(form)
            status, body = 200, self.device
        elif path == "/token":
            self.token_forms.append(form)
            status, body = self.polls.pop(0) if self.polls else (400, {"error": "expired_token"})
        else:
            status, body = 404, {}
        data = json.dumps(body).encode()
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [data]


@pytest.fixture
def issuer_factory(test_pki: TestPKI) -> Iterator[Any]:
    servers = []

    def start(polls: list[tuple[int, dict[str, Any]]], **device: Any) -> tuple[Any, Any]:
        answer = {
            "device_code": "dc-secret-4f1",
            "user_code": "WXYZ-1234",
            "verification_uri": "https://idp.example/device",
            "expires_in": 600,
            "interval": 2,
            **device,
        }
        app = ScriptedIssuer(polls, answer)
        server = serve_wsgi(app, pki=test_pki)
        servers.append(server)
        app.base = server.url
        return app, server

    yield start
    for server in servers:
        server.close()


def context_for(base: str, ca: Path) -> Iterator[SourceContext]:
    registry = RegistryConfig(
        key="quay.example.com",
        robot="org+person",
        issuer=base,
        source="device",
        client_id="cli",
        ca_bundle=str(ca),
    )
    with broker.registry_client(registry) as session:
        yield SourceContext(registry, session, transport.Deadline(10), request_here())


class Recorder:
    def __init__(self) -> None:
        self.text = ""
        self.slept = 0.0

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def sleep(self, seconds: float) -> None:
        self.slept += seconds

    def clock(self) -> float:
        return self.slept


def run_device(
    issuer_factory: Any, test_pki: TestPKI, polls: list[tuple[int, dict[str, Any]]], **device: Any
) -> tuple[Recorder, ScriptedIssuer, dict[str, Any] | Exception]:
    app, server = issuer_factory(polls, **device)
    out = Recorder()
    for context in context_for(server.url, test_pki.ca_cert):
        try:
            return out, app, login_flow.device_login(context, out, out.sleep, out.clock)  # type: ignore[arg-type]
        except IssuerError as exc:
            return out, app, exc
    raise AssertionError("unreachable")


PENDING = (400, {"error": "authorization_pending"})
SLOW_DOWN = (400, {"error": "slow_down"})
TOKENS = (200, {"id_token": "x.y.z", "refresh_token": "r1", "token_type": "Bearer"})


def test_pending_then_tokens_polls_at_the_interval(issuer_factory: Any, test_pki: TestPKI) -> None:
    out, app, result = run_device(issuer_factory, test_pki, [PENDING, PENDING, TOKENS])
    assert isinstance(result, dict) and result["refresh_token"] == "r1"
    assert len(app.token_forms) == 3
    assert app.token_forms[0]["grant_type"] == [login_flow.DEVICE_GRANT]
    assert app.token_forms[0]["device_code"] == ["dc-secret-4f1"]
    assert out.slept == pytest.approx(6, abs=0.5), "three polls, two seconds apart"
    assert "enter the code WXYZ-1234" in out.text and "https://idp.example/device" in out.text
    assert "dc-secret" not in out.text


def test_no_pkce_unless_the_issuer_offers_s256(issuer_factory: Any, test_pki: TestPKI) -> None:
    _, app, result = run_device(issuer_factory, test_pki, [TOKENS])
    assert isinstance(result, dict)
    assert "code_challenge" not in app.device_forms[0]
    assert "code_verifier" not in app.token_forms[0]


def test_an_issuer_offering_s256_gets_pkce_in_the_device_grant(
    issuer_factory: Any, test_pki: TestPKI
) -> None:
    """Keycloak refuses a device authorization request without a code challenge when the
    client requires PKCE; the polls then carry the verifier that matches it."""
    app, server = issuer_factory([PENDING, TOKENS])
    app.challenge_methods = ["plain", "S256"]
    out = Recorder()
    for context in context_for(server.url, test_pki.ca_cert):
        login_flow.device_login(context, out, out.sleep, out.clock)  # type: ignore[arg-type]
    device_form = app.device_forms[0]
    assert device_form["code_challenge_method"] == ["S256"]
    verifiers = {form["code_verifier"][0] for form in app.token_forms}
    assert len(app.token_forms) == 2 and len(verifiers) == 1, "one verifier for every poll"
    digest = hashlib.sha256(verifiers.pop().encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    assert device_form["code_challenge"] == [challenge]


def test_slow_down_adds_five_seconds_each_time(issuer_factory: Any, test_pki: TestPKI) -> None:
    out, _, result = run_device(issuer_factory, test_pki, [SLOW_DOWN, SLOW_DOWN, TOKENS])
    assert isinstance(result, dict)
    assert out.slept == pytest.approx(2 + 7 + 12, abs=0.5)


def test_the_complete_uri_is_shown_when_offered(issuer_factory: Any, test_pki: TestPKI) -> None:
    complete = "https://idp.example/device?user_code=WXYZ-1234"
    out, _, _ = run_device(issuer_factory, test_pki, [TOKENS], verification_uri_complete=complete)
    assert f"open {complete} and check the code WXYZ-1234" in out.text


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((400, {"error": "access_denied"}), "was denied at the issuer"),
        ((400, {"error": "expired_token"}), "expired before it was approved"),
        (
            (400, {"error": "invalid_grant", "error_description": "Device code not valid"}),
            "the login code for quay.example.com is no longer valid: the issuer refused the "
            "device_code grant (HTTP 400, invalid_grant: Device code not valid); "
            "run: docker-credential-quayfed login quay.example.com again",
        ),
        ((401, {"error": "invalid_client"}), "check client_id and the client secret"),
    ],
)
def test_terminal_answers_end_the_login_in_one_line(
    issuer_factory: Any, test_pki: TestPKI, answer: tuple[int, dict[str, Any]], words: str
) -> None:
    _, _, result = run_device(issuer_factory, test_pki, [PENDING, answer])
    assert isinstance(result, IssuerError)
    assert words in result.message
    assert "\n" not in result.message


def test_the_code_expiring_locally_ends_the_wait(issuer_factory: Any, test_pki: TestPKI) -> None:
    out, app, result = run_device(issuer_factory, test_pki, [PENDING] * 50, expires_in=3)
    assert isinstance(result, IssuerError) and "expired" in result.message
    assert out.slept <= 3.5 and len(app.token_forms) <= 2


@pytest.mark.parametrize(
    "device",
    [
        {"verification_uri": "http://idp.example/device"},
        {"verification_uri": "https://idp.example/\x1b[2Jdevice"},
        {"user_code": "A" * 100},
        {"device_code": 7},
    ],
)
def test_unusable_device_answers_are_refused(
    issuer_factory: Any, test_pki: TestPKI, device: dict[str, Any]
) -> None:
    out, app, result = run_device(issuer_factory, test_pki, [TOKENS], **device)
    assert isinstance(result, IssuerError), result
    assert app.token_forms == [] and out.text == ""


# -- the login store --------------------------------------------------------------------------


def registry(**overrides: Any) -> RegistryConfig:
    values: dict[str, Any] = {
        "key": "quay.example.com",
        "robot": "org+person",
        "issuer": "https://idp.example/realms/quay",
        "source": "device",
        "client_id": "cli",
        **overrides,
    }
    return RegistryConfig(**values)


#: the id_token of a login: whom it names is its iss and sub (preferred_username is shown only)
PERSON = fake_jwt(
    {"iss": "https://idp.example/realms/quay", "sub": "5f1c-jdoe", "preferred_username": "jdoe"}
)


def test_a_login_round_trips_and_is_shared_by_the_issuer_and_client(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    body = {"refresh_token": "rt-1", "refresh_expires_in": 1800, "scope": "openid"}
    login = logins.from_token_response(registry(), body, PERSON, 1000.0)
    assert login is not None and login.expires_at == 2800.0
    logins.write(cache, registry(), login)
    assert logins.read(cache, registry(key="other.example.com")) == login
    assert logins.read(cache, registry(client_id="another")) is None
    assert logins.forget(cache, registry()) is True
    assert logins.read(cache, registry()) is None


def test_a_refresh_without_rotation_keeps_the_previous_token() -> None:
    first = logins.from_token_response(registry(), {"refresh_token": "rt-1"}, PERSON, 10.0)
    assert first is not None
    kept = logins.from_token_response(registry(), {"id_token": "x"}, "x", 20.0, previous=first)
    assert kept is not None
    assert (kept.refresh_token, kept.logged_in_at, kept.refreshed_at) == ("rt-1", 10.0, 20.0)


def test_a_login_is_its_token_s_iss_and_sub_not_its_username() -> None:
    """OIDC does not make preferred_username unique: two people may share one."""
    body = {"refresh_token": "rt"}
    first = logins.from_token_response(registry(), body, PERSON, 1.0)
    namesake = fake_jwt(
        {
            "iss": "https://idp.example/realms/quay",
            "sub": "9e2a-other",
            "preferred_username": "jdoe",
        }
    )
    second = logins.from_token_response(registry(), body, namesake, 1.0)
    assert first is not None and second is not None
    assert first.shown == second.shown == "jdoe" and first.person != second.person
    assert first.person == "https://idp.example/realms/quay\n5f1c-jdoe"
    nobody = fake_jwt({"iss": "https://idp.example/realms/quay", "preferred_username": "jdoe"})
    assert logins.from_token_response(registry(), body, nobody, 1.0) is None
    assert logins.from_token_response(registry(), body, "not-a-jwt", 1.0) is None


def test_keycloak_offline_tokens_have_no_fixed_end() -> None:
    body = {"refresh_token": "rt", "refresh_expires_in": 0}
    login = logins.from_token_response(registry(), body, PERSON, 10.0)
    assert login is not None and login.expires_at is None and not login.expired(1e12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"format": "quayfed-login 1"}',
        '{"format": "other", "refresh_token": "x"}',
        json.dumps(
            {
                "format": "quayfed-login 1",
                "issuer": "https://idp.example/realms/quay",
                "client_id": "cli",
                "refresh_token": "rt",
                "subject": "jdoe",
                "scope": "openid",
                "logged_in_at": 1.0,
                "refreshed_at": 1.0,
                "expires_at": "tomorrow",
            }
        ),
    ],
)
def test_a_damaged_login_file_reads_as_no_login(tmp_path: Path, text: str) -> None:
    cache = TokenCache(tmp_path / "cache")
    cache.write_private(logins.login_name(registry()), text)
    assert logins.read(cache, registry()) is None


def test_a_login_file_readable_by_others_is_not_trusted(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    login = logins.from_token_response(registry(), {"refresh_token": "rt"}, PERSON, 1.0)
    assert login is not None
    logins.write(cache, registry(), login)
    (tmp_path / "cache" / logins.login_name(registry())).chmod(0o644)
    assert logins.read(cache, registry()) is None


def test_a_silent_local_client_cannot_hold_the_loopback_listener() -> None:
    import socket
    import urllib.request

    from docker_credential_quayfed import loopback

    with loopback.Receiver("state-1") as receiver:
        port = int(receiver.redirect_uri.rsplit(":", 1)[1].split("/")[0])
        silent = socket.create_connection(("127.0.0.1", port))  # connects, never speaks
        try:
            url = f"{receiver.redirect_uri}?state=state-1&code=the-code"
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
            assert receiver.wait(10, lambda left: None) == "the-code"
        finally:
            silent.close()
