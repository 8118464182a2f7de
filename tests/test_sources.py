"""The token sources: their declarations, and what each sends or reads.

Unit tests of pure logic: the issuer and GitHub's token endpoint are httpx.MockTransport
handlers, secrets come from the environment through monkeypatch.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed import config, secret_reader, sources, transport
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import IssuerError, SecretError
from docker_credential_quayfed.sources import SourceContext
from tests.jwt_factory import fake_jwt
from tests.support.requests import request_here

ISSUER = "https://idp.example.com/realms/quay"
TOKEN_ENDPOINT = f"{ISSUER}/protocol/openid-connect/token"
ID_TOKEN = fake_jwt({"iss": ISSUER, "sub": "jdoe", "exp": 2_000_000_000, "typ": "ID"})
ACCESS_TOKEN = fake_jwt({"iss": ISSUER, "sub": "jdoe", "exp": 2_000_000_000, "typ": "Bearer"})
PASSWORD = "correct-horse-battery"
CLIENT_SECRET = "s3cret-of-the-client"

Handler = Callable[[httpx.Request], httpx.Response]


def registry_config(source: str, **settings: str) -> RegistryConfig:
    """A registry table for ``source``, validated by config.parse_text as a user's would be."""
    lines = ['robot = "org+bot"', f'issuer = "{ISSUER}"', f'source = "{source}"']
    lines += [f'{name} = "{value}"' for name, value in settings.items()]
    text = '[registries."quay.example.com"]\n' + "\n".join(lines) + "\n"
    return config.parse_text(text, Path("config.toml"), sources.BY_NAME).registry(
        "quay.example.com"
    )


class Issuer:
    """A discovery document and a token endpoint that records each form and header it got."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = tokens if tokens is not None else {"id_token": ID_TOKEN}
        self.forms: list[dict[str, list[str]]] = []
        self.authorizations: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": TOKEN_ENDPOINT})
        assert (request.method, str(request.url)) == ("POST", TOKEN_ENDPOINT)
        self.forms.append(urllib.parse.parse_qs(request.content.decode()))
        self.authorizations.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"token_type": "Bearer", **self.tokens})


def fetch(registry: RegistryConfig, handler: Handler) -> str:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        context = SourceContext(registry, session, transport.Deadline(10), request_here())
        return sources.for_registry(registry).fetch(context)


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# -- declarations -------------------------------------------------------------------------------
def test_source_names_are_unique_and_each_is_listed_by_name() -> None:
    names = [source.name for source in sources.SOURCES]
    assert len(names) == len(set(names))
    assert all(names)
    assert {name: cls.name for name, cls in sources.BY_NAME.items()} == dict(zip(names, names))


@pytest.mark.parametrize("source", sources.SOURCES, ids=lambda source: source.name)
def test_every_declared_setting_is_a_known_setting(source: type[sources.TokenSource]) -> None:
    known = {setting.name for setting in config.SETTINGS}
    assert set(source.settings()) <= known - set(config.COMMON_REQUIRED)
    assert len(source.settings()) == len(set(source.settings()))
    assert set(source.secret_keys) <= set(source.settings())
    assert source.identity_key == "" or source.identity_key in source.settings()
    assert source.summary


@pytest.mark.parametrize("source", sources.SOURCES, ids=lambda source: source.name)
def test_a_registry_naming_a_source_gets_that_source(source: type[sources.TokenSource]) -> None:
    needed = {name: "x" for name in source.required}
    needed.update({group[0]: "x" for group in source.one_of})

    registry = registry_config(source.name, **needed)

    assert type(sources.for_registry(registry)) is source


# -- password -----------------------------------------------------------------------------------
def test_password_grant_of_a_public_client_posts_its_client_id_in_the_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_PASSWORD", PASSWORD)
    registry = registry_config(
        "password", client_id="quayfed-cli", username="jdoe", password_env="OIDC_PASSWORD"
    )
    issuer = Issuer()

    assert fetch(registry, issuer) == ID_TOKEN

    assert issuer.forms == [
        {
            "grant_type": ["password"],
            "username": ["jdoe"],
            "password": [PASSWORD],
            "scope": ["openid"],
            "client_id": ["quayfed-cli"],
        }
    ]
    assert issuer.authorizations == [None]


def test_password_grant_of_a_confidential_client_uses_basic_auth_not_the_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_PASSWORD", PASSWORD)
    monkeypatch.setenv("OIDC_CLIENT_SECRET", CLIENT_SECRET)
    registry = registry_config(
        "password",
        client_id="quayfed-web",
        username="jdoe",
        password_env="OIDC_PASSWORD",
        client_secret_env="OIDC_CLIENT_SECRET",
        audience="quay",
    )
    issuer = Issuer()

    assert fetch(registry, issuer) == ID_TOKEN

    (form,) = issuer.forms
    assert "client_id" not in form and "client_secret" not in form
    assert form["grant_type"] == ["password"] and form["password"] == [PASSWORD]
    assert form["audience"] == ["quay"]
    assert issuer.authorizations == [basic("quayfed-web", CLIENT_SECRET)]


def test_password_grant_returns_the_access_token_when_token_type_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_PASSWORD", PASSWORD)
    registry = registry_config(
        "password",
        client_id="quayfed-cli",
        username="jdoe",
        password_env="OIDC_PASSWORD",
        token_type="access_token",
    )

    token = fetch(registry, Issuer({"id_token": ID_TOKEN, "access_token": ACCESS_TOKEN}))

    assert token == ACCESS_TOKEN


def test_password_grant_with_an_empty_password_variable_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_PASSWORD", "  ")
    registry = registry_config(
        "password", client_id="quayfed-cli", username="jdoe", password_env="OIDC_PASSWORD"
    )
    issuer = Issuer()

    with pytest.raises(SecretError, match="OIDC_PASSWORD is empty or not set"):
        fetch(registry, issuer)

    assert issuer.forms == []


# -- client_credentials ----------------------------------------------------------------------
def test_client_credentials_grant_posts_the_grant_with_basic_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDC_CLIENT_SECRET", CLIENT_SECRET)
    registry = registry_config(
        "client_credentials", client_id="quayfed-ci", client_secret_env="OIDC_CLIENT_SECRET"
    )
    issuer = Issuer()

    assert fetch(registry, issuer) == ID_TOKEN

    assert issuer.forms == [{"grant_type": ["client_credentials"], "scope": ["openid"]}]
    assert issuer.authorizations == [basic("quayfed-ci", CLIENT_SECRET)]


def test_client_credentials_grant_reads_the_secret_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    secret_file.chmod(0o600)
    registry = registry_config(
        "client_credentials", client_id="quayfed-ci", client_secret_file=str(secret_file)
    )
    issuer = Issuer()

    fetch(registry, issuer)

    assert issuer.authorizations == [basic("quayfed-ci", CLIENT_SECRET)]


# -- env -------------------------------------------------------------------------------------
def test_env_source_returns_the_variables_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUAY_ID_TOKEN", f"  {ID_TOKEN}\n")
    registry = registry_config("env", token_env="QUAY_ID_TOKEN")

    assert fetch(registry, Issuer()) == ID_TOKEN


@pytest.mark.parametrize("value", ["", " \n ", None], ids=["empty", "blank", "unset"])
def test_env_source_refuses_an_empty_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("QUAY_ID_TOKEN", raising=False)
    else:
        monkeypatch.setenv("QUAY_ID_TOKEN", value)
    registry = registry_config("env", token_env="QUAY_ID_TOKEN")

    with pytest.raises(SecretError) as caught:
        fetch(registry, Issuer())

    assert "QUAY_ID_TOKEN is empty or not set" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- file ------------------------------------------------------------------------------------
def test_file_source_returns_the_files_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ID_TOKEN + "\n")
    token_file.chmod(0o644)  # projected tokens are world-readable: accepted
    registry = registry_config("file", token_file=str(token_file))

    assert fetch(registry, Issuer()) == ID_TOKEN


def test_file_source_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    registry = registry_config("file", token_file=str(fifo))

    started = time.monotonic()
    with pytest.raises(SecretError) as caught:
        fetch(registry, Issuer())

    assert time.monotonic() - started < 1.0
    assert "is a FIFO, not a regular file" in caught.value.message


def test_file_source_refuses_a_file_over_64_kib(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"x" * (secret_reader.MAX_SECRET + 1))
    registry = registry_config("file", token_file=str(token_file))

    with pytest.raises(SecretError) as caught:
        fetch(registry, Issuer())

    assert secret_reader.MAX_SECRET == 64 << 10
    assert "larger than 64 KiB" in caught.value.message


def test_file_source_accepts_a_file_of_exactly_64_kib(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"x" * secret_reader.MAX_SECRET)
    registry = registry_config("file", token_file=str(token_file))

    assert len(fetch(registry, Issuer())) == secret_reader.MAX_SECRET


def test_file_source_names_a_missing_file(tmp_path: Path) -> None:
    registry = registry_config("file", token_file=str(tmp_path / "absent"))

    with pytest.raises(SecretError, match=r"cannot read the token file .*absent"):
        fetch(registry, Issuer())


# -- github_actions -----------------------------------------------------------------------------
GITHUB_URL = "https://pipelines.actions.example/_apis/token?api-version=2.0"
GITHUB_BEARER = "gha-request-bearer-0123456789"


class GitHub:
    """GitHub's OIDC token endpoint: records each request, answers ``status`` and ``body``."""

    def __init__(self, status: int = 200, body: object = None) -> None:
        self.status = status
        self.body = {"value": ID_TOKEN} if body is None else body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


@pytest.fixture
def github_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", GITHUB_URL)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", GITHUB_BEARER)


@pytest.mark.usefixtures("github_env")
def test_github_actions_appends_the_audience_to_the_urls_query_and_sends_the_bearer() -> None:
    github = GitHub()

    token = fetch(registry_config("github_actions", audience="quay.example.com"), github)

    assert token == ID_TOKEN
    (request,) = github.requests
    assert str(request.url) == GITHUB_URL + "&audience=quay.example.com"
    assert request.headers["authorization"] == f"bearer {GITHUB_BEARER}"


@pytest.mark.usefixtures("github_env")
def test_github_actions_without_an_audience_keeps_the_url_as_given() -> None:
    github = GitHub()

    fetch(registry_config("github_actions"), github)

    assert str(github.requests[0].url) == GITHUB_URL


@pytest.mark.parametrize(
    "missing", ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
)
@pytest.mark.usefixtures("github_env")
def test_github_actions_outside_a_job_raises_a_secret_error(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(missing)
    github = GitHub()

    with pytest.raises(SecretError, match="id-token: write"):
        fetch(registry_config("github_actions"), github)

    assert github.requests == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(403, {"message": "no permission"}), (200, {"count": 1}), (200, {"value": ""})],
    ids=["refused", "no-value", "empty-value"],
)
@pytest.mark.usefixtures("github_env")
def test_github_actions_without_a_token_in_the_answer_is_an_issuer_error(
    status: int, body: object
) -> None:
    with pytest.raises(IssuerError) as caught:
        fetch(registry_config("github_actions"), GitHub(status, body))

    assert f"answered HTTP {status} without a token" in caught.value.message
