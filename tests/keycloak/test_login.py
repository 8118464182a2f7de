"""A person's login at a real Keycloak: the device code approved on Keycloak's own pages, and
the browser login (PKCE on a loopback redirect), both in a real headless chromium; then the
rotated refresh tokens, and logout, after which Keycloak itself refuses the login."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed import logins
from quay_sandbox.quay import Federated, QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import helper_command
from tests.keycloak.browser import Browser, BrowserMissing, find_binaries, sign_in_to_keycloak
from tests.keycloak.conftest import (
    LOGIN_TOKEN_LIFESPAN,
    ROBOT,
    SUBJECTS,
    USERNAME,
    Helper,
    answer,
    unavailable,
)
from tests.keycloak.server import Keycloak
from tests.support import leaks

pytestmark = pytest.mark.keycloak

DEVICE_LINE = re.compile(r"open (\S+) and (?:check|enter) the code (\S+)")
BROWSER_LINE = re.compile(r"if none opens, visit: (\S+)")
LOGIN_DEADLINE = 120
#: a login the helper lacks is "not found" for clients (they go anonymous), and a line on stderr
NOT_FOUND = "credentials not found in native keychain"


@pytest.fixture
def browser(tmp_path: Path, test_pki: TestPKI) -> Iterator[Browser]:
    try:
        find_binaries()
    except BrowserMissing as exc:
        unavailable(f"browser: {exc}")
    with Browser(tmp_path / "browser", test_pki.server_cert) as running:
        yield running


@pytest.fixture
def login_helper(helper: Helper) -> Helper:
    helper.configure(
        {
            "source": "device",
            "client_id": "quay-login",
            "scope": "openid",
            "refresh_ahead": False,
            "on_failure": "error",
        }
    )
    return helper


def start_login(helper: Helper, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*helper_command(), "login", *args, helper.host],
        env={**helper.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_login(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=LOGIN_DEADLINE)
    leaks.observe(stdout + stderr, "login output")
    assert process.returncode == 0, stdout + stderr
    return stdout


def device_login(helper: Helper, browser: Browser, keycloak: Keycloak) -> str:
    """``login HOST``; the code approved as a person does: Keycloak's page from the printed
    link, sign in as jdoe, 'Yes' on Keycloak's consent page."""
    process = start_login(helper)
    try:
        assert process.stderr is not None
        shown = DEVICE_LINE.search(process.stderr.readline())
        assert shown, "login printed no code"
        link, user_code = shown.groups()
        assert link.startswith(f"{keycloak.issuer}/device?user_code="), link
        assert link.endswith(user_code)
        browser.open(link)
        sign_in_to_keycloak(browser, USERNAME, keycloak.values["JDOE_PASSWORD"])
        browser.wait_for_text("Do you grant these access privileges?")
        browser.click("#kc-login")  # Keycloak's "Yes"
        browser.wait_for_text("Device Login Successful")
        return finish_login(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def browser_login(helper: Helper, browser: Browser, keycloak: Keycloak) -> str:
    """``login --browser HOST``: Keycloak's login page from the printed link, sign in as jdoe;
    Keycloak redirects to the helper's loopback listener, whose page says it is done."""
    process = start_login(helper, "--browser")
    try:
        assert process.stderr is not None
        shown = BROWSER_LINE.search(process.stderr.readline())
        assert shown, "login --browser printed no link"
        link = shown.group(1)
        assert link.startswith(f"{keycloak.issuer}/protocol/openid-connect/auth?"), link
        assert "code_challenge_method=S256" in link
        browser.open(link)
        sign_in_to_keycloak(browser, USERNAME, keycloak.values["JDOE_PASSWORD"])
        browser.wait_for_text("Logged in. You can close this tab")
        assert browser.url.startswith("http://127.0.0.1:"), browser.url
        return finish_login(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stored_refresh_token(helper: Helper) -> str:
    files = list(helper.cache_dir.glob("@login-*.json"))
    assert len(files) == 1, files
    token = json.loads(files[0].read_text())["refresh_token"]
    assert isinstance(token, str) and token
    leaks.known(token, "Keycloak refresh token")
    return token


def keycloak_refresh(keycloak: Keycloak, ca: Path, refresh_token: str) -> httpx.Response:
    """The refresh grant at Keycloak's token endpoint, as the login's public client."""
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context, timeout=30) as client:
        return client.post(
            keycloak.token_endpoint,
            data={
                "grant_type": "refresh_token",
                "client_id": "quay-login",
                "refresh_token": refresh_token,
            },
        )


def test_device_login_approved_on_keycloaks_pages(
    login_helper: Helper, browser: Browser, keycloak: Keycloak, kc_quay: QuayEmulator
) -> None:
    before = login_helper.get()
    assert before.returncode == 1 and NOT_FOUND in before.stdout
    assert f"run: docker-credential-quayfed login {login_helper.host}" in before.stderr

    said = device_login(login_helper, browser, keycloak)
    assert said.startswith(f"Logged in to {login_helper.host} as {USERNAME}"), said
    got = login_helper.get()
    assert got.returncode == 0, got.stdout + got.stderr
    assert kc_quay.issued_to(answer(got.stdout)["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS[USERNAME])
    }
    assert kc_quay.counters_snapshot()["exchanges_succeeded"] == 1, "login minted the token"


def test_browser_login_with_pkce(
    login_helper: Helper, browser: Browser, keycloak: Keycloak, kc_quay: QuayEmulator
) -> None:
    said = browser_login(login_helper, browser, keycloak)
    assert said.startswith(f"Logged in to {login_helper.host} as {USERNAME}"), said
    got = login_helper.get()
    assert got.returncode == 0, got.stdout + got.stderr
    assert kc_quay.issued_to(answer(got.stdout)["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS[USERNAME])
    }


def test_refresh_rotation_keeps_the_newest_refresh_token(
    login_helper: Helper,
    browser: Browser,
    keycloak: Keycloak,
    kc_quay: QuayEmulator,
    test_pki: TestPKI,
) -> None:
    """The realm rotates refresh tokens and allows no reuse; the login client's JWTs live
    LOGIN_TOKEN_LIFESPAN s, under the helper's one-minute reuse margin, so each new robot token
    needs a refresh. Three refreshes (each after an erase, as docker logout sends it), each
    keeping the newest refresh token; then an old one, sent by hand, is refused by Keycloak,
    which ends the whole session for the reuse, and the helper says to log in again."""
    assert LOGIN_TOKEN_LIFESPAN < logins.JWT_REUSE_MARGIN
    browser_login(login_helper, browser, keycloak)
    seen = [stored_refresh_token(login_helper)]
    for _ in range(3):
        erased = login_helper.run("erase", stdin=login_helper.host + "\n")
        assert erased.returncode == 0, erased.stdout + erased.stderr
        got = login_helper.get()
        assert got.returncode == 0, got.stdout + got.stderr
        secret = answer(got.stdout)["Secret"]
        assert kc_quay.issued_to(secret) == {Federated(ROBOT, keycloak.issuer, SUBJECTS[USERNAME])}
        seen.append(stored_refresh_token(login_helper))
    assert len(set(seen)) == 4, "every refresh rotated the refresh token, and it was kept"
    assert kc_quay.counters_snapshot()["exchanges_succeeded"] == 4

    # the refresh token spent last: Keycloak refuses its reuse, and ends the session for it
    reused = keycloak_refresh(keycloak, test_pki.ca_cert, seen[-2])
    assert reused.status_code == 400, reused.text
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": "Maximum allowed refresh token reuse exceeded",
    }
    newest = keycloak_refresh(keycloak, test_pki.ca_cert, seen[-1])
    assert newest.status_code == 400 and newest.json()["error"] == "invalid_grant"
    login_helper.run("erase", stdin=login_helper.host + "\n")
    ended = login_helper.get()
    assert ended.returncode == 1 and NOT_FOUND in ended.stdout
    assert "no longer accepts the login" in ended.stderr, ended.stderr
    assert f"run: docker-credential-quayfed login {login_helper.host}" in ended.stderr


def test_logout_revokes_the_refresh_token_at_keycloak(
    login_helper: Helper,
    browser: Browser,
    keycloak: Keycloak,
    kc_quay: QuayEmulator,
    test_pki: TestPKI,
) -> None:
    browser_login(login_helper, browser, keycloak)
    refresh_token = stored_refresh_token(login_helper)
    logout = login_helper.run("logout", login_helper.host)
    assert logout.returncode == 0, logout.stdout + logout.stderr
    assert "revoked at the issuer" in logout.stdout, logout.stdout
    refused = keycloak_refresh(keycloak, test_pki.ca_cert, refresh_token)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    after = login_helper.get()
    assert after.returncode == 1 and NOT_FOUND in after.stdout
    assert f"run: docker-credential-quayfed login {login_helper.host}" in after.stderr
