"""No control character from others (claims, server text) reaches a terminal or a log raw."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_credential_quayfed import protocol, urls
from docker_credential_quayfed.errors import QuayfedError
from docker_credential_quayfed.text import clipped, printable
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.test_transport import recording_server

HOST = "quay.example.test"
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x9b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("plain text", "plain text"), (HOSTILE, SHOWN), ("tab\there", "tab\\there"),
     ("\u202eevil", "\\u202eevil"), ("caf\u00e9 \\x1b", "caf\u00e9 \\x1b")],
)  # fmt: skip
def test_printable_escapes_only_what_a_terminal_would_act_on(value: str, expected: str) -> None:
    assert printable(value) == expected


@pytest.mark.parametrize("value", ["", "x" * 40, "\x1b" * 40, HOSTILE * 9, "a\x07" * 30])
def test_clipped_escapes_first_then_cuts_to_the_limit(value: str) -> None:
    shown = clipped(value, 40)
    assert len(shown) <= 40 and shown.isprintable()
    assert shown == printable(value) or shown == printable(value)[:37] + "..."


def test_a_url_or_host_of_control_characters_is_shown_within_its_limit() -> None:
    """Escaped after the cut, 100 ESCs became 400 characters in a one-line message."""
    url = "0" * 33 + "\x1b" * 32  # what the fuzzer sent as a discovery document's endpoint
    refused = urls.refusal(url, allow_http=False)
    assert refused is not None
    assert len(printable(refused[0])) <= urls.SHOWN_LIMIT + len(" has no host")
    assert refused[0].isprintable()
    with pytest.raises(QuayfedError) as raised:
        protocol.registry_key("\x1b" * 200)
    assert len(raised.value.problem) <= 120 and raised.value.problem.isprintable()


@pytest.fixture
def quay_answering_text() -> Iterator[str]:
    """A loopback 'Quay' whose exchange answers 400 with control characters in its message."""
    body = json.dumps({"message": f"Token does not match robot {HOSTILE}"}).encode()
    with recording_server(400, body) as (url, _):
        yield url


def helper_env(tmp_path: Path, quay_url: str, subject: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[registries."{HOST}"]\nrobot = "org+bot"\n'
        'issuer = "https://sso.example.test/realms/quay"\n'
        'source = "env"\ntoken_env = "QUAYFED_TEST_JWT"\n'
        f'quay_url = "{quay_url}"\nallow_insecure_http = true\ntimeout = 5\n'
    )
    now = int(time.time())
    token = fake_jwt({"iss": "https://sso.example.test/realms/quay", "sub": subject,
                      "iat": now, "exp": now + 300})  # fmt: skip
    return {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        "QUAYFED_TEST_JWT": token,
    }


def test_server_text_with_control_characters_is_shown_escaped(
    quay_answering_text: str, tmp_path: Path
) -> None:
    result = run_helper("get", HOST, env=helper_env(tmp_path, quay_answering_text, "ci"))

    assert result.stdout.strip() == "credentials not found in native keychain"
    [line] = result.stderr.splitlines()
    assert f"Token does not match robot {SHOWN}" in line
    assert line.isprintable()


def test_a_subject_with_control_characters_is_escaped_in_debug_output(
    quay_answering_text: str, tmp_path: Path
) -> None:
    env = helper_env(tmp_path, quay_answering_text, f"ci{HOSTILE}job")
    env["DOCKER_CREDENTIAL_QUAYFED_DEBUG"] = "1"

    result = run_helper("get", HOST, env=env)

    assert f"sub=ci{SHOWN}job" in result.stderr
    assert all(line.isprintable() for line in result.stderr.splitlines())
