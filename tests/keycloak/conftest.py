"""Fixtures of the Keycloak suite: one real Keycloak for the whole session (``server.py``), the
session's Quay emulator trusting its issuer, and a helper configured for one of its clients.

Without Java or the Keycloak distribution (``$QUAYFED_KEYCLOAK_HOME``, which ``.ci/keycloak.sh``
prepares) the suite is skipped with one line; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pytest

from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import Result, helper_command, run_helper
from tests.keycloak import server
from tests.keycloak.server import ClientKey, Keycloak
from tests.support import leaks
from tests.support.records import record

ROBOT = "quay_federation+rhbk_user"
USERNAME = "jdoe"
#: the ids the realm file gives the user and the service accounts: Keycloak's sub is the id
SUBJECTS = {
    "jdoe": "5b7c1f0e-8d3a-4f55-9a41-2f6f3d9b8c01",
    "quay-ci": "0c7e4d52-31a9-4c1b-8f0e-6a2b9d4e7f11",
    "quay-ci-jwt": "9e1d2c3b-4a5f-4e6d-8c7b-1a2b3c4d5e6f",
    "quay-exchanger": "3f4e5d6c-7b8a-4912-a3b4-c5d6e7f8a9b0",
}
#: seconds an access or ID token of the login client lives: under the helper's one-minute
#: reuse margin, so every JWT the helper needs after a login is minted by a refresh
LOGIN_TOKEN_LIFESPAN = 30
PASSWORD_ENV = "KEYCLOAK_TEST_PASSWORD"
CLIENT_SECRET_ENV = "KEYCLOAK_TEST_CLIENT_SECRET"
EXCHANGER_SECRET_ENV = "KEYCLOAK_TEST_EXCHANGER_SECRET"

Setting = Union[str, int, bool]

_STARTUP = pytest.StashKey[str]()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str) -> None:
    """In CI a missing piece fails the test; elsewhere it skips it, with one line."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    line = config.stash.get(_STARTUP, None)
    if line is not None:
        terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used Keycloak shows the end of Keycloak's log."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("keycloak")
    if report.failed and isinstance(running, Keycloak):
        report.sections.append(("Keycloak's log, last lines", running.log_tail(40)))


@pytest.fixture(scope="session")
def keycloak_home() -> Path:
    try:
        return server.find_home()
    except server.KeycloakMissing as exc:
        unavailable(f"Keycloak: {exc}")
        raise


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return server.make_client_key(tmp_path_factory.mktemp("keycloak-client-key"))


@pytest.fixture(scope="session")
def keycloak(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    keycloak_home: Path,
    test_pki: TestPKI,
    client_key: ClientKey,
) -> Iterator[Keycloak]:
    """Keycloak on 127.0.0.1 over HTTPS (the session's test CA), realm ``quay`` imported;
    stopped at the end of the session. Its start-up time goes to the terminal summary."""
    values = server.realm_values(client_key, login_token_lifespan=LOGIN_TOKEN_LIFESPAN)
    for name in server.SECRET_VALUES:
        leaks.known(values[name], f"Keycloak realm {name}")
    for name in (USERNAME, *SUBJECTS):
        leaks.user(name)
    try:
        running = server.start(
            keycloak_home,
            tmp_path_factory.mktemp("keycloak"),
            ca_cert=test_pki.ca_cert,
            server_cert=test_pki.server_cert,
            server_key=test_pki.server_key,
            values=values,
        )
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    line = f"Keycloak {running.version}: started in {running.startup_seconds:.1f}s"
    request.config.stash[_STARTUP] = line
    record("keycloak", version=running.version, startup_seconds=running.startup_seconds)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kc_quay(quay: QuayEmulator, keycloak: Keycloak) -> QuayEmulator:
    """The session's Quay emulator (reset), robot ROBOT trusting jdoe and the service accounts
    at Keycloak's issuer, exactly as the walkthrough's federation entries say."""
    quay.add_robot(
        ROBOT,
        federation=[(keycloak.issuer, subject) for subject in SUBJECTS.values()],
        permissions={"quay_federation/*": ["pull"]},
    )
    return quay


@dataclass
class Helper:
    """The installed helper, configured for one registry in a directory of its own."""

    directory: Path
    quay: QuayEmulator
    keycloak: Keycloak
    keycloak_ca: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.quay.host

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    def configure(self, settings: Mapping[str, Setting]) -> None:
        lines = [f'[registries."{self.host}"]']
        merged: dict[str, Setting] = {
            "robot": ROBOT,
            "issuer": self.keycloak.issuer,
            "quay_url": self.quay.url or "",
            "ca_bundle": str(self.keycloak_ca),
            **settings,
        }
        for key, value in merged.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
        (self.directory / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def run(self, action: str, *args: str, stdin: str = "", timeout: float = 90) -> Result:
        return run_helper(action, stdin, env=self.env, timeout=timeout, extra_args=args)

    def get(self) -> Result:
        return self.run("get", stdin=self.host + "\n")


@pytest.fixture
def helper(tmp_path: Path, kc_quay: QuayEmulator, keycloak: Keycloak, test_pki: TestPKI) -> Helper:
    """A helper whose config and cache live in this test's directory; the realm's secrets in
    its environment (never in a file or argv)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        # doctor checks that clients find the helper on PATH: the installed one first
        "PATH": f"{Path(helper_command()[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        PASSWORD_ENV: keycloak.values["JDOE_PASSWORD"],
        CLIENT_SECRET_ENV: keycloak.values["CI_SECRET"],
        EXCHANGER_SECRET_ENV: keycloak.values["EXCHANGER_SECRET"],
        # the browser login's opener: the test drives the browser from the printed URL
        "BROWSER": shutil.which("true") or "/bin/true",
    }
    return Helper(tmp_path, kc_quay, keycloak, test_pki.ca_cert, env)


def answer(stdout: str) -> dict[str, str]:
    """A get's JSON answer."""
    import json

    document = json.loads(stdout)
    assert isinstance(document, dict), stdout
    return {str(key): str(value) for key, value in document.items()}
