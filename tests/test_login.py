"""login, logout and status against the third-party OIDC provider (nanoidp, Keycloak's layout),
through the installed helper: the device code approved over HTTP as a person would, the
browser flow with PKCE and a loopback redirect, refresh-token rotation, revocation, a dead
login, and a pseudo-terminal for the countdown."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed.protocol import NOT_FOUND
from quay_sandbox.quay import QuayEmulator
from tests.helper_process import Result, helper_command, run_helper
from tests.support import leaks, trusting
from tests.support.oidc_provider import OIDCProvider

ROBOT = "quay_federation+person"
CODE_LINE = re.compile(r"open (\S+) and (?:check|enter) the code (\S+)")


@dataclass
class Person:
    """A configuration with source = "device" for the emulator's host, and its directories."""

    quay: QuayEmulator
    provider: OIDCProvider
    env: dict[str, str]

    @property
    def key(self) -> str:
        return self.quay.host

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])

    def login_file(self) -> Path:
        (found,) = self.cache_dir.glob("@login-*.json")
        return found

    def refresh_token(self) -> str:
        token: str = json.loads(self.login_file().read_text())["refresh_token"]
        leaks.known(token, "refresh token")
        return token

    def run(self, *argv: str, stdin: str = "", timeout: float = 60) -> Result:
        result = run_helper(argv[0], stdin, env=self.env, extra_args=argv[1:], timeout=timeout)
        assert "Traceback" not in result.stderr + result.stdout
        assert "eyJ" not in result.stderr
        if argv[0] != "get":  # get's answer is the robot token itself
            assert "eyJ" not in result.stdout
        return result

    def start_login(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*helper_command(), "login", *extra, self.key],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def login(self, username: str = "jdoe") -> str:
        """Run login, approve its code as ``username``; its stdout."""
        process = self.start_login()
        assert process.stderr is not None
        line = process.stderr.readline()
        found = CODE_LINE.search(line)
        assert found, line
        self.provider.approve_device(found.group(1), found.group(2), username)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        said = line + stdout + stderr
        assert "Traceback" not in said
        assert "eyJ" not in said, "a JWT in login's output"
        assert self.refresh_token() not in said, "the refresh token in login's output"
        return stdout


@pytest.fixture
def person(quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path) -> Iterator[Person]:
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
    }
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "jdoe")])
    table = {
        "robot": ROBOT,
        "issuer": oidc_provider.issuer,
        "source": "device",
        "client_id": oidc_provider.public_client,
        "scope": "openid offline_access",
        "quay_url": quay.url,
        "ca_bundle": str(oidc_provider.ca_cert),
    }
    lines = [f"[registries.{json.dumps(quay.host)}]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
    Path(env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).write_text("\n".join(lines) + "\n")
    yield Person(quay, oidc_provider, env)


def exchanges(quay: QuayEmulator) -> int:
    return int(quay.counters_snapshot()["exchanges_succeeded"])


def forget_reusable_jwts(person: Person) -> None:
    for path in person.cache_dir.glob("@jwt-*.jwt"):
        path.unlink()


def test_device_login_keeps_a_private_refresh_token_and_mints_the_robot_token(
    person: Person,
) -> None:
    stdout = person.login()
    assert stdout.startswith(f"Logged in to {person.key} as jdoe; robot {ROBOT} token valid until")
    login_file = person.login_file()
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert exchanges(person.quay) == 1
    answer = json.loads(person.run("get", stdin=person.key).stdout)
    assert answer["Username"] == ROBOT
    assert exchanges(person.quay) == 1, "the robot token minted by login is served from cache"


def test_get_renews_the_login_silently_and_keeps_the_rotated_refresh_token(
    person: Person,
) -> None:
    person.login()
    first = person.refresh_token()
    person.run("erase", stdin=person.key)
    forget_reusable_jwts(person)
    result = person.run("get", stdin=person.key)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["Username"] == ROBOT
    assert result.stderr == ""
    second = person.refresh_token()
    assert second != first, "a public client's refresh token rotates"
    assert exchanges(person.quay) == 2
    # The old one is spent: the issuer refuses it (reuse detection), the new one works.
    reused = httpx.post(
        person.provider.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first,
            "client_id": person.provider.public_client,
        },
        verify=trusting(person.provider.ca_cert),
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_without_a_login_get_says_to_log_in_in_one_line(person: Person) -> None:
    result = person.run("get", stdin=person.key)
    assert (result.returncode, result.stdout.strip()) == (1, NOT_FOUND)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(f"run: docker-credential-quayfed login {person.key}")


def test_a_dead_refresh_token_gives_the_login_line_and_is_forgotten(person: Person) -> None:
    person.login()
    refresh = person.refresh_token()
    revoked = httpx.post(
        f"{person.provider.issuer}/protocol/openid-connect/revoke",
        data={"token": refresh, "client_id": person.provider.public_client},
        verify=trusting(person.provider.ca_cert),
    )
    assert revoked.status_code == 200
    person.run("erase", stdin=person.key)
    forget_reusable_jwts(person)
    result = person.run("get", stdin=person.key)
    assert (result.returncode, result.stdout.strip()) == (1, NOT_FOUND)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no longer accepts the login" in lines[0]
    assert lines[0].endswith(f"run: docker-credential-quayfed login {person.key}")
    assert refresh not in result.stderr
    assert not list(person.cache_dir.glob("@login-*.json")), "a dead login is forgotten"


def test_logout_revokes_at_the_issuer_forgets_and_erases(person: Person) -> None:
    person.login()
    refresh = person.refresh_token()
    result = person.run("logout", person.key)
    assert result.returncode == 0, result
    assert "revoked at the issuer and forgotten" in result.stdout
    assert not list(person.cache_dir.glob("@login-*.json"))
    assert not list(person.cache_dir.glob("*.token"))
    refused = httpx.post(
        person.provider.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": person.provider.public_client,
        },
        verify=trusting(person.provider.ca_cert),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    after = person.run("get", stdin=person.key)
    assert after.stdout.strip() == NOT_FOUND


def test_status_says_who_is_logged_in_and_until_when(person: Person) -> None:
    before = person.run("status")
    assert before.returncode == 1
    assert f"{person.key}: not logged in" in before.stdout
    person.login()
    after = person.run("status", person.key)
    assert after.returncode == 0, after
    line = after.stdout.strip()
    assert line.startswith(f"{person.key}: logged in as jdoe at {person.provider.issuer}")
    assert "login valid until" in line and f"robot {ROBOT} token valid until" in line


def test_a_denied_login_fails_in_one_line(person: Person) -> None:
    process = person.start_login()
    assert process.stderr is not None
    found = CODE_LINE.search(process.stderr.readline())
    assert found
    person.provider.approve_device(found.group(1), found.group(2), deny=True)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("docker-credential-quayfed: ")
    assert "was denied at the issuer" in stderr
    assert "Traceback" not in stderr


def test_browser_login_with_pkce_on_a_loopback_redirect(person: Person, tmp_path: Path) -> None:
    opened = tmp_path / "opened-url"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}.part && mv {opened}.part {opened}\n')
    browser.chmod(0o755)
    person.env["BROWSER"] = str(browser)
    process = person.start_login("--browser")
    deadline = time.monotonic() + 30
    while not opened.exists():
        assert time.monotonic() < deadline, "the browser was never opened"
        time.sleep(0.05)
    url = opened.read_text()
    assert "code_challenge_method=S256" in url and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
    landing = person.provider.browser_login(url)
    assert landing.status_code == 200 and "Logged in" in landing.text
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.startswith(f"Logged in to {person.key} as jdoe")
    assert person.refresh_token()


def test_login_on_a_terminal_shows_the_code_and_a_countdown(person: Person) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*helper_command(), "login", person.key],
        env={**os.environ, **person.env, "TERM": "dumb"},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    seen = ""

    def read_until(pattern: str, timeout: float = 30) -> None:
        nonlocal seen
        ends = time.monotonic() + timeout
        while not re.search(pattern, seen):
            assert time.monotonic() < ends, f"no {pattern!r} in {seen!r}"
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(primary, 4096).decode("utf-8", "replace")
                except OSError:  # the terminal closed: the process ended
                    return

    try:
        read_until(r"and check the code \S+")
        found = CODE_LINE.search(seen)
        assert found
        read_until(r"waiting for approval: \d+:\d\d left")
        person.provider.approve_device(found.group(1), found.group(2))
        read_until(r"Logged in to ")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert "Traceback" not in seen
    assert "eyJ" not in seen


def test_login_refuses_a_registry_of_another_source(person: Person, tmp_path: Path) -> None:
    config = Path(person.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    config.write_text(config.read_text().replace('"device"', '"file"') + 'token_file = "/x"\n')
    result = person.run("login", person.key)
    assert result.returncode == 2
    assert 'login is for source = "device"' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_jwts_are_reused_across_robots_of_the_same_login(person: Person) -> None:
    """Two registries on the same issuer and client: one login, one refresh, two robots."""
    second_robot = "quay_federation+other"
    person.quay.add_robot(second_robot, federation=[(person.provider.issuer, "jdoe")])
    config = Path(person.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    first = config.read_text()
    other_key = person.key.replace("127.0.0.1", "localhost")
    assert other_key != person.key
    config.write_text(
        first
        + "\n"
        + first.replace(f'"{person.key}"', f'"{other_key}"', 1).replace(ROBOT, second_robot)
    )
    person.login()
    refresh = person.refresh_token()
    result = person.run("get", stdin=other_key)
    assert json.loads(result.stdout)["Username"] == second_robot, result
    assert person.refresh_token() == refresh, "the JWT of the login was reused: no refresh"
    assert exchanges(person.quay) == 2


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pty and loopback on Linux")


def doctor_steps(person: Person) -> tuple[int, dict[str, dict[str, str]]]:
    result = person.run("doctor", "--json", person.key)
    [report] = json.loads(result.stdout)
    return result.returncode, {step["name"]: step for step in report["steps"]}


def test_doctor_reports_the_login(person: Person) -> None:
    code, steps = doctor_steps(person)
    assert code == 1
    assert steps["login"]["verdict"] == "fail"
    assert steps["login"]["fix"] == f"run: docker-credential-quayfed login {person.key}"
    assert steps["token minted"]["verdict"] == "skip"
    person.login()
    code, steps = doctor_steps(person)
    assert steps["login"]["verdict"] == "ok", steps["login"]
    assert steps["login"]["detail"].startswith("logged in as jdoe ")
    assert "scopes: openid offline_access" in steps["login"]["detail"]
    assert steps["token minted"]["verdict"] == "ok" and steps["Quay exchange"]["verdict"] == "ok"


def _set(person: Person, **settings: str) -> None:
    """Change settings of the person's table (each a quoted TOML string)."""
    config = Path(person.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    lines = [
        line for line in config.read_text().splitlines() if line.split(" = ", 1)[0] not in settings
    ]
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    config.write_text("\n".join(lines) + "\n")


def test_a_refresh_answer_without_the_token_still_keeps_the_rotated_refresh_token(
    person: Person,
) -> None:
    """OIDC lets a refresh answer omit the id_token. The issuer has spent the old refresh
    token by then: the rotated one must be on disk before anything else can fail."""
    _set(person, scope="offline_access", token_type="access_token")  # no openid: no id_token
    person.login()
    first = person.refresh_token()
    person.run("erase", stdin=person.key)
    forget_reusable_jwts(person)
    _set(person, token_type="id_token")  # the refresh answer will lack the configured token
    failed = person.run("get", stdin=person.key)
    assert failed.stdout.strip() == NOT_FOUND
    assert "returned no id_token" in failed.stderr
    rotated = person.refresh_token()
    assert rotated != first, "the rotated refresh token was lost"
    _set(person, token_type="access_token")
    again = person.run("get", stdin=person.key)
    assert json.loads(again.stdout)["Username"] == ROBOT, again
    assert person.refresh_token() != rotated


def test_logout_logs_out_every_registry_that_shares_the_login(person: Person) -> None:
    """A login belongs to an issuer, a client and a person: two registries on it are logged
    out together, their robot tokens and the JWTs kept for reuse with them."""
    second_robot = "quay_federation+other"
    person.quay.add_robot(second_robot, federation=[(person.provider.issuer, "jdoe")])
    config = Path(person.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    first = config.read_text()
    other_key = person.key.replace("127.0.0.1", "localhost")
    config.write_text(
        first
        + "\n"
        + first.replace(f'"{person.key}"', f'"{other_key}"', 1).replace(ROBOT, second_robot)
    )
    person.login()
    assert json.loads(person.run("get", stdin=other_key).stdout)["Username"] == second_robot
    assert len(list(person.cache_dir.glob("*.token"))) == 2

    result = person.run("logout", person.key)
    assert result.returncode == 0, result
    assert person.key in result.stdout and other_key in result.stdout
    assert not list(person.cache_dir.glob("*.token"))
    assert not list(person.cache_dir.glob("@jwt-*.jwt"))
    for key in (person.key, other_key):
        after = person.run("get", stdin=key)
        assert after.stdout.strip() == NOT_FOUND, f"{key} still answered after logout"
        assert f"login {key}" in after.stderr


@contextlib.contextmanager
def a_get_inside_quays_exchange(person: Person) -> Iterator[list[str]]:
    """A get runs (Quay holds its exchange for 3 s) while the body runs; afterwards the list
    holds the get's stdout."""
    person.quay.inject_fault("hang", seconds=3.0)
    refreshing = subprocess.Popen(
        [*helper_command(), "get"],
        env={**os.environ, **person.env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answered: list[str] = []
    try:
        assert refreshing.stdin is not None
        refreshing.stdin.write(person.key)
        refreshing.stdin.close()
        deadline = time.monotonic() + 30
        while person.quay.counters_snapshot()["exchanges_attempted"] < 2:
            assert time.monotonic() < deadline, "the get never reached Quay"
            time.sleep(0.02)
        yield answered
        refreshing.wait(timeout=60)
        assert refreshing.stdout is not None
        answered.append(refreshing.stdout.read())
    finally:
        if refreshing.poll() is None:
            refreshing.kill()
            refreshing.wait()


def test_logout_during_a_refresh_is_not_undone_by_it(person: Person) -> None:
    """A get refreshing while logout ran once wrote a new refresh token, a kept JWT and a
    robot token after logout had said "revoked and forgotten": the next get was a hit and
    status said logged in. Logout now waits for the refresh (it holds the credentials' locks
    and the login's), then forgets what it wrote."""
    person.login()
    assert person.run("erase", stdin=person.key).returncode == 0
    forget_reusable_jwts(person)  # the next get renews the login, then exchanges
    with a_get_inside_quays_exchange(person) as answered:
        # The get is inside Quay's exchange, its login renewed: log out now.
        logout = person.run("logout", person.key)
        assert logout.returncode == 0, logout
    (stdout,) = answered
    assert json.loads(stdout)["Username"] == ROBOT  # the pull under way got its answer
    assert not list(person.cache_dir.glob("@login-*.json"))
    assert not list(person.cache_dir.glob("*.token")), "a robot token outlived the logout"
    assert not list(person.cache_dir.glob("@jwt-*.jwt")), "a kept JWT outlived the logout"
    after = person.run("get", stdin=person.key)
    assert after.stdout.strip() == NOT_FOUND
    status = person.run("status", person.key)
    assert status.returncode == 1 and "not logged in" in status.stdout


@pytest.mark.parametrize("erasing", ["erase", "unconfigure"])
def test_an_erase_during_a_refresh_is_not_undone_by_it(person: Person, erasing: str) -> None:
    """``erase`` (and ``unconfigure``) once removed the tokens at once, and a get (or
    the refresh-ahead child) minting meanwhile wrote its robot token after: the next get was
    a hit on a token the user had erased. The erase now holds the registry's credential locks,
    so it waits for the mint under way and removes what it wrote."""
    person.login()
    assert person.run("erase", stdin=person.key).returncode == 0
    with a_get_inside_quays_exchange(person) as answered:
        # The get is inside Quay's exchange: erase now.
        if erasing == "erase":
            erased = person.run("erase", stdin=person.key)
        else:
            person.env["DOCKER_CONFIG"] = str(person.cache_dir.parent / "docker")
            erased = person.run("unconfigure", "--docker", person.key)
        assert erased.returncode == 0, erased
    (stdout,) = answered
    assert json.loads(stdout)["Username"] == ROBOT  # the pull under way got its answer
    assert not list(person.cache_dir.glob("*.token")), "a robot token outlived the erase"


def test_login_as_another_person_drops_what_the_previous_login_minted(person: Person) -> None:
    """Kept JWTs and robot tokens of every registry sharing the login, as logout drops them."""
    person.quay.add_robot(
        ROBOT,
        federation=[(person.provider.issuer, "jdoe"), (person.provider.issuer, "alice")],
    )
    person.login("jdoe")
    jdoe_files = {p.name for p in person.cache_dir.glob("@jwt-*.jwt")}
    assert jdoe_files and list(person.cache_dir.glob("*.token"))
    said = person.login("alice")
    assert "as alice" in said
    assert not jdoe_files & {p.name for p in person.cache_dir.glob("@jwt-*.jwt")}
    answer = json.loads(person.run("get", stdin=person.key).stdout)
    subjects = {f.subject for f in person.quay.issued_to(answer["Secret"])}
    assert subjects == {"alice"}
