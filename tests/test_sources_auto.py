"""source = "auto" and the per-platform sources (gitlab, buildkite, circleci).

Real things where a job has them: environment variables for GitLab and CircleCI, a fake
``buildkite-agent`` executable on PATH (a real exec), GitHub's token endpoint served by a real
local HTTPS server, a real projected-token file. The last tests run the installed helper.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docker_credential_quayfed import broker, log, sources, transport
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources import SourceContext, auto
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.support.oidc_provider import KubeIssuer, OIDCProvider
from tests.support.requests import request_here
from tests.test_integration import ROBOT, Setup, answer_of, base_settings
from tests.test_sources import registry_config

#: every variable a detector reads: cleared before each test (the suite itself may run in CI)
MARKERS = (
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_JOB",
    "GITLAB_CI",
    "CI_PROJECT_PATH",
    "CI_JOB_ID",
    "QUAY_ID_TOKEN",
    "BUILDKITE",
    "BUILDKITE_JOB_ID",
    "BUILDKITE_PIPELINE_SLUG",
    "CIRCLECI",
    "CIRCLE_OIDC_TOKEN_V2",
    "CIRCLE_PROJECT_REPONAME",
    "CIRCLE_WORKFLOW_JOB_ID",
    "CIRCLE_BUILD_NUM",
    "KUBERNETES_SERVICE_HOST",
)


def token_for(platform: str) -> str:
    return fake_jwt({"iss": f"https://{platform}.example", "sub": platform, "exp": 2_000_000_000})


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MARKERS:
        monkeypatch.delenv(name, raising=False)
    # The default projected-token path of this machine must not decide these tests.
    assert not os.path.exists(auto.DEFAULT_TOKEN_FILE)


def fetch(registry: RegistryConfig, session: httpx.Client | None = None) -> str:
    client = session or httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(599)))
    with client:
        context = SourceContext(registry, client, transport.Deadline(10), request_here())
        return sources.for_registry(registry).fetch(context)


def fake_buildkite_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int = 0
) -> Path:
    """``buildkite-agent`` on PATH: records its argv, prints the Buildkite token."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "agent-argv"
    agent = bin_dir / "buildkite-agent"
    agent.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"print({token_for('buildkite')!r})\nsys.exit({exit_code})\n"
    )
    agent.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return argv_file


# -- each platform, detected --------------------------------------------------------------------
def test_gitlab_reads_the_id_tokens_variable_default_quay_id_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("QUAY_ID_TOKEN", token_for("gitlab"))

    assert fetch(registry_config("auto")) == token_for("gitlab")
    assert fetch(registry_config("gitlab")) == token_for("gitlab")


def test_gitlab_reads_the_variable_token_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("QUAY_ID_TOKEN", token_for("wrong"))
    monkeypatch.setenv("REGISTRY_JWT", token_for("gitlab"))

    assert fetch(registry_config("auto", token_env="REGISTRY_JWT")) == token_for("gitlab")


def test_gitlab_without_its_variable_says_what_to_add_to_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")

    with pytest.raises(SecretError) as caught:
        fetch(registry_config("auto"))

    assert "QUAY_ID_TOKEN is empty or not set" in str(caught.value)
    assert "id_tokens: QUAY_ID_TOKEN" in str(caught.value)


def test_buildkite_runs_the_agent_with_the_audience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv_file = fake_buildkite_agent(tmp_path, monkeypatch)
    monkeypatch.setenv("BUILDKITE", "true")

    assert fetch(registry_config("auto", audience="quay.example.com")) == token_for("buildkite")
    assert json.loads(argv_file.read_text()) == [
        "oidc",
        "request-token",
        "--audience",
        "quay.example.com",
    ]
    assert fetch(registry_config("buildkite")) == token_for("buildkite")
    assert json.loads(argv_file.read_text()) == ["oidc", "request-token"]


def test_buildkite_agent_failing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_buildkite_agent(tmp_path, monkeypatch, exit_code=1)
    monkeypatch.setenv("BUILDKITE", "true")

    with pytest.raises(SecretError) as caught:
        fetch(registry_config("auto"))

    assert "source 'buildkite' (buildkite-agent) exited with status 1" in str(caught.value)
    assert "eyJ" not in str(caught.value)


def test_buildkite_without_the_agent_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDKITE", "true")
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(SecretError, match="buildkite-agent not found"):
        fetch(registry_config("auto"))


def test_circleci_reads_the_v2_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCLECI", "true")
    monkeypatch.setenv("CIRCLE_OIDC_TOKEN_V2", token_for("circleci"))

    assert fetch(registry_config("auto")) == token_for("circleci")
    assert fetch(registry_config("circleci")) == token_for("circleci")


def test_circleci_without_the_token_is_a_circleci_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCLECI", "true")

    with pytest.raises(SecretError, match="CIRCLE_OIDC_TOKEN_V2 is empty or not set"):
        fetch(registry_config("auto"))


def test_kubernetes_reads_the_projected_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_for("kubernetes") + "\n")
    token_file.chmod(0o644)

    assert fetch(registry_config("auto", token_file=str(token_file))) == token_for("kubernetes")


def test_kubernetes_pod_without_a_projected_token_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")

    with pytest.raises(SecretError) as caught:
        fetch(registry_config("auto"))

    assert f"no projected token at {auto.DEFAULT_TOKEN_FILE}" in str(caught.value)
    assert "serviceAccountToken" in str(caught.value)


def test_github_actions_token_from_a_real_https_endpoint(
    test_pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []

    def endpoint(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append((environ.get("HTTP_AUTHORIZATION", ""), environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"value": token_for("github")}).encode()]

    with serve_wsgi(endpoint, pki=test_pki) as server:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{server.url}/token?api-version=2.0")
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runtime-bearer-77aa")
        registry = registry_config("auto", audience="quay.example.com")
        session = transport.client(str(test_pki.ca_cert))

        assert fetch(registry, session) == token_for("github")

    assert seen == [("bearer runtime-bearer-77aa", "api-version=2.0&audience=quay.example.com")]


def test_github_actions_without_id_token_permission_is_a_github_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    with pytest.raises(SecretError, match="id-token: write"):
        fetch(registry_config("auto"))


# -- order, nothing found, debug, identity ------------------------------------------------------
def test_the_first_environment_in_the_documented_order_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_for("kubernetes"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("CIRCLECI", "true")
    monkeypatch.setenv("CIRCLE_OIDC_TOKEN_V2", token_for("circleci"))
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("QUAY_ID_TOKEN", token_for("gitlab"))
    registry = registry_config("auto", token_file=str(token_file))

    assert fetch(registry) == token_for("gitlab")
    monkeypatch.delenv("GITLAB_CI")
    assert fetch(registry) == token_for("circleci")
    monkeypatch.delenv("CIRCLECI")
    assert fetch(registry) == token_for("kubernetes")


def test_no_environment_is_one_line_listing_what_was_checked() -> None:
    with pytest.raises(SecretError) as caught:
        fetch(registry_config("auto"))

    message = str(caught.value)
    assert "\n" not in message
    for checked in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "Kubernetes"):
        assert checked in message
    assert auto.DEFAULT_TOKEN_FILE in message


def test_debug_output_names_the_environment_picked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(log.DEBUG_ENV, "1")
    monkeypatch.setenv("CIRCLECI", "true")
    monkeypatch.setenv("CIRCLE_OIDC_TOKEN_V2", token_for("circleci"))

    fetch(registry_config("auto"))

    assert "source 'auto': CircleCI detected" in capsys.readouterr().err


def test_the_cache_identity_follows_the_detected_platform_and_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A carried JWT (GitLab, CircleCI, a projected token) is keyed by who it names; a job
    whose token is minted on request (GitHub Actions) by the job itself."""
    keys = []
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("QUAY_ID_TOKEN", token_for("gitlab"))
    keys.append(broker.key_for(registry_config("auto"), request_here()))
    assert broker.key_for(registry_config("auto"), request_here()) == keys[0], (
        "stable within one job"
    )
    assert keys[0].principal.subject == "gitlab"
    monkeypatch.setenv("QUAY_ID_TOKEN", token_for("gitlab-next-job"))
    keys.append(broker.key_for(registry_config("auto"), request_here()))
    monkeypatch.delenv("GITLAB_CI")
    monkeypatch.setenv("CIRCLECI", "true")
    monkeypatch.setenv("CIRCLE_OIDC_TOKEN_V2", token_for("circleci"))
    keys.append(broker.key_for(registry_config("auto"), request_here()))
    monkeypatch.delenv("CIRCLECI")
    projected = tmp_path / "token"
    projected.write_text(token_for("kubernetes"))
    keys.append(broker.key_for(registry_config("auto", token_file=str(projected)), request_here()))
    projected.write_text(token_for("another-service-account"))
    keys.append(broker.key_for(registry_config("auto", token_file=str(projected)), request_here()))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_RUN_ID", "7")
    keys.append(broker.key_for(registry_config("auto"), request_here()))
    monkeypatch.setenv("GITHUB_RUN_ID", "8")
    keys.append(broker.key_for(registry_config("auto"), request_here()))

    assert len({key.digest for key in keys}) == len(keys)
    assert keys[2].principal.subject == "circleci" and keys[3].principal.subject == "kubernetes"
    assert "GitHub Actions" in keys[5].principal.subject


# -- the installed helper ---------------------------------------------------------------------
@pytest.fixture
def setup(quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path) -> Iterator[Setup]:
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        **{name: "" for name in MARKERS},
    }
    yield Setup(quay, oidc_provider, tmp_path, env, [])


def federate_gitlab_and_pod(setup: Setup, kube_issuer: KubeIssuer) -> tuple[str, Path]:
    """The robot trusts a GitLab job's subject and a pod's service account; returns the GitLab
    job's token and the pod's projected-token file."""
    gitlab_token = setup.provider.mint("project_path:group/app:ref_type:branch:ref:main")
    setup.secrets.append(gitlab_token)
    token_file = kube_issuer.write_token(setup.directory / "quay-token", namespace="ci", name="bot")
    setup.secrets.append(token_file.read_text())
    setup.quay.add_robot(
        ROBOT,
        federation=[
            (setup.provider.issuer, "project_path:group/app:ref_type:branch:ref:main"),
            (kube_issuer.issuer, "system:serviceaccount:ci:bot"),
        ],
    )
    setup.configure(**base_settings(setup), source="auto", token_file=str(token_file))
    return gitlab_token, token_file


def test_get_with_auto_in_a_gitlab_job_and_in_a_pod(setup: Setup, kube_issuer: KubeIssuer) -> None:
    gitlab_token, _ = federate_gitlab_and_pod(setup, kube_issuer)
    debug = {log.DEBUG_ENV: "1"}

    in_gitlab = setup.get(GITLAB_CI="true", CI_JOB_ID="9001", QUAY_ID_TOKEN=gitlab_token, **debug)
    assert answer_of(in_gitlab)["Username"] == ROBOT
    assert "source 'auto': GitLab CI detected" in in_gitlab.stderr
    # The same config in a pod (a machine, hence a cache, of its own): the projected token.
    pod_cache = str(setup.directory / "pod-cache")
    in_pod = setup.get(
        KUBERNETES_SERVICE_HOST="10.96.0.1", DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR=pod_cache, **debug
    )
    assert answer_of(in_pod)["Username"] == ROBOT
    assert "source 'auto': Kubernetes detected" in in_pod.stderr
    assert setup.exchanges() == 2

    # Without token_file and outside any job: one line saying what was checked.
    setup.configure(**base_settings(setup), source="auto")
    nowhere = run_helper("get", setup.key, env=setup.env)
    setup.assert_no_secret(nowhere)
    assert nowhere.returncode == 1
    assert len(nowhere.stderr.strip().splitlines()) == 1
    assert "recognised no environment" in nowhere.stderr


def test_a_token_minted_in_one_environment_is_not_served_in_another(
    setup: Setup, kube_issuer: KubeIssuer
) -> None:
    gitlab_token, _ = federate_gitlab_and_pod(setup, kube_issuer)
    assert answer_of(setup.get(GITLAB_CI="true", CI_JOB_ID="9001", QUAY_ID_TOKEN=gitlab_token))

    in_pod = setup.get(KUBERNETES_SERVICE_HOST="10.96.0.1", **{log.DEBUG_ENV: "1"})

    assert answer_of(in_pod)["Username"] == ROBOT
    assert "source 'auto': Kubernetes detected" in in_pod.stderr
    assert setup.exchanges() == 2
