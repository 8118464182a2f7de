"""The installed helper against the third-party OIDC provider (nanoidp) and the Quay emulator,
all over TLS with the test CA: each source, each Quay answer, concurrency, expiry, faults."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docker_credential_quayfed import claims, quay, transport
from docker_credential_quayfed.errors import QuayError
from docker_credential_quayfed.protocol import NOT_FOUND
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.helper_process import Result, run_helper
from tests.support.oidc_provider import KubeIssuer, OIDCProvider

ROBOT = "quay_federation+rhbk_user"
PASSWORD_ENV = "QUAYFED_IT_PASSWORD"
SECRET_ENV = "QUAYFED_IT_CLIENT_SECRET"
JWT_ENV = "QUAYFED_IT_JWT"


@dataclass
class Setup:
    """One helper configuration pointing at the running servers."""

    quay: QuayEmulator
    provider: OIDCProvider
    directory: Path
    env: dict[str, str]
    secrets: list[str]

    @property
    def key(self) -> str:
        return self.quay.host

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])

    def configure(self, **settings: Any) -> None:
        lines = [f"[registries.{json.dumps(self.key)}]"]
        for name, value in settings.items():
            lines.append(f"{name} = {json.dumps(value)}")
        Path(self.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).write_text("\n".join(lines) + "\n")

    def get(self, **extra_env: str) -> Result:
        return self.get_in(None, **extra_env)

    def get_in(self, cwd: Path | None, **extra_env: str) -> Result:
        """``get`` run in the working directory ``cwd`` (None: this process's)."""
        result = run_helper("get", self.key, env={**self.env, **extra_env}, timeout=90, cwd=cwd)
        self.assert_no_secret(result)
        return result

    def assert_no_secret(self, result: Result) -> None:
        for secret in self.secrets:
            assert secret not in result.stderr, "a secret reached stderr"
        assert "eyJ" not in result.stderr, "a token reached stderr"
        assert "Traceback" not in result.stderr + result.stdout

    def exchanges(self) -> int:
        return int(self.quay.counters_snapshot()["exchanges_succeeded"])


def base_settings(setup: Setup) -> dict[str, Any]:
    return {
        "robot": ROBOT,
        "issuer": setup.provider.issuer,
        "quay_url": setup.quay.url,
        "ca_bundle": str(setup.provider.ca_cert),
    }


@pytest.fixture
def setup(quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path) -> Iterator[Setup]:
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        PASSWORD_ENV: oidc_provider.users["jdoe"],
        SECRET_ENV: oidc_provider.confidential_secret,
    }
    env.pop("DOCKER_CREDENTIAL_QUAYFED_DEBUG", None)
    yield Setup(quay, oidc_provider, tmp_path, env, [env[PASSWORD_ENV], env[SECRET_ENV]])


def password_setup(setup: Setup, password: dict[str, str] | None = None, **overrides: Any) -> None:
    """Robot federated to jdoe; the password from ``password`` (default: the env variable)."""
    setup.quay.add_robot(ROBOT, federation=[(setup.provider.issuer, "jdoe")])
    setup.configure(
        **{
            **base_settings(setup),
            "source": "password",
            "client_id": setup.provider.public_client,
            "username": "jdoe",
            **(password or {"password_env": PASSWORD_ENV}),
            **overrides,
        }
    )


def answer_of(result: Result) -> dict[str, str]:
    assert result.returncode == 0, result
    answer: dict[str, str] = json.loads(result.stdout)
    return answer


# -- each source -------------------------------------------------------------------------------
def test_password_source_mints_and_exchanges(setup: Setup) -> None:
    password_setup(setup)
    answer = answer_of(setup.get())
    assert answer["ServerURL"] == setup.key
    assert answer["Username"] == ROBOT
    robot_claims = claims.unverified_claims(answer["Secret"])
    assert robot_claims["iss"] == "quay" and robot_claims["sub"] == ROBOT
    assert robot_claims["exp"] - robot_claims["iat"] == 3600
    assert setup.exchanges() == 1
    assert answer_of(setup.get()) == answer  # second get: from the cache
    assert setup.exchanges() == 1


def test_password_from_file_and_command(setup: Setup) -> None:
    secret_file = setup.directory / "password"
    secret_file.write_text(setup.provider.users["jdoe"] + "\n")
    secret_file.chmod(0o644)
    password_setup(setup, {"password_file": str(secret_file)})
    result = setup.get()
    assert answer_of(result)["Username"] == ROBOT
    assert "readable by group or others" in result.stderr
    run_helper("erase", setup.key, env=setup.env)
    password_setup(setup, {"password_command": f"cat {secret_file}"})
    assert answer_of(setup.get())["Username"] == ROBOT
    assert setup.exchanges() == 2


def test_client_credentials_source(setup: Setup) -> None:
    setup.quay.add_robot(
        ROBOT, federation=[(setup.provider.issuer, setup.provider.confidential_client)]
    )
    setup.configure(
        **base_settings(setup),
        source="client_credentials",
        client_id=setup.provider.confidential_client,
        client_secret_env=SECRET_ENV,
        token_type="access_token",
    )
    assert answer_of(setup.get())["Username"] == ROBOT
    assert setup.exchanges() == 1


def test_file_source_with_projected_token(setup: Setup, kube_issuer: KubeIssuer) -> None:
    token_file = kube_issuer.write_token(setup.directory / "token", namespace="ci", name="builder")
    setup.quay.add_robot(
        ROBOT, federation=[(kube_issuer.issuer, "system:serviceaccount:ci:builder")]
    )
    setup.configure(
        robot=ROBOT,
        issuer=kube_issuer.issuer,
        source="file",
        token_file=str(token_file),
        quay_url=setup.quay.url,
        ca_bundle=str(kube_issuer.ca_cert),
    )
    result = setup.get()
    assert answer_of(result)["Username"] == ROBOT
    assert "readable by group" not in result.stderr


def test_env_source(setup: Setup) -> None:
    setup.quay.add_robot(ROBOT, federation=[(setup.provider.issuer, "ci-job")])
    setup.configure(**base_settings(setup), source="env", token_env=JWT_ENV)
    token = setup.provider.mint("ci-job")
    setup.secrets.append(token)
    assert answer_of(setup.get(**{JWT_ENV: token}))["Username"] == ROBOT


# -- failures ----------------------------------------------------------------------------------
def test_unknown_host_is_not_found_without_network(setup: Setup) -> None:
    password_setup(setup)
    result = run_helper("get", "other.example.com", env=setup.env)
    assert result.returncode == 1 and result.stdout.strip() == NOT_FOUND
    assert setup.quay.counters_snapshot()["exchanges_attempted"] == 0


def test_wrong_password_goes_anonymous_with_the_issuers_reason(setup: Setup) -> None:
    password_setup(setup)
    result = setup.get(**{PASSWORD_ENV: "wrong-password"})
    assert result.returncode == 1
    assert result.stdout.strip() == NOT_FOUND
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "invalid_grant" in lines[0] and "check the username and password" in lines[0]
    assert "wrong-password" not in result.stderr


def test_wrong_password_with_on_failure_error(setup: Setup) -> None:
    password_setup(setup, on_failure="error")
    result = setup.get(**{PASSWORD_ENV: "wrong-password"})
    assert result.returncode == 1
    assert "invalid_grant" in result.stdout
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("federation", "expected", "hint"),
    [
        ([], "Robot does not have federated login configured", "add a federation entry"),
        ([("https://elsewhere.example.com", "jdoe")], "not configured for this robot", "jdoe"),
        ([("ISSUER", "someone-else")], "Token does not match robot", "subject 'jdoe'"),
    ],
)
def test_quay_400_answers_name_the_fix(
    setup: Setup, federation: list[tuple[str, str]], expected: str, hint: str
) -> None:
    entries = [(setup.provider.issuer if i == "ISSUER" else i, s) for i, s in federation]
    password_setup(setup, on_failure="error")
    setup.quay.add_robot(ROBOT, federation=entries)
    result = setup.get()
    assert result.returncode == 1
    assert expected in result.stdout
    assert hint in result.stdout
    assert setup.provider.issuer in result.stdout or not federation


def test_unknown_robot_is_a_400_naming_the_robot_key(setup: Setup) -> None:
    password_setup(setup, on_failure="error")
    setup.configure(
        **{**base_settings(setup), "robot": "quay_federation+nobody"},
        source="password",
        client_id=setup.provider.public_client,
        username="jdoe",
        password_env=PASSWORD_ENV,
        on_failure="error",
    )
    result = setup.get()
    assert "Could not find robot" in result.stdout
    assert "case-sensitive" in result.stdout


def test_quay_500_html_names_known_causes(setup: Setup) -> None:
    password_setup(setup, on_failure="error")
    setup.quay.inject_fault("html500")
    result = setup.get()
    assert result.returncode == 1
    assert "HTTP 500" in result.stdout and "kid" in result.stdout
    assert "<html" not in result.stdout.lower()


def _exchange(quay_url: str | None, ca: Path, robot: str, token: str) -> str:
    assert quay_url is not None
    with transport.client(str(ca)) as session:
        return quay.exchange(session, quay_url, robot, token, deadline=transport.Deadline(20))


def test_quay_401_and_500_from_the_exchange_itself(setup: Setup) -> None:
    setup.quay.add_robot(ROBOT, federation=[(setup.provider.issuer, "jdoe")])
    with pytest.raises(QuayError, match="Invalid robot") as caught:
        _exchange(setup.quay.url, setup.provider.ca_cert, "norobot", setup.provider.mint())
    assert "namespace+shortname" in caught.value.message
    with pytest.raises(QuayError, match="HTTP 500"):
        _exchange(setup.quay.url, setup.provider.ca_cert, ROBOT, "not-a-jwt")
    expired = setup.provider.mint(iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    with pytest.raises(QuayError, match="Invalid token") as caught:
        _exchange(setup.quay.url, setup.provider.ca_cert, ROBOT, expired)
    assert "clock" in caught.value.message


def test_garbage_200_is_a_clear_error(setup: Setup) -> None:
    password_setup(setup, on_failure="error")
    setup.quay.inject_fault("garbage")
    result = setup.get()
    assert result.returncode == 1
    assert "answered 200 without a token" in result.stdout


@pytest.mark.parametrize("kind", ["503", "429", "502"])
def test_transient_quay_failures_are_retried(setup: Setup, kind: str) -> None:
    password_setup(setup)
    setup.quay.inject_fault(kind, retry_after=1)
    answer_of(setup.get())
    counters = setup.quay.counters_snapshot()
    assert counters["exchanges_attempted"] == 2
    assert counters["exchanges_succeeded"] == 1


def test_a_hanging_quay_cannot_hang_the_pull(setup: Setup) -> None:
    password_setup(setup, timeout=4)
    setup.quay.inject_fault("hang", count=5, seconds=30)
    started = time.monotonic()
    result = setup.get()
    elapsed = time.monotonic() - started
    assert result.stdout.strip() == NOT_FOUND
    assert "timed out" in result.stderr or "out of time" in result.stderr
    assert elapsed < 15, f"get took {elapsed:.1f}s with timeout = 4"


def test_issuer_down_goes_anonymous(setup: Setup) -> None:
    password_setup(setup)
    setup.configure(
        robot=ROBOT,
        issuer="https://127.0.0.1:9/realms/quay",
        source="password",
        client_id="x",
        username="jdoe",
        password_env=PASSWORD_ENV,
        quay_url=setup.quay.url,
        ca_bundle=str(setup.provider.ca_cert),
        timeout=5,
    )
    result = setup.get()
    assert result.stdout.strip() == NOT_FOUND
    assert "cannot connect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- cache, expiry, concurrency ------------------------------------------------------------------
def test_short_lifetime_forces_a_new_exchange_after_half_of_it(setup: Setup) -> None:
    password_setup(setup)
    setup.quay.set_token_lifetime(6)
    first = answer_of(setup.get())["Secret"]
    assert answer_of(setup.get())["Secret"] == first
    assert setup.exchanges() == 1
    time.sleep(3.2)
    second = answer_of(setup.get())["Secret"]
    assert second != first
    assert setup.exchanges() == 2


def test_stale_token_served_once_with_a_note_when_quay_fails(setup: Setup) -> None:
    password_setup(setup)
    setup.quay.set_token_lifetime(30)
    first = answer_of(setup.get())["Secret"]
    time.sleep(15.2)  # past half the lifetime; the retries against a down Quay leave > 5 s
    setup.quay.set_down()
    result = setup.get()
    assert answer_of(result)["Secret"] == first
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and "serving the cached robot token" in notes[0]


def test_corrupt_cache_file_is_replaced(setup: Setup) -> None:
    password_setup(setup)
    answer_of(setup.get())
    [token_file] = list(setup.cache_dir.glob("*.token"))
    token_file.write_bytes(b"\x00garbage\xff")
    answer_of(setup.get())
    assert setup.exchanges() == 2
    assert token_file.read_text().startswith("quayfed-token 1\n")


def test_cache_modes_after_a_real_get(setup: Setup) -> None:
    password_setup(setup)
    answer_of(setup.get())
    assert stat.S_IMODE(setup.cache_dir.stat().st_mode) == 0o700
    for path in setup.cache_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _counting_password_command(setup: Setup) -> str:
    counter = setup.directory / "mints"
    script = setup.directory / "password.sh"
    script.write_text(f'#!/bin/sh\necho x >> "{counter}"\nprintf %s "${PASSWORD_ENV}"\n')
    script.chmod(0o700)
    return str(script)


def test_sixteen_processes_on_a_cold_cache_mint_once(setup: Setup) -> None:
    password_setup(setup, {"password_command": _counting_password_command(setup)})
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: setup.get(), range(16)))
    secrets = {answer_of(result)["Secret"] for result in results}
    counters = setup.quay.counters_snapshot()
    mints = (setup.directory / "mints").read_text().count("x")
    seen = f"mints={mints}, exchanges={counters}"
    assert len(secrets) == 1, seen
    assert mints == 1, seen
    assert counters["exchanges_attempted"] == 1, seen
    assert counters["exchanges_succeeded"] == 1, seen


def test_debug_shows_iss_sub_exp_but_no_token(setup: Setup) -> None:
    password_setup(setup)
    result = setup.get(DOCKER_CREDENTIAL_QUAYFED_DEBUG="1")
    answer_of(result)
    assert f"iss={setup.provider.issuer} sub=jdoe" in result.stderr
    assert "exp=" in result.stderr


def test_token_command_prints_json_for_scripts(setup: Setup) -> None:
    password_setup(setup)
    result = run_helper("token", env=setup.env, extra_args=(setup.key, "--json"))
    assert result.returncode == 0, result
    printed = json.loads(result.stdout)
    assert printed["username"] == ROBOT
    assert 3500 < printed["expires_in"] <= 3600
    plain = run_helper("token", env=setup.env, extra_args=(setup.key,))
    assert plain.stdout.strip() == printed["token"]


def test_github_actions_source(setup: Setup, test_pki: TestPKI) -> None:
    subject = "repo:quayfed/app:ref:refs/heads/main"
    token = setup.provider.mint(subject, audience="quay.example.com")
    setup.secrets.append(token)
    seen: list[dict[str, str]] = []

    def actions_endpoint(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(
            {"auth": environ.get("HTTP_AUTHORIZATION", ""), "query": environ["QUERY_STRING"]}
        )
        body = json.dumps({"value": token}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    setup.quay.add_robot(ROBOT, federation=[(setup.provider.issuer, subject)])
    setup.configure(**base_settings(setup), source="github_actions", audience="quay.example.com")
    with serve_wsgi(actions_endpoint, pki=test_pki) as endpoint:
        request_env = {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{endpoint.url}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-bearer-1f3c",
        }
        setup.secrets.append("runtime-bearer-1f3c")
        assert answer_of(setup.get(**request_env))["Username"] == ROBOT
    assert seen == [
        {"auth": "bearer runtime-bearer-1f3c", "query": "api-version=2.0&audience=quay.example.com"}
    ]
    # Outside a job the one line says what is missing.
    run_helper("erase", setup.key, env=setup.env)
    outside = setup.get()
    assert outside.stdout.strip() == NOT_FOUND
    assert "id-token: write" in outside.stderr


# -- a SOCKS proxy in the environment ------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_get_goes_through_a_socks_proxy_named_by_all_proxy(setup: Setup) -> None:
    """Debian's microsocks as the proxy, with a password: a wrong one fails, the right one
    answers, so the exchange really went through it (with the socks extra installed)."""
    import shutil
    import socket
    import subprocess

    pytest.importorskip("socksio", reason="the socks extra (httpx[socks]) is not installed")
    microsocks = shutil.which("microsocks")
    if microsocks is None:
        if os.environ.get("CI") == "true":
            pytest.fail("microsocks is not installed (.ci/run installs it)")
        pytest.skip("microsocks is not installed (apt-get install microsocks)")
    password_setup(setup)
    port = _free_port()
    proxy = subprocess.Popen(
        [microsocks, "-i", "127.0.0.1", "-p", str(port), "-u", "quayfed", "-P", "proxy-pw"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "microsocks did not start"
            time.sleep(0.05)
        setup.secrets.append("proxy-pw")
        through = {"NO_PROXY": "", "no_proxy": "", "HTTPS_PROXY": "", "https_proxy": ""}
        wrong = setup.get(**through, ALL_PROXY=f"socks5://quayfed:wrong@127.0.0.1:{port}")
        assert wrong.stdout.strip() == NOT_FOUND and setup.exchanges() == 0
        assert run_helper("erase", setup.key, env=setup.env).returncode == 0  # its failure
        right = setup.get(**through, ALL_PROXY=f"socks5://quayfed:proxy-pw@127.0.0.1:{port}")
        assert answer_of(right)["Username"] == ROBOT and setup.exchanges() == 1
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
