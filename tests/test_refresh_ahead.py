"""Refresh ahead, through the installed helper: inside a token's refresh-ahead window a get
answers from the cache at once and one detached process mints the next token; its failures go
to the 0600 background log that doctor reports; refresh_ahead = false turns it off."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_credential_quayfed import claims
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.support.realm import PasswordRealm, start_password_realm

ROBOT = "org+ahead"
PASSWORD = "ahead-password-8c2"
LIFETIME = 18  # robot tokens: refresh point 6 s before expiry, window opens 12 s before
MARGIN = 6


class Ahead:
    def __init__(self, realm: PasswordRealm) -> None:
        self.quay = realm.quay
        self.env = realm.env
        self.config = realm.config
        self.cache_dir = realm.cache_dir
        self.exchanges = realm.exchanges

    def get(self) -> str:
        result = run_helper("get", self.quay.host, env=self.env)
        assert result.returncode == 0, result
        assert result.stderr == ""
        secret: str = json.loads(result.stdout)["Secret"]
        return secret

    def wait_for_exchanges(self, count: int, timeout: float = 15) -> None:
        ends = time.monotonic() + timeout
        while self.exchanges() < count:
            assert time.monotonic() < ends, f"still {self.exchanges()} exchanges"
            time.sleep(0.1)

    def wait_for_another_token(self, old: str, timeout: float = 15) -> str:
        """The first answer other than ``old``. Quay counts an exchange before its answer has
        reached the detached refresh, which writes the new token after that."""
        ends = time.monotonic() + timeout
        while True:
            token = self.get()
            if token != old:
                return token
            assert time.monotonic() < ends, "the refreshed token never reached the cache"
            time.sleep(0.1)


def into_the_window(token: str) -> None:
    """Sleep until the token is one second inside its refresh-ahead window."""
    issued = claims.numeric_claim(claims.unverified_claims(token), "iat")
    assert issued is not None
    time.sleep(max(0.0, issued + (LIFETIME - 2 * MARGIN) + 1 - time.time()))


@pytest.fixture
def ahead(test_pki: TestPKI, tmp_path: Path) -> Iterator[Ahead]:
    realm = start_password_realm(
        test_pki,
        tmp_path,
        ROBOT,
        PASSWORD,
        token_lifetime=LIFETIME,
        settings=f"refresh_margin = {MARGIN}\ntimeout = 10\n",
    )
    yield Ahead(realm)
    realm.close()


def test_inside_the_window_the_cached_token_answers_and_one_refresh_follows(
    ahead: Ahead,
) -> None:
    first = ahead.get()
    assert ahead.exchanges() == 1
    into_the_window(first)
    ahead.quay.inject_fault("hang", seconds=2)  # Quay takes 2 s to answer the refresh
    for _ in range(5):
        assert ahead.get() == first, "answered from the cache, not after the refresh"
    assert ahead.exchanges() == 1, "the gets returned while the refresh was still at Quay"
    ahead.wait_for_exchanges(2)
    second = ahead.wait_for_another_token(first)
    assert second != first
    assert ahead.get() == second, "the new token is outside its window: no more refreshes"
    time.sleep(1.0)
    assert ahead.exchanges() == 2, "single flight: one refresh for five gets in the window"


def test_refresh_ahead_false_waits_for_the_refresh_point(ahead: Ahead) -> None:
    ahead.config.write_text(ahead.config.read_text() + "refresh_ahead = false\n")
    first = ahead.get()
    into_the_window(first)
    assert ahead.get() == first
    time.sleep(1.5)
    assert ahead.exchanges() == 1


def test_a_failed_background_refresh_is_logged_privately_and_doctor_says_so(
    ahead: Ahead,
) -> None:
    first = ahead.get()
    into_the_window(first)
    ahead.quay.inject_fault("html500", count=20)
    assert ahead.get() == first
    log = ahead.cache_dir / "background.log"
    ends = time.monotonic() + 15
    while not log.exists():
        assert time.monotonic() < ends, "no background log"
        time.sleep(0.1)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    line = log.read_text().strip().splitlines()[-1]
    assert f"{ahead.quay.host}: refreshing ahead failed: " in line
    assert PASSWORD not in line and "eyJ" not in line
    doctor = run_helper("doctor", env=ahead.env, extra_args=("--json", ahead.quay.host))
    [report] = json.loads(doctor.stdout)
    step = next(s for s in report["steps"] if s["name"] == "background refresh")
    assert step["verdict"] == "warn" and "refreshing ahead failed" in step["detail"]
