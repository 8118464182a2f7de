"""Regression tests for the hostile-server and hostile-file defects, through the installed helper.

Each test reproduces one defect found by probing: slow-drip servers, unbounded reads, FIFOs,
lock waiters, refresh budgets, expired robot tokens, cleartext, erase by prefix, cache files
trusted too far, and the smaller ones; plus the negative cache that makes repeated failures fast.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from docker_credential_quayfed import fastpath
from docker_credential_quayfed.cache import TokenCache, encode_token, robot_token_from_jwt
from docker_credential_quayfed.identity import Principal, credential_key
from docker_credential_quayfed.protocol import NOT_FOUND
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.helper_process import Result, run_helper
from tests.jwt_factory import fake_jwt
from tests.test_integration import PASSWORD_ENV, ROBOT, Setup, answer_of, password_setup
from tests.test_integration import setup as setup  # the fixture, used by name

HOST = "quay.example.test"


def timed_get(env: dict[str, str], key: str = HOST) -> tuple[Result, float]:
    started = time.monotonic()
    result = run_helper("get", key, env=env, timeout=120)
    return result, time.monotonic() - started


def write_config(path: Path, table: dict[str, Any], key: str = HOST) -> None:
    lines = [f"[registries.{json.dumps(key)}]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
    path.write_text("\n".join(lines) + "\n")


def robot_jwt(seconds_left: float, lifetime: float = 3600, **extra: str) -> str:
    now = time.time()
    return fake_jwt(
        {"iss": "quay", "sub": ROBOT, "iat": int(now + seconds_left - lifetime),
         "exp": int(now + seconds_left), **extra}
    )  # fmt: skip


def cache_token(env: dict[str, str], key: str, seconds_left: float) -> str:
    """Store a robot token with ``seconds_left`` to live through the protocol's own store."""
    token = robot_jwt(seconds_left)
    payload = json.dumps({"ServerURL": key, "Username": ROBOT, "Secret": token})
    stored = run_helper("store", payload, env=env)
    assert stored.returncode == 0, stored
    return token


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        "QUAYFED_HARDENING_PASSWORD": "hardening-password-1f2e",
    }


# -- a server that drips -------------------------------------------------------------------------
@pytest.fixture
def drip_server(test_pki: TestPKI) -> Iterator[str]:
    """Answers 200 with a body that arrives one byte every 4 s (per-read timeouts never fire)."""
    stop = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])

        def drip() -> Iterator[bytes]:
            for char in b'{"token_endpoint": "x", "token": "x"}':
                if stop.wait(4):
                    return
                yield bytes([char])

        return drip()

    server = serve_wsgi(app, pki=test_pki)
    try:
        yield server.url
    finally:
        stop.set()
        server.close()


def drip_config(env: dict[str, str], url: str, ca: Path) -> None:
    write_config(
        Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]),
        {
            "robot": ROBOT,
            "issuer": url,
            "source": "password",
            "client_id": "c",
            "username": "jdoe",
            "password_env": "QUAYFED_HARDENING_PASSWORD",
            "quay_url": url,
            "ca_bundle": str(ca),
            # Longer than the drip's pause, so no single read ever times out.
            "timeout": 5,
        },
    )


def test_a_dripping_server_cannot_outlast_the_timeout(
    env: dict[str, str], drip_server: str, quay_ca: Path
) -> None:
    drip_config(env, drip_server, quay_ca)
    result, elapsed = timed_get(env)
    assert result.stdout.strip() == NOT_FOUND
    assert "timed out" in result.stderr
    assert elapsed <= 5 + 1, f"get took {elapsed:.1f}s with timeout = 5"


def test_a_dripping_server_cannot_delay_a_valid_cached_token(
    env: dict[str, str], drip_server: str, quay_ca: Path
) -> None:
    drip_config(env, drip_server, quay_ca)
    token = cache_token(env, HOST, seconds_left=200)  # inside the refresh margin: refresh due
    result, elapsed = timed_get(env)
    assert answer_of(result)["Secret"] == token
    assert elapsed <= 5 + 1


# -- unbounded reads and FIFOs -------------------------------------------------------------------
def test_a_command_printing_forever_is_cut_off(env: dict[str, str], tmp_path: Path) -> None:
    write_config(
        Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]),
        {"robot": ROBOT, "issuer": "https://127.0.0.1:9", "source": "password",
         "client_id": "c", "username": "u", "password_command": "yes", "timeout": 5},
    )  # fmt: skip
    result, elapsed = timed_get(env)
    assert result.stdout.strip() == NOT_FOUND
    assert "printed more than" in result.stderr
    assert elapsed < 5


def test_a_config_that_is_a_device_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    link = tmp_path / "config.toml"
    link.symlink_to("/dev/zero")
    for action, stdin in (("get", HOST), ("list", "")):
        result = run_helper(action, stdin, env=env, timeout=20)
        assert result.returncode == 1
        assert "is a device, not a regular file" in result.stderr + result.stdout


@pytest.mark.parametrize("which", ["config", "token_file", "snapshot", "ca_bundle"])
def test_a_fifo_is_refused_at_once(env: dict[str, str], tmp_path: Path, which: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    config = Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    table: dict[str, Any] = {
        "robot": ROBOT,
        "issuer": "https://127.0.0.1:9",
        "source": "file",
        "token_file": str(fifo if which == "token_file" else tmp_path / "none"),
        "timeout": 3,
    }
    if which == "ca_bundle":
        table["ca_bundle"] = str(fifo)
    if which == "config":
        config.symlink_to(fifo)
    else:
        write_config(config, table)
    if which == "snapshot":
        cache_dir = Path(env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])
        cache_dir.mkdir(mode=0o700)
        os.mkfifo(cache_dir / fastpath.SNAPSHOT_NAME, 0o600)
    result, elapsed = timed_get(env)
    assert elapsed < 3, f"{which}: get took {elapsed:.1f}s"
    assert result.stdout.strip() == NOT_FOUND
    assert "Traceback" not in result.stderr
    if which in ("config", "ca_bundle"):
        assert "is a FIFO, not a regular file" in result.stderr
    if which == "token_file":
        assert "is a FIFO" in result.stderr
    listed = run_helper("list", "", env=env, timeout=10)
    assert "Traceback" not in listed.stderr


# -- lock waiters and the budget of a refresh ----------------------------------------------------
def test_waiters_serve_a_valid_cached_token_instead_of_queueing(setup: Setup) -> None:
    password_setup(setup, timeout=25)
    token = cache_token(setup.env, setup.key, seconds_left=200)
    setup.quay.inject_fault("hang", count=50, seconds=60)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: timed_get(setup.env, setup.key), range(5)))
    for result, _ in results:
        assert answer_of(result)["Secret"] == token
    times = sorted(elapsed for _, elapsed in results)
    # One refresher spends its 8 s budget; the others stop waiting for it after 1 s, so they
    # answer long before it does (start-up time, loaded or not, shifts all of them alike).
    assert times[-1] < 8 + 6, times
    assert times[-2] < times[-1] - 4, times


def test_the_refresh_never_outlives_the_token_in_hand(setup: Setup) -> None:
    password_setup(setup, timeout=25)
    token = cache_token(setup.env, setup.key, seconds_left=13)
    setup.quay.inject_fault("hang", count=50, seconds=60)
    result, elapsed = timed_get(setup.env, setup.key)
    assert answer_of(result)["Secret"] == token
    assert elapsed < 13 - 5


def test_an_expired_robot_token_from_quay_is_refused(setup: Setup) -> None:
    password_setup(setup)
    token = cache_token(setup.env, setup.key, seconds_left=199)
    setup.quay.set_token_lifetime(-60)
    result = setup.get()
    assert answer_of(result)["Secret"] == token
    assert "expired" in result.stderr
    assert answer_of(setup.get())["Secret"] == token  # the cached one is still the one on disk
    cached = next(setup.cache_dir.glob("*.token")).read_text()
    assert token in cached


# -- fail fast -----------------------------------------------------------------------------------
def test_a_network_failure_is_remembered_briefly_and_erase_forgets_it(setup: Setup) -> None:
    password_setup(setup, issuer="https://127.0.0.1:9/realms/quay")
    first, _ = timed_get(setup.env, setup.key)
    assert "cannot connect" in first.stderr
    second, elapsed = timed_get(setup.env, setup.key)
    assert second.stdout.strip() == NOT_FOUND
    assert "not retrying" in second.stderr and elapsed < 2
    run_helper("erase", setup.key, env=setup.env)
    third, _ = timed_get(setup.env, setup.key)
    assert "not retrying" not in third.stderr and "cannot connect" in third.stderr


def test_a_config_change_forgets_a_remembered_failure(setup: Setup) -> None:
    password_setup(setup, quay_url="https://127.0.0.1:9")
    assert "cannot connect" in setup.get().stderr
    assert "not retrying" in setup.get().stderr
    password_setup(setup)  # fixed: quay_url back to the emulator
    assert answer_of(setup.get())["Username"] == ROBOT


def test_an_auth_failure_is_not_remembered(setup: Setup) -> None:
    password_setup(setup, password_env="QUAYFED_WRONG_PASSWORD")
    wrong = {"QUAYFED_WRONG_PASSWORD": "not-the-password"}
    for _ in range(2):
        result = setup.get(**wrong)
        assert "invalid_grant" in result.stderr and "not retrying" not in result.stderr


# -- cleartext -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"issuer": "http://idp.example.com/realms/q"}, "not https"),
        ({"quay_url": "http://quay.example.com"}, "not https"),
        ({"issuer": "http://127.0.0.1:8080/realms/q"}, "allow_insecure_http"),
        ({"issuer": "https://user:pw@idp.example.com/"}, "user info"),
    ],
)
def test_cleartext_and_user_info_are_refused(
    env: dict[str, str], settings: dict[str, str], expected: str
) -> None:
    table = {"robot": ROBOT, "issuer": "https://idp.example.com", "source": "env",
             "token_env": "X", **settings}  # fmt: skip
    write_config(Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]), table)
    result = run_helper("get", HOST, env=env)
    assert result.stdout.strip() == NOT_FOUND
    assert expected in result.stderr


def test_http_is_allowed_to_loopback_only_when_asked(env: dict[str, str]) -> None:
    table = {"robot": ROBOT, "issuer": "http://127.0.0.1:9/realms/q", "source": "env",
             "token_env": "X", "allow_insecure_http": True}  # fmt: skip
    write_config(Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]), table)
    listed = run_helper("list", "", env=env)
    assert listed.returncode == 0 and HOST in listed.stdout


# -- erase and the cache files -------------------------------------------------------------------
def test_erase_removes_exactly_the_key_given(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    keys = ["localhost", "localhost-mirror", "host:5000", "host_5000"]
    principal = Principal("password", "https://issuer", "jdoe")
    credentials = {key: credential_key(key, ROBOT, "https://quay", principal) for key in keys}
    for key in keys:
        token = robot_token_from_jwt(key, ROBOT, robot_jwt(3000), time.time())
        cache.write(credentials[key], token)
    assert cache.erase("localhost") == 1
    assert cache.erase("host_5000") == 1
    assert cache.read(credentials["localhost-mirror"]) is not None
    assert cache.read(credentials["host:5000"]) is not None
    assert cache.read(credentials["localhost"]) is None


def test_file_names_are_injective() -> None:
    names = {fastpath.token_file_name(k, "0" * 16) for k in ("a:1", "a_1", "a%3a1", "A:1".lower())}
    assert len(names) == 3


@pytest.fixture
def warm(env: dict[str, str]) -> tuple[dict[str, str], Path, str]:
    """A configured key with a fresh token cached and the fast path primed."""
    table = {"robot": ROBOT, "issuer": "https://127.0.0.1:9", "source": "password",
             "client_id": "quay", "username": "ci", "password_env": "QUAYFED_NO_SUCH",
             "timeout": 2}  # fmt: skip
    write_config(Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]), table)
    token = cache_token(env, HOST, seconds_left=3000)
    assert answer_of(run_helper("get", HOST, env=env))["Secret"] == token
    return env, Path(env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"]), token


def test_a_symlinked_cache_directory_is_not_read_through(
    warm: tuple[dict[str, str], Path, str], tmp_path: Path
) -> None:
    env, cache_dir, token = warm
    moved = tmp_path / "elsewhere"
    cache_dir.rename(moved)
    cache_dir.symlink_to(moved)
    result = run_helper("get", HOST, env=env)
    assert token not in result.stdout
    assert result.stdout.strip() == NOT_FOUND


def test_a_token_readable_by_others_is_not_served_and_is_replaced(
    warm: tuple[dict[str, str], Path, str],
) -> None:
    env, cache_dir, token = warm
    token_file = next(cache_dir.glob("*.token"))
    token_file.chmod(0o644)
    cache_dir.chmod(0o755)
    result = run_helper("get", HOST, env=env)
    assert token not in result.stdout
    assert not token_file.exists()  # discarded: it may have been read
    assert cache_dir.stat().st_mode & 0o077 == 0  # and the directory made private again


def test_an_edited_expiry_cannot_revive_an_expired_token(
    warm: tuple[dict[str, str], Path, str],
) -> None:
    env, cache_dir, _ = warm
    token_file = next(cache_dir.glob("*.token"))
    expired = robot_jwt(-100)
    lines = token_file.read_text().split("\n")
    edited = [
        f"expires_at {time.time() + 3000!r}"
        if line.startswith("expires_at")
        else f"token {expired}"
        if line.startswith("token ")
        else line
        for line in lines
    ]
    token_file.write_text("\n".join(edited))
    result = run_helper("get", HOST, env=env)
    assert expired not in result.stdout
    assert result.stdout.strip() == NOT_FOUND


def test_a_snapshot_cannot_point_outside_the_cache(
    warm: tuple[dict[str, str], Path, str], tmp_path: Path
) -> None:
    env, cache_dir, _ = warm
    outside = tmp_path / "other"
    outside.mkdir()
    planted = robot_jwt(3000, planted="yes")
    for prefix in (f"{HOST}-a", fastpath.key_file_prefix(HOST) + "a"):  # old and new name schemes
        (cache_dir / prefix).mkdir()
    (outside / "x.token").write_text(
        encode_token(robot_token_from_jwt(HOST, ROBOT, planted, time.time()))
    )
    snapshot = cache_dir / fastpath.SNAPSHOT_NAME
    lines = snapshot.read_text().split("\n")
    lines = [f"{HOST} a/../../other/x 300.0 {ROBOT}" if line.startswith(HOST) else line
             for line in lines]  # fmt: skip
    snapshot.write_text("\n".join(lines))
    result = run_helper("get", HOST, env=env)
    assert planted not in result.stdout


def test_temp_files_left_by_a_killed_writer_are_cleaned(
    warm: tuple[dict[str, str], Path, str],
) -> None:
    env, cache_dir, _ = warm
    old = cache_dir / ".x.token.abc.part"
    young = cache_dir / ".y.token.def.part"
    for part in (old, young):
        part.write_text("half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    cache_token(env, HOST, seconds_left=3000)  # any write tidies the directory
    assert not old.exists() and young.exists()


# -- the smaller ones ----------------------------------------------------------------------------
def test_deeply_nested_json_to_store_is_a_usage_error(env: dict[str, str]) -> None:
    result = run_helper("store", "[" * 100_000, env=env)
    assert result.returncode in (1, 2)
    assert "internal error" not in result.stdout + result.stderr
    assert "store expects JSON" in result.stdout + result.stderr


@pytest.mark.parametrize("server", ["host:99999", "host:0", "evil.example.com\\@127.0.0.1:8443",
                                    "user@127.0.0.1:8443"])  # fmt: skip
def test_ambiguous_registry_names_are_refused(env: dict[str, str], server: str) -> None:
    result = run_helper("get", server, env=env)
    assert result.returncode == 1
    assert "no registry host name" in result.stdout


def test_a_command_whose_background_child_holds_stdout_is_not_a_timeout(
    setup: Setup, tmp_path: Path
) -> None:
    script = tmp_path / "pw.sh"
    script.write_text(f'#!/bin/sh\nsleep 30 &\necho "${PASSWORD_ENV}"\n')
    script.chmod(0o700)
    password_setup(setup, {"password_command": str(script)})
    result, elapsed = timed_get(setup.env, setup.key)
    assert answer_of(result)["Username"] == ROBOT
    assert elapsed < 10


def test_the_command_counts_inside_the_timeout(env: dict[str, str]) -> None:
    write_config(
        Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]),
        {"robot": ROBOT, "issuer": "https://127.0.0.1:9", "source": "password",
         "client_id": "c", "username": "u", "password_command": "sleep 30", "timeout": 3},
    )  # fmt: skip
    result, elapsed = timed_get(env)
    assert result.stdout.strip() == NOT_FOUND
    assert elapsed <= 3 + 1
