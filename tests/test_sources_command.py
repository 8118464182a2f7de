"""source = "command": a real token_command process prints the JWT.

Each case runs a real script (no shell, no stdin, bounded in time and output); the last one
runs the installed helper end to end against nanoidp's key and the Quay emulator.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed import sources, transport
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import ConfigError, SecretError
from docker_credential_quayfed.sources import SourceContext
from docker_credential_quayfed.sources.command import CommandTokenSource
from quay_sandbox.quay import QuayEmulator
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.support.oidc_provider import OIDCProvider
from tests.support.requests import request_here
from tests.test_integration import ROBOT, Setup, answer_of, base_settings
from tests.test_sources import registry_config

TOKEN = fake_jwt({"iss": "https://idp.example.com", "sub": "build-7", "exp": 2_000_000_000})


def script(tmp_path: Path, body: str, name: str = "print-token") -> Path:
    """An executable Python script at ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(0o700)
    return path


def fetch(registry: RegistryConfig, seconds: float = 10) -> str:
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(599))) as session:
        context = SourceContext(registry, session, transport.Deadline(seconds), request_here())
        return sources.for_registry(registry).fetch(context)


def test_the_command_is_a_declared_source_needing_token_command() -> None:
    assert sources.BY_NAME["command"] is CommandTokenSource
    with pytest.raises(ConfigError, match="missing token_command"):
        registry_config("command")


def test_prints_the_token_split_like_a_shell_without_one(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv"
    printer = script(
        tmp_path,
        f"open({str(argv_file)!r}, 'w').write(repr(sys.argv[1:]))\n"
        f"assert sys.stdin.read() == ''\n"
        f"print({TOKEN!r})",
    )
    command = f"{shlex.quote(str(printer))} --audience 'quay example' $HOME ';' '|'"

    token = fetch(registry_config("command", token_command=command))

    assert token == TOKEN
    # Quoted words stay one argument; $HOME, ';' and '|' reach it as text (no shell).
    assert argv_file.read_text() == repr(["--audience", "quay example", "$HOME", ";", "|"])


def test_a_failing_command_is_one_line_without_its_stderr(tmp_path: Path) -> None:
    failing = script(
        tmp_path, "sys.stderr.write('stderr-secret-9f2 ' * 3)\nsys.exit(3)", "failing-cli"
    )

    with pytest.raises(SecretError) as caught:
        fetch(registry_config("command", token_command=str(failing)))

    message = str(caught.value)
    assert "token_command" in message and "exited with status 3" in message
    assert "stderr-secret-9f2" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("pass", "printed nothing"),
        ("print('Logged in as build-bot')\nprint('eyJhbGciOi.e30.c2ln')", "more than the token"),
        ("sys.stdout.write('x' * (70 << 10))", "more than 64 KiB"),
    ],
    ids=["nothing", "banner-and-token", "too-much"],
)
def test_output_that_is_not_one_token_is_refused(tmp_path: Path, body: str, expected: str) -> None:
    printer = script(tmp_path, body)

    with pytest.raises(SecretError, match=expected) as caught:
        fetch(registry_config("command", token_command=str(printer)))

    assert "eyJ" not in str(caught.value)


def test_a_hanging_command_is_killed_within_the_deadline(tmp_path: Path) -> None:
    hanging = script(tmp_path, "time.sleep(60)", "hanging-cli")

    started = time.monotonic()
    with pytest.raises(SecretError, match="did not finish"):
        fetch(registry_config("command", token_command=str(hanging)), seconds=1.5)

    assert time.monotonic() - started < 3.0


def test_a_missing_command_names_it(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-cli"

    with pytest.raises(SecretError, match=r"token_command: .*no-such-cli not found"):
        fetch(registry_config("command", token_command=f"{absent} token"))


def test_get_with_a_token_command_end_to_end(
    quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    token = oidc_provider.mint("ci-runner-42", audience="quay")
    token_file = tmp_path / "minted"
    token_file.write_text(token)
    printer = script(tmp_path, f"print(open({str(token_file)!r}).read())", "idp-cli")
    setup = Setup(
        quay,
        oidc_provider,
        tmp_path,
        {
            "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
            "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        },
        [token],
    )
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "ci-runner-42")])
    setup.configure(**base_settings(setup), source="command", token_command=f"{printer} --quiet")

    answer = answer_of(setup.get())

    assert answer["Username"] == ROBOT
    assert setup.exchanges() == 1
    # A second get runs the command to learn who it names, and the same identity is served
    # from the cache without another exchange.
    assert answer_of(setup.get())["Secret"] == answer["Secret"]
    assert setup.exchanges() == 1
    # Once the command prints something that names nobody, nothing is served from the cache.
    token_file.write_text("not-a-token")
    refused = setup.get()
    assert refused.returncode == 1 and answer["Secret"] not in refused.stdout
    assert "not a JWT" in refused.stderr
    assert run_helper("erase", setup.key, env=setup.env).returncode == 0
