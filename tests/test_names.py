"""Robot names: Quay's grammar, enforced in the config and in the kubelet's annotation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_credential_quayfed import kubelet
from docker_credential_quayfed.names import is_robot_name
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.test_kubelet_golden import run_provider


@pytest.mark.parametrize(
    "name",
    ["quay_federation+rhbk_user", "jdoe+bot", "my-org.prod+ci_puller-2", "ab+cd",
     "o" * 127 + "+" + "r" * 127],
)  # fmt: skip
def test_names_quay_can_have_are_robot_names(name: str) -> None:
    assert is_robot_name(name)


@pytest.mark.parametrize(
    "name",
    ["org+bo\x1bt", "org+bot\x07", "org\x00+bot", "org+bot\n", "Org+bot", "org+Bot", "org+bot+x",
     "org+", "+bot", "orgbot", "o+bot", "org+b", "org+_bot", "org+bot_", "org+b__ot",
     "org+bot ", "org+bót", "org/x+bot", "org+" + "r" * 252],
)  # fmt: skip
def test_names_outside_quays_grammar_are_not(name: str) -> None:
    assert not is_robot_name(name)


def test_a_config_robot_with_escape_is_refused_in_one_printable_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[registries."quay.example.test"]\n'
        'robot = "org+bo\\u001b]0;owned\\u0007t"\n'
        'issuer = "https://sso.example.test/realms/quay"\n'
        'source = "env"\ntoken_env = "QUAYFED_TEST_JWT"\n'
    )
    env = {"DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
           "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip

    listed = run_helper("list", env=env)

    assert listed.returncode == 1
    [line] = listed.stdout.splitlines()
    assert "robot = 'org+bo\\x1b]0;owned\\x07t' is not a full robot name" in line
    assert line.isprintable()


def test_a_robot_annotation_with_escape_is_refused_in_one_printable_line(tmp_path: Path) -> None:
    now = int(time.time())
    token = fake_jwt({"iss": "https://k8s.example.test", "sub": "system:serviceaccount:a:b",
                      "iat": now, "exp": now + 600})  # fmt: skip
    request = {
        "apiVersion": kubelet.API_VERSION,
        "kind": kubelet.REQUEST_KIND,
        "image": "quay.example.test/org/app",
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {kubelet.ROBOT_ANNOTATION: "org+bo\x1b[2J\x07t"},
    }

    run = run_provider(
        json.dumps(request),
        args=("--config", str(tmp_path / "absent.toml")),
        env={"DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache")},
    )

    assert run.returncode != 0 and run.stdout == ""
    [line] = run.stderr.splitlines()
    assert "is not a full robot name" in line and "\\x1b[2J\\x07" in line
    assert line.isprintable()
