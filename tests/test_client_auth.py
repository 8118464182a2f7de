"""How a confidential client authenticates at the token endpoint: client_secret_basic,
client_secret_post (against nanoidp, which enforces each client's registered method) and
private_key_jwt (RFC 7523, against the emulator's Keycloak realm, which checks the registered
key, the audience, the expiry and refuses a reused jti), and every way each can fail."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from docker_credential_quayfed import config, oidc, sources, transport
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import ConfigError, IssuerError, SecretError
from docker_credential_quayfed.sources import SourceContext
from quay_sandbox.issuer import IssuerClient, IssuerUser, KeycloakIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.support import leaks, trusting
from tests.support.oidc_provider import OIDCProvider
from tests.support.requests import request_here

ENDPOINT = "https://idp.example.com/realms/quay/protocol/openid-connect/token"
SECRET = "client-secret-of-7c1d"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JDOE = IssuerUser("jdoe", "jdoe-password-5e2")
ROBOT = "quay_federation+signed"


def pem(key: Any, password: bytes | None = None) -> str:
    encryption: Any = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    text: str = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    leaks.known(text.strip(), "client private key")
    return text


def key_file(tmp_path: Path, key: Any, name: str = "client-key.pem") -> Path:
    path = tmp_path / name
    path.write_text(pem(key))
    path.chmod(0o600)
    return path


def table(issuer: str, **settings: str) -> RegistryConfig:
    lines = ['robot = "org+bot"', f'issuer = "{issuer}"']
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    text = '[registries."quay.example.com"]\n' + "\n".join(lines) + "\n"
    return config.parse_text(text, Path("config.toml"), sources.BY_NAME).registry(
        "quay.example.com"
    )


def context_for(registry: RegistryConfig, session: httpx.Client | None = None) -> SourceContext:
    return SourceContext(
        registry, session or httpx.Client(), transport.Deadline(10), request_here()
    )


def fetch(registry: RegistryConfig, ca_cert: Path) -> str:
    with transport.client(str(ca_cert)) as session:
        return sources.for_registry(registry).fetch(context_for(registry, session))


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    assert "PRIVATE KEY" not in text and SECRET not in text
    return text


# -- authenticate(): what each method puts where ---------------------------------------------
def test_client_secret_basic_is_the_default_and_returns_the_basic_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLIENT_SECRET", SECRET)
    registry = table(
        ENDPOINT, source="client_credentials", client_id="ci", client_secret_env="CLIENT_SECRET"
    )
    form: dict[str, str] = {"grant_type": "client_credentials"}

    assert oidc.authenticate(context_for(registry), form, ENDPOINT) == ("ci", SECRET)
    assert form == {"grant_type": "client_credentials"}


def test_client_secret_post_puts_id_and_secret_in_the_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENT_SECRET", SECRET)
    registry = table(
        ENDPOINT,
        source="client_credentials",
        client_id="ci",
        client_secret_env="CLIENT_SECRET",
        client_auth="client_secret_post",
    )
    form: dict[str, str] = {}

    assert oidc.authenticate(context_for(registry), form, ENDPOINT) is None
    assert form == {"client_id": "ci", "client_secret": SECRET}


def test_a_public_client_sends_only_its_id() -> None:
    registry = table(
        ENDPOINT, source="password", client_id="cli", username="jdoe", password_env="PW"
    )
    form: dict[str, str] = {}

    assert oidc.authenticate(context_for(registry), form, ENDPOINT) is None
    assert form == {"client_id": "cli"}


@pytest.mark.parametrize(
    ("key", "algorithm"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256")], ids=["rsa", "ec"]
)
def test_private_key_jwt_signs_a_short_assertion_for_the_endpoint(
    tmp_path: Path, key: Any, algorithm: str
) -> None:
    registry = table(
        ENDPOINT,
        source="client_credentials",
        client_id="ci",
        client_auth="private_key_jwt",
        client_key_file=str(key_file(tmp_path, key)),
        client_key_id="quayfed-1",
    )
    first: dict[str, str] = {}
    second: dict[str, str] = {}

    assert oidc.authenticate(context_for(registry), first, ENDPOINT) is None
    oidc.authenticate(context_for(registry), second, ENDPOINT)

    assert first["client_id"] == "ci"
    assert (
        first["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assertion = first["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert (header["alg"], header["kid"]) == (algorithm, "quayfed-1")
    claims = jwt.decode(assertion, key.public_key(), algorithms=[algorithm], audience=ENDPOINT)
    assert (claims["iss"], claims["sub"]) == ("ci", "ci")
    assert claims["exp"] - claims["iat"] == oidc.ASSERTION_LIFETIME == 60
    assert abs(claims["iat"] - time.time()) < 5
    other = jwt.decode(second["client_assertion"], options={"verify_signature": False})
    assert other["jti"] != claims["jti"] and len(claims["jti"]) >= 20


def test_private_key_jwt_without_client_key_id_sends_no_kid(tmp_path: Path) -> None:
    registry = table(
        ENDPOINT,
        source="client_credentials",
        client_id="ci",
        client_auth="private_key_jwt",
        client_key_file=str(key_file(tmp_path, RSA_KEY)),
    )
    form: dict[str, str] = {}

    oidc.authenticate(context_for(registry), form, ENDPOINT)

    assert "kid" not in jwt.get_unverified_header(form["client_assertion"])


# -- private_key_jwt: every way it fails --------------------------------------------------------
def signed_registry(path: Path | str, issuer: str = ENDPOINT, **extra: str) -> RegistryConfig:
    return table(
        issuer,
        source="client_credentials",
        client_id="signed-ci",
        client_auth="private_key_jwt",
        client_key_file=str(path),
        **extra,
    )


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    registry = signed_registry(tmp_path / "absent.pem")

    with pytest.raises(SecretError) as caught:
        oidc.authenticate(context_for(registry), {}, ENDPOINT)

    assert "cannot read the client key file" in one_line(caught.value)
    assert "absent.pem (client_key_file): No such file or directory" in str(caught.value)


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    locked = key_file(tmp_path, RSA_KEY)
    locked.chmod(0)
    directory = tmp_path / "keys.d"
    directory.mkdir()
    if os.geteuid() != 0:  # root reads a 000 file: the directory case still runs
        with pytest.raises(SecretError, match="Permission denied") as caught:
            oidc.authenticate(context_for(signed_registry(locked)), {}, ENDPOINT)
        one_line(caught.value)

    with pytest.raises(SecretError, match="not a regular file") as caught:
        oidc.authenticate(context_for(signed_registry(directory)), {}, ENDPOINT)

    one_line(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not a key at all\n", "holds no PEM private key"),
        (
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
            "holds no PEM private key",
        ),
        (pem(RSA_KEY, password=b"passphrase-3"), "is encrypted"),
    ],
    ids=["text", "certificate", "encrypted"],
)
def test_a_file_that_is_not_a_usable_key_is_refused(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "client-key.pem"
    path.write_text(content)
    path.chmod(0o600)

    with pytest.raises(SecretError, match=expected) as caught:
        oidc.authenticate(context_for(signed_registry(path)), {}, ENDPOINT)

    one_line(caught.value)


def test_a_key_file_others_can_read_gets_the_secret_file_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = key_file(tmp_path, EC_KEY)
    path.chmod(0o644)
    form: dict[str, str] = {}

    oidc.authenticate(context_for(signed_registry(path)), form, ENDPOINT)

    assert form["client_assertion"]
    err = capsys.readouterr().err
    assert f"client key file {path} is readable by group or others" in err
    assert "PRIVATE KEY" not in err


def test_without_cryptography_the_error_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.serialization", None)
    registry = signed_registry(key_file(tmp_path, RSA_KEY))

    with pytest.raises(ConfigError) as caught:
        oidc.authenticate(context_for(registry), {}, ENDPOINT)

    assert "needs the Python package cryptography" in one_line(caught.value)
    assert "docker-credential-quayfed[keys]" in str(caught.value)


# -- config validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"client_auth": "private_key_jwt"},
            "client_auth = 'private_key_jwt' needs client_key_file",
        ),
        (
            {
                "client_auth": "private_key_jwt",
                "client_key_file": "/k.pem",
                "client_secret_env": "S",
            },
            "has client_secret_env but client_auth = 'private_key_jwt' sends no client secret",
        ),
        (
            {"client_key_file": "/k.pem", "client_secret_env": "S"},
            "client_auth is not 'private_key_jwt'",
        ),
        ({"client_key_id": "k1", "client_secret_env": "S"}, "has client_key_id but client_auth"),
        ({"client_auth": "client_secret_post"}, "'client_secret_post' needs a client secret"),
        ({"client_auth": "mtls", "client_secret_env": "S"}, "client_auth = 'mtls' is not allowed"),
        (
            {"source": "file", "token_file": "/t", "exchange_audience": "quay", "client_id": ""},
            "exchange_audience needs client_id",
        ),
    ],
    ids=[
        "jwt-no-key",
        "jwt-and-secret",
        "key-without-jwt",
        "kid-without-jwt",
        "post-no-secret",
        "unknown",
        "no-client",
    ],
)
def test_client_auth_settings_that_disagree_are_config_problems(
    settings: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        table(ENDPOINT, **{"source": "client_credentials", "client_id": "ci", **settings})

    assert expected in str(caught.value)


def test_client_credentials_accepts_a_private_key_instead_of_a_secret() -> None:
    registry = signed_registry("/etc/quayfed/client-key.pem")

    assert registry.client_auth == "private_key_jwt"
    with pytest.raises(ConfigError, match="has none of client_secret_env"):
        table(ENDPOINT, source="client_credentials", client_id="ci")


# -- against real issuers -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def realm(test_pki: TestPKI) -> Iterator[KeycloakIssuer]:
    issuer = KeycloakIssuer(
        users=[JDOE],
        clients=[
            IssuerClient("signed-ci", jwt_public_key=RSA_KEY.public_key(), service_account=True),
            IssuerClient("signed-ec", jwt_public_key=EC_KEY.public_key(), service_account=True),
            IssuerClient("signed-cli", jwt_public_key=RSA_KEY.public_key()),
            IssuerClient("secret-ci", secret=SECRET, service_account=True),
        ],
    )
    leaks.known(JDOE.password, "password of jdoe")
    leaks.known(SECRET, "client secret")
    with issuer.start(pki=test_pki):
        yield issuer


def test_private_key_jwt_client_credentials_at_keycloak(
    realm: KeycloakIssuer, test_pki: TestPKI, tmp_path: Path
) -> None:
    rsa_registry = signed_registry(
        key_file(tmp_path, RSA_KEY), realm.issuer, token_type="access_token"
    )
    ec_registry = table(
        realm.issuer,
        source="client_credentials",
        client_id="signed-ec",
        client_auth="private_key_jwt",
        client_key_file=str(key_file(tmp_path, EC_KEY, "ec.pem")),
        token_type="access_token",
    )

    for registry in (rsa_registry, ec_registry):
        token = fetch(registry, test_pki.ca_cert)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["azp"] == registry.client_id and claims["iss"] == realm.issuer


def test_private_key_jwt_password_grant_at_keycloak(
    realm: KeycloakIssuer, test_pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JDOE_PASSWORD", JDOE.password)
    registry = table(
        realm.issuer,
        source="password",
        client_id="signed-cli",
        username="jdoe",
        password_env="JDOE_PASSWORD",
        client_auth="private_key_jwt",
        client_key_file=str(key_file(tmp_path, RSA_KEY)),
    )

    claims = jwt.decode(fetch(registry, test_pki.ca_cert), options={"verify_signature": False})

    assert (claims["sub"], claims["typ"]) == (JDOE.sub, "ID")


def test_keycloak_refuses_a_key_it_does_not_know_in_one_line(
    realm: KeycloakIssuer, test_pki: TestPKI, tmp_path: Path
) -> None:
    registry = signed_registry(key_file(tmp_path, STRANGER_KEY), realm.issuer)

    with pytest.raises(IssuerError) as caught:
        fetch(registry, test_pki.ca_cert)

    message = one_line(caught.value)
    assert "HTTP 400, invalid_client: Client authentication with signed JWT failed" in message


def assertion_for(realm: KeycloakIssuer, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "signed-ci",
        "sub": "signed-ci",
        "aud": realm.token_endpoint,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, RSA_KEY, "RS256")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://elsewhere.example/token"}, "Invalid token audience"),
        ({"exp": int(time.time()) - 30}, "Token is not active"),
        ({"jti": None}, "Missing ID on the token"),
    ],
    ids=["audience", "expired", "no-jti"],
)
def test_the_realm_checks_the_assertion_like_keycloak(
    realm: KeycloakIssuer, test_pki: TestPKI, claims: dict[str, Any], reason: str
) -> None:
    answer = httpx.post(
        realm.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": oidc.ASSERTION_TYPE,
            "client_assertion": assertion_for(realm, **claims),
        },
        verify=trusting(test_pki.ca_cert),
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert reason in answer.json()["error_description"]


def test_the_realm_refuses_a_reused_assertion(realm: KeycloakIssuer, test_pki: TestPKI) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": oidc.ASSERTION_TYPE,
        "client_assertion": assertion_for(realm),
    }
    tls = trusting(test_pki.ca_cert)

    first = httpx.post(realm.token_endpoint, data=form, verify=tls)
    again = httpx.post(realm.token_endpoint, data=form, verify=tls)

    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["error_description"].endswith("Token reuse detected")


@pytest.fixture
def post_client(oidc_provider: OIDCProvider) -> Iterator[tuple[str, str]]:
    """A nanoidp client registered for client_secret_post (nanoidp's runtime API)."""
    client_id, secret = f"quayfed-post-{uuid.uuid4().hex[:8]}", "post-secret-4b9e1d"
    leaks.known(secret, "client secret")
    tls = trusting(oidc_provider.ca_cert)
    created = httpx.post(
        f"{oidc_provider.issuer}/api/runtime/clients",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_post",
        },
        verify=tls,
    )
    assert created.status_code == 201, created.text
    yield client_id, secret
    httpx.delete(f"{oidc_provider.issuer}/api/runtime/clients/{client_id}", verify=tls)


def test_client_secret_basic_and_post_at_nanoidp(
    oidc_provider: OIDCProvider, post_client: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASIC_SECRET", oidc_provider.confidential_secret)
    monkeypatch.setenv("POST_SECRET", post_client[1])

    def registry(client_id: str, secret_env: str, method: str) -> RegistryConfig:
        return table(
            oidc_provider.issuer,
            source="client_credentials",
            client_id=client_id,
            client_secret_env=secret_env,
            client_auth=method,
            token_type="access_token",
        )

    basic = registry(oidc_provider.confidential_client, "BASIC_SECRET", "client_secret_basic")
    post = registry(post_client[0], "POST_SECRET", "client_secret_post")
    for each in (basic, post):
        token = fetch(each, oidc_provider.ca_cert)
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == each.client_id

    # nanoidp holds each client to its registered method: the setting really decides.
    with pytest.raises(IssuerError, match="invalid_client") as caught:
        fetch(registry(post_client[0], "POST_SECRET", "client_secret_basic"), oidc_provider.ca_cert)
    one_line(caught.value)


# -- the installed helper: one line, no traceback, no secret -----------------------------------
def test_the_helper_reports_each_private_key_failure_in_one_line(
    realm: KeycloakIssuer, quay: QuayEmulator, test_pki: TestPKI, tmp_path: Path
) -> None:
    quay.add_robot(
        ROBOT, federation=[(realm.issuer, realm.clients["signed-ci"].service_account_sub)]
    )
    good = key_file(tmp_path, RSA_KEY)
    stranger = key_file(tmp_path, STRANGER_KEY, "stranger.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
    }

    def token_with(path: Path) -> tuple[int, str]:
        settings = {
            "robot": ROBOT,
            "issuer": realm.issuer,
            "source": "client_credentials",
            "client_id": "signed-ci",
            "client_auth": "private_key_jwt",
            "client_key_file": str(path),
            "token_type": "access_token",
            "quay_url": quay.url,
            "ca_bundle": str(test_pki.ca_cert),
        }
        lines = [f"[registries.{json.dumps(quay.host)}]"]
        lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
        Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).write_text("\n".join(lines) + "\n")
        result = run_helper("token", env=env, extra_args=(quay.host,))
        output = result.stdout + result.stderr
        assert "Traceback" not in output and "PRIVATE KEY" not in output
        assert "bm90IGEga2V5" not in output
        return result.returncode, result.stderr.strip()

    for path, expected in [
        (tmp_path / "absent.pem", "cannot read the client key file"),
        (garbage, "holds no PEM private key"),
        (stranger, "Client authentication with signed JWT failed"),
    ]:
        code, stderr = token_with(path)
        assert code == 1 and len(stderr.splitlines()) == 1, stderr
        assert expected in stderr

    code, stderr = token_with(good)
    assert code == 0, stderr
