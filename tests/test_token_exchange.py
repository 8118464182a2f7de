"""Token exchange at the issuer (RFC 8693): exchange_for_audience.

The form and the error handling as pure logic (httpx.MockTransport), then against the
emulator's Keycloak realm over TLS, which answers as Keycloak's standard token exchange (v2)
does, error bodies included.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from docker_credential_quayfed import config, oidc, sources, transport
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import IssuerError
from docker_credential_quayfed.sources import SourceContext
from quay_sandbox.issuer import IssuerClient, IssuerUser, KeycloakIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.support import leaks
from tests.support.requests import request_here

ISSUER = "https://idp.example.com/realms/quay"
TOKEN_ENDPOINT = f"{ISSUER}/protocol/openid-connect/token"
SUBJECT = fake_jwt({"iss": ISSUER, "sub": "jdoe", "exp": 2_000_000_000, "aud": "quayfed"})
EXCHANGED = fake_jwt({"iss": ISSUER, "sub": "jdoe", "exp": 2_000_000_000, "aud": "quay"})
SECRET = "exchanger-secret-81f0"
JDOE = IssuerUser("jdoe", "jdoe-password-0c4")
CLIENT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def table(issuer: str = ISSUER, **settings: str) -> RegistryConfig:
    lines = ['robot = "org+bot"', f'issuer = "{issuer}"']
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    text = '[registries."quay.example.com"]\n' + "\n".join(lines) + "\n"
    return config.parse_text(text, Path("config.toml"), sources.BY_NAME).registry(
        "quay.example.com"
    )


class Issuer:
    """Discovery and a token endpoint answering ``status``/``body``; records each form."""

    def __init__(self, status: int = 200, body: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body or {
            "access_token": EXCHANGED,
            "issued_token_type": oidc.TOKEN_TYPE_URIS["access_token"],
            "token_type": "Bearer",
        }
        self.forms: list[dict[str, list[str]]] = []
        self.authorizations: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": TOKEN_ENDPOINT})
        self.forms.append(urllib.parse.parse_qs(request.content.decode()))
        self.authorizations.append(request.headers.get("authorization"))
        return httpx.Response(self.status, json=self.body)


def exchange(registry: RegistryConfig, handler: Issuer, subject: str = SUBJECT) -> str:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        context = SourceContext(registry, session, transport.Deadline(10), request_here())
        return oidc.exchange_for_audience(context, subject)


@pytest.fixture
def client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGER_SECRET", SECRET)


def confidential(issuer: str = ISSUER, **settings: str) -> RegistryConfig:
    return table(
        issuer,
        source="file",
        token_file="/var/run/secrets/tokens/quay",
        client_id="quayfed",
        client_secret_env="EXCHANGER_SECRET",
        exchange_audience="quay",
        **settings,
    )


# -- the request, as pure logic -------------------------------------------------------------------
@pytest.mark.usefixtures("client_secret")
@pytest.mark.parametrize("token_type", ["access_token", "id_token"])
def test_the_exchange_posts_rfc_8693_with_the_clients_authentication(token_type: str) -> None:
    issuer = Issuer()

    token = exchange(confidential(token_type=token_type), issuer)

    assert token == EXCHANGED
    assert issuer.forms == [
        {
            "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "subject_token": [SUBJECT],
            "subject_token_type": [f"urn:ietf:params:oauth:token-type:{token_type}"],
            "requested_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
            "audience": ["quay"],
        }
    ]
    expected = base64.b64encode(f"quayfed:{SECRET}".encode()).decode()
    assert issuer.authorizations == [f"Basic {expected}"]


@pytest.mark.usefixtures("client_secret")
def test_client_secret_post_puts_the_secret_in_the_exchange_form() -> None:
    issuer = Issuer()

    exchange(confidential(client_auth="client_secret_post"), issuer)

    (form,) = issuer.forms
    assert form["client_id"] == ["quayfed"] and form["client_secret"] == [SECRET]
    assert issuer.authorizations == [None]


@pytest.mark.usefixtures("client_secret")
def test_a_refused_exchange_says_what_to_enable() -> None:
    refused = Issuer(
        400,
        {
            "error": "invalid_request",
            "error_description": "Standard token exchange is not enabled for the requested client",
        },
    )

    with pytest.raises(IssuerError) as caught:
        exchange(confidential(), refused)

    message = str(caught.value)
    assert "\n" not in message and "eyJ" not in message
    assert "Standard token exchange is not enabled" in message
    assert "enable standard token exchange on client_id" in message


@pytest.mark.usefixtures("client_secret")
def test_a_bad_client_keeps_the_credentials_fix() -> None:
    refused = Issuer(401, {"error": "invalid_client", "error_description": "Invalid client"})

    with pytest.raises(IssuerError) as caught:
        exchange(confidential(), refused)

    assert "check client_id and the client secret" in str(caught.value)


# -- against the Keycloak realm -------------------------------------------------------------------
@pytest.fixture(scope="module")
def realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    issuer = KeycloakIssuer(
        users=[JDOE],
        clients=[
            IssuerClient("quayfed", secret=SECRET, token_exchange=True),
            IssuerClient(
                "quayfed-signed", jwt_public_key=CLIENT_KEY.public_key(), token_exchange=True
            ),
            IssuerClient("no-exchange", secret=SECRET),
            IssuerClient("quay", secret="quay-side-secret-55"),
        ],
    )
    leaks.known(JDOE.password, "password of jdoe")
    leaks.known(SECRET, "client secret")
    with issuer.start(pki=test_pki):
        yield issuer


def user_token(
    realm: KeycloakIssuer,
    test_pki: TestPKI,
    client: str,
    token_type: str,
    exchange_audience: str = "quay",
    **auth: str,
) -> tuple[RegistryConfig, str, httpx.Client]:
    """The password grant of ``client`` (its token's audience is the client itself), the
    registry that exchanges it, and the TLS session."""
    registry = table(
        realm.issuer,
        source="password",
        client_id=client,
        username="jdoe",
        password_env="JDOE_PASSWORD",
        token_type=token_type,
        exchange_audience=exchange_audience,
        ca_bundle=str(test_pki.ca_cert),
        **auth,
    )
    session = transport.client(registry.ca_bundle)
    context = SourceContext(registry, session, transport.Deadline(10), request_here())
    return registry, sources.for_registry(registry).fetch(context), session


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JDOE_PASSWORD", JDOE.password)
    monkeypatch.setenv("EXCHANGER_SECRET", SECRET)


@pytest.mark.usefixtures("password_env")
def test_keycloak_exchanges_an_access_token_for_the_quay_audience(
    realm: KeycloakIssuer, test_pki: TestPKI
) -> None:
    registry, subject, session = user_token(
        realm, test_pki, "quayfed", "access_token", client_secret_env="EXCHANGER_SECRET"
    )
    before = realm.token_exchanges

    with closing(session):
        exchanged = oidc.exchange_for_audience(
            SourceContext(registry, session, transport.Deadline(10), request_here()), subject
        )

    claims = jwt.decode(
        exchanged, realm.key.private_key.public_key(), algorithms=["RS256"], audience="quay"
    )
    assert (claims["iss"], claims["sub"], claims["azp"]) == (realm.issuer, JDOE.sub, "quayfed")
    assert jwt.decode(subject, options={"verify_signature": False})["aud"] == "quayfed"
    assert realm.token_exchanges == before + 1


@pytest.mark.usefixtures("password_env")
def test_keycloak_exchange_with_a_private_key_jwt_client(
    realm: KeycloakIssuer, test_pki: TestPKI, tmp_path: Path
) -> None:
    key_file = tmp_path / "client-key.pem"
    key_pem = CLIENT_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    leaks.known(key_pem.decode().strip(), "client private key")
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    registry, subject, session = user_token(
        realm,
        test_pki,
        "quayfed-signed",
        "access_token",
        client_auth="private_key_jwt",
        client_key_file=str(key_file),
    )

    with closing(session):
        exchanged = oidc.exchange_for_audience(
            SourceContext(registry, session, transport.Deadline(10), request_here()), subject
        )

    claims = jwt.decode(exchanged, options={"verify_signature": False})
    assert (claims["aud"], claims["azp"]) == ("quay", "quayfed-signed")


@pytest.mark.usefixtures("password_env")
@pytest.mark.parametrize(
    ("client", "token_type", "audience", "expected"),
    [
        ("no-exchange", "access_token", "quay", "Standard token exchange is not enabled"),
        ("quayfed", "id_token", "quay", "Parameter 'subject_token' supports access tokens only"),
        ("quayfed", "access_token", "nobody", "Requested audience not available: nobody"),
    ],
    ids=["not-enabled", "id-token", "unknown-audience"],
)
def test_keycloak_refusals_are_one_line_with_the_fix(
    realm: KeycloakIssuer,
    test_pki: TestPKI,
    client: str,
    token_type: str,
    audience: str,
    expected: str,
) -> None:
    registry, subject, session = user_token(
        realm, test_pki, client, token_type, audience, client_secret_env="EXCHANGER_SECRET"
    )

    with closing(session), pytest.raises(IssuerError) as caught:
        oidc.exchange_for_audience(
            SourceContext(registry, session, transport.Deadline(10), request_here()), subject
        )

    message = str(caught.value)
    assert f"(HTTP 400, invalid_request: {expected}" in message
    assert "\n" not in message and "eyJ" not in message and SECRET not in message
    assert "token_type = 'access_token'" in message


@pytest.mark.usefixtures("password_env")
def test_keycloak_refuses_a_subject_token_it_did_not_sign(
    realm: KeycloakIssuer, test_pki: TestPKI
) -> None:
    registry, _, session = user_token(
        realm, test_pki, "quayfed", "access_token", client_secret_env="EXCHANGER_SECRET"
    )
    forged = jwt.encode(
        {"iss": realm.issuer, "sub": JDOE.sub, "aud": "quayfed", "typ": "Bearer", "exp": 2**31},
        CLIENT_KEY,
        "RS256",
    )
    leaks.known(forged, "forged JWT")

    with closing(session), pytest.raises(IssuerError, match="invalid_request: Invalid token"):
        oidc.exchange_for_audience(
            SourceContext(registry, session, transport.Deadline(10), request_here()), forged
        )


def test_get_sends_quay_the_exchanged_token(
    realm: KeycloakIssuer, quay: QuayEmulator, test_pki: TestPKI, tmp_path: Path
) -> None:
    robot = "quay_federation+exchanged"
    quay.add_robot(robot, federation=[(realm.issuer, JDOE.sub)])
    settings = {
        "robot": robot,
        "issuer": realm.issuer,
        "source": "password",
        "client_id": "quayfed",
        "username": "jdoe",
        "password_env": "JDOE_PASSWORD",
        "client_secret_env": "EXCHANGER_SECRET",
        "token_type": "access_token",
        "exchange_audience": "quay",
        "quay_url": quay.url,
        "ca_bundle": str(test_pki.ca_cert),
    }
    config_file = tmp_path / "config.toml"
    lines = [f"[registries.{json.dumps(quay.host)}]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    config_file.write_text("\n".join(lines) + "\n")
    before = realm.token_exchanges

    result = run_helper(
        "get",
        quay.host,
        env={
            "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config_file),
            "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
            "DOCKER_CREDENTIAL_QUAYFED_DEBUG": "1",
            "JDOE_PASSWORD": JDOE.password,
            "EXCHANGER_SECRET": SECRET,
        },
    )

    assert result.returncode == 0, result
    assert json.loads(result.stdout)["Username"] == robot
    assert realm.token_exchanges == before + 1
    # The JWT Quay accepted is the exchanged one: its audience is exchange_audience.
    described = [line for line in result.stderr.splitlines() if "OIDC token from source" in line]
    assert len(described) == 1 and "aud=quay " in described[0] + " ", result.stderr
    assert "Traceback" not in result.stderr and "eyJ" not in result.stderr
