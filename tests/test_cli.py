"""The protocol as clients see it, through the installed executable, with no network."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_credential_quayfed import __version__
from docker_credential_quayfed.protocol import NOT_FOUND
from tests.helper_process import Result, run_helper
from tests.jwt_factory import fake_jwt

HOST = "quay.example.test"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on, so any network attempt fails fast."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def helper_env(tmp_path: Path, closed_port: int) -> Iterator[dict[str, str]]:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[registries."{HOST}"]
robot = "org+bot"
issuer = "https://127.0.0.1:{closed_port}/realms/quay"
source = "password"
client_id = "quay"
username = "ci"
password_env = "QUAYFED_TEST_JWT"
quay_url = "https://127.0.0.1:{closed_port}"
timeout = 3
"""
    )
    yield {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
    }


def robot_jwt(lifetime: float = 3600, **extra: object) -> str:
    now = int(time.time())
    return fake_jwt({"iss": "quay", "sub": "org+bot", "iat": now, "exp": now + lifetime, **extra})


def store(env: dict[str, str], secret: str, username: str = "org+bot") -> Result:
    payload = json.dumps({"ServerURL": HOST, "Username": username, "Secret": secret})
    return run_helper("store", payload, env=env)


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stdout.strip().splitlines()) <= 1


def test_version_prints_name_and_version() -> None:
    result = run_helper("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"docker-credential-quayfed {__version__}"


def test_unknown_host_gets_exactly_the_not_found_line(helper_env: dict[str, str]) -> None:
    result = run_helper("get", "other.example.com\n", env=helper_env)
    assert result.returncode == 1
    assert result.stdout.strip() == NOT_FOUND
    assert result.stderr == ""


def test_missing_config_goes_anonymous_with_one_stderr_line(tmp_path: Path) -> None:
    env = {"DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "absent.toml")}
    result = run_helper("get", HOST, env=env)
    assert result.returncode == 1
    assert result.stdout.strip() == NOT_FOUND
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no configuration file" in result.stderr


def test_broken_config_never_breaks_a_pull(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[registries."x"\nrobot=')
    result = run_helper("get", HOST, env={"DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config)})
    assert result.stdout.strip() == NOT_FOUND
    assert "not valid TOML" in result.stderr
    assert_no_traceback(result)


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff\xfe\n", b"a b c", b"\n\n\n"])
def test_garbage_on_stdin_is_one_line_without_traceback(
    helper_env: dict[str, str], garbage: bytes
) -> None:
    for action in ("get", "erase", "store"):
        result = run_helper(action, garbage, env=helper_env)
        assert result.returncode == 1, "the protocol answers bad input with exit 1"
        assert result.stdout.strip()
        assert_no_traceback(result)


def test_store_then_get_serves_from_cache_without_network(helper_env: dict[str, str]) -> None:
    secret = robot_jwt()
    assert store(helper_env, secret).returncode == 0
    result = run_helper("get", f"https://{HOST.upper()}/v2/\n", env=helper_env)
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {"ServerURL": HOST, "Username": "org+bot", "Secret": secret}
    assert secret not in result.stderr
    cache_dir = Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])
    files = list(cache_dir.glob("*.token"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def use_file_source(helper_env: dict[str, str]) -> None:
    """A source that hands over a JWT from a file: the fast path reads who it names there."""
    config = Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    token_file = config.parent / "sa-token"
    claims = {"iss": "https://i", "sub": "system:serviceaccount:ci:builder"}
    token_file.write_text(fake_jwt({**claims, "exp": time.time() + 3600}))
    config.write_text(
        config.read_text().replace(
            'source = "password"\nclient_id = "quay"\nusername = "ci"\n'
            'password_env = "QUAYFED_TEST_JWT"',
            f'source = "file"\ntoken_file = "{token_file}"',
        )
    )
    assert 'source = "file"' in config.read_text()


def test_cache_hit_imports_neither_httpx_nor_jwt(helper_env: dict[str, str]) -> None:
    use_file_source(helper_env)
    assert store(helper_env, robot_jwt()).returncode == 0
    env = {**helper_env, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONVERBOSE": "1"}
    result = run_helper("get", HOST, env=env)
    assert result.returncode == 0
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    # An installed launcher loads fastpath's code by itself; any other start imports it.
    loaded = "/docker_credential_quayfed/__pycache__/fastpath." in result.stderr
    assert loaded or "docker_credential_quayfed.fastpath" in imported
    assert json.loads(result.stdout)["Username"] == "org+bot"
    heavy = {"httpx", "jwt", "httpcore", "tomllib", "tomli", "platformdirs", "json", "typing"}
    assert not {m for m in imported if m.split(".")[0] in heavy}


def test_a_token_found_by_the_full_path_imports_no_http_library(
    helper_env: dict[str, str],
) -> None:
    """No snapshot: the full path parses the config and reads the token under the broker, as
    a get does that waited for another process's refresh; it needs no httpx for that."""
    use_file_source(helper_env)
    assert store(helper_env, robot_jwt()).returncode == 0
    snapshot = Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"]) / "config.snapshot"
    snapshot.unlink(missing_ok=True)
    env = {**helper_env, "PYTHONPROFILEIMPORTTIME": "1"}
    result = run_helper("get", HOST, env=env)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["Username"] == "org+bot"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "docker_credential_quayfed.broker" in imported  # the full path answered
    assert not {m for m in imported if m.split(".")[0] in {"httpx", "httpcore", "jwt"}}


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a-long-lived-robot-password", "never writes long-lived secrets"),
        (fake_jwt({"sub": "org+bot"}), "never writes long-lived secrets"),
        (robot_jwt(lifetime=-60), "expired"),
    ],
)
def test_store_refuses_secrets_without_a_future_expiry(
    helper_env: dict[str, str], secret: str, reason: str
) -> None:
    result = store(helper_env, secret)
    assert result.returncode == 1
    assert reason in result.stdout
    assert secret not in result.stdout + result.stderr
    assert not list(Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"]).glob("*.token"))


def test_store_refuses_another_username(helper_env: dict[str, str]) -> None:
    result = store(helper_env, robot_jwt(), username="someone")
    assert result.returncode == 1
    assert "org+bot" in result.stdout


def test_store_for_unconfigured_host_is_refused(helper_env: dict[str, str]) -> None:
    payload = json.dumps({"ServerURL": "else.example", "Username": "a+b", "Secret": robot_jwt()})
    result = run_helper("store", payload, env=helper_env)
    assert result.returncode == 1
    assert "not configured" in result.stdout


def test_erase_drops_the_cached_token(helper_env: dict[str, str]) -> None:
    assert store(helper_env, robot_jwt()).returncode == 0
    result = run_helper("erase", HOST, env=helper_env)
    assert result.returncode == 0
    assert not list(Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"]).glob("*.token"))
    assert run_helper("erase", "never.example", env=helper_env).returncode == 0


def test_list_names_configured_hosts_and_robots(helper_env: dict[str, str]) -> None:
    result = run_helper("list", env=helper_env)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {HOST: "org+bot"}


def test_failed_refresh_goes_anonymous_with_one_line(helper_env: dict[str, str]) -> None:
    env = {**helper_env, "QUAYFED_TEST_JWT": fake_jwt({"iss": "https://i", "sub": "s"})}
    result = run_helper("get", HOST, env=env, timeout=30)
    assert result.returncode == 1
    assert result.stdout.strip() == NOT_FOUND
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert HOST in lines[0] and "continuing without credentials" in lines[0]
    assert env["QUAYFED_TEST_JWT"] not in result.stderr


def test_on_failure_error_puts_the_reason_on_stdout(helper_env: dict[str, str]) -> None:
    config = Path(helper_env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    config.write_text(config.read_text() + 'on_failure = "error"\n')
    result = run_helper("get", HOST, env=helper_env, timeout=30)
    assert result.returncode == 1
    assert "QUAYFED_TEST_JWT" in result.stdout
    assert_no_traceback(result)


def test_stale_token_is_served_when_refresh_fails(helper_env: dict[str, str]) -> None:
    # 40 s left of a 3600 s token is inside the 300 s margin: a refresh is due and fails.
    now = int(time.time())
    secret = fake_jwt({"sub": "org+bot", "iat": now - 3560, "exp": now + 40})
    assert store(helper_env, secret).returncode == 0
    result = run_helper("get", HOST, env=helper_env, timeout=30)
    assert result.returncode == 0
    assert json.loads(result.stdout)["Secret"] == secret
    assert "serving the cached robot token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert secret not in result.stderr


def test_debug_log_redacts_tokens(helper_env: dict[str, str]) -> None:
    use_file_source(helper_env)
    jwt = robot_jwt()
    assert store(helper_env, jwt).returncode == 0
    env = {**helper_env, "DOCKER_CREDENTIAL_QUAYFED_DEBUG": "1"}
    result = run_helper("get", HOST, env=env)
    assert result.returncode == 0
    assert "answered by the fast path" in result.stderr  # debug takes the fast path too
    assert jwt not in result.stderr


@pytest.mark.parametrize(
    ("action", "stdin", "expected"),
    [
        ("get", b"", "no registry host name on stdin (got '')"),
        ("erase", b"\n\n", "no registry host name on stdin"),
        ("get", b"\x00\xff\x1b[2Jevil\x07\x9b", "no registry host name on stdin"),
        ("get", b"q" * 300_000, "no registry host name on stdin"),
        ("store", b"\x1b]0;owned\x07", "store expects JSON on stdin"),
        ("store", b"[" * 100_000, "store expects JSON on stdin"),
        ("store", b'{"ServerURL": "quay.example.test"}', "store input has no Username"),
    ],
    ids=["get-empty", "erase-blank", "get-binary", "get-oversized", "store-binary",
         "store-nested", "store-incomplete"],
)  # fmt: skip
def test_protocol_errors_answer_on_stdout_with_exit_1(
    helper_env: dict[str, str], action: str, stdin: bytes, expected: str
) -> None:
    result = run_helper(action, stdin, env=helper_env)

    assert result.returncode == 1, result
    [line] = result.stdout.splitlines()
    assert expected in line
    assert line.isprintable()
    assert result.stderr == ""


def test_a_refused_store_answers_on_stdout_with_exit_1(helper_env: dict[str, str]) -> None:
    result = store(helper_env, "opaque-password-without-expiry")

    assert result.returncode == 1
    assert result.stdout.startswith("refusing to store a secret without an expiry")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


def test_control_characters_from_stdin_are_shown_escaped(helper_env: dict[str, str]) -> None:
    result = run_helper("get", b"a b\x1b[31m\x07", env=helper_env)

    assert result.returncode == 1
    assert "a b\\x1b[31m\\x07" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_help_and_usage_errors() -> None:
    assert "get" in run_helper("--help").stdout
    assert run_helper("get", extra_args=("--help",)).returncode == 0
    bad = run_helper("get", extra_args=("extra",))
    assert bad.returncode == 2 and "takes no arguments" in bad.stdout
    unknown = run_helper("frobnicate")
    assert unknown.returncode == 2
    assert_no_traceback(unknown)


def test_unusable_cache_dir_is_one_line(helper_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {**helper_env, "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(blocker / "cache")}
    result = store(env, robot_jwt())
    assert result.returncode == 1
    assert "cache directory" in result.stdout
    assert_no_traceback(result)


def test_a_missing_module_is_one_line_naming_it(helper_env: dict[str, str], tmp_path: Path) -> None:
    """A broken install (a dependency gone): every front end says which module, no traceback."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import sys\n"
        "class Gone:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('tomllib', 'tomli'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Gone())\n"
    )
    env = {**helper_env, "PYTHONPATH": str(hooks)}
    for argv, stdin in ((("list",), ""), (("kubelet",), "{}"), (("status",), "")):
        result = run_helper(argv[0], stdin, env=env, extra_args=argv[1:])
        assert result.returncode == 1, result
        said = (result.stdout + result.stderr).strip().splitlines()
        assert len(said) == 1 and "Traceback" not in result.stderr, result
        assert "the Python module toml" in said[0] and "is missing; reinstall" in said[0]
