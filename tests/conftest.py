"""Fixtures shared by every test file: a test CA, the nanoidp OIDC provider, a Kubernetes-like
issuer and the Quay emulator, all over TLS.

- ``test_pki`` (session): :class:`~quay_sandbox.tls.TestPKI`; give
  ``test_pki.ca_cert`` to anything that must trust the servers below.
- ``oidc_provider`` (session): :class:`tests.support.oidc_provider.OIDCProvider`, nanoidp in
  its own server process (run by ``$QUAYFED_NANOIDP_PYTHON``, else this interpreter) in
  Keycloak's layout (``.issuer``, ``.token_endpoint``, ``.users``, ``.public_client``,
  ``.confidential_client``/``.confidential_secret``, ``.password_token()``,
  ``.client_credentials_token()``, ``.mint()``).
- ``kube_issuer`` (session): :class:`tests.support.oidc_provider.KubeIssuer` (``.issuer``,
  ``.mint(namespace, name, audience=...)``, ``.write_token(path)``).
- ``quay`` (function): the session's running
  :class:`~quay_sandbox.quay.QuayEmulator` (``.url``, ``.host``,
  ``.federate(robot, issuer, subject)``, ``.add_robot(...)``, ``.inject_fault(...)``,
  ``.counters_snapshot()``, ``.registry_token_cert_path``), trusting ``test_pki``; robots,
  admin tokens, lifetimes, counters and faults are reset before each test.

The whole session runs under the leak recorder (:mod:`tests.support.leaks`): the hooks below
register every secret the fixtures and test-side servers create, hand over each test's captured
stderr and log and the text of every ``QuayfedError``, and fail the session when any of it
holds a secret in any encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_credential_quayfed import errors, log
from quay_sandbox import keys as emulator_keys
from quay_sandbox import quay as emulator_quay
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI, make_test_pki
from tests.support import leaks
from tests.support import oidc_provider as provider_module
from tests.support.oidc_provider import KubeIssuer, NanoidpServers, OIDCProvider, start_nanoidp
from tests.support.records import record

_LEAK_SUMMARY = pytest.StashKey[leaks.Summary]()
_LEAK_PATCHES = pytest.StashKey[pytest.MonkeyPatch]()


# -- the leak recorder's hooks ----------------------------------------------------------------
def _registering(original: Callable[..., str], kind: str) -> Callable[..., str]:
    """``original`` (which returns a secret), with its result registered as ``kind``."""

    def wrapper(*args: Any, **kwargs: Any) -> str:
        secret = original(*args, **kwargs)
        leaks.known(secret, kind)
        return secret

    return wrapper


def _install_leak_hooks(patches: pytest.MonkeyPatch) -> None:
    original_init = errors.QuayfedError.__init__

    def error_init(self: errors.QuayfedError, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        leaks.observe(str(self), f"{type(self).__name__} text")

    patches.setattr(errors.QuayfedError, "__init__", error_init)
    patches.setattr(
        emulator_keys.SigningKey,
        "sign",
        _registering(emulator_keys.SigningKey.sign, "JWT signed by the emulator"),
    )
    patches.setattr(
        provider_module.SigningKey,
        "sign",
        _registering(provider_module.SigningKey.sign, "JWT signed with nanoidp's key"),
    )
    for grant in ("password_token", "client_credentials_token"):
        method = getattr(OIDCProvider, grant)
        patches.setattr(OIDCProvider, grant, _registering(method, "JWT issued by nanoidp"))
    parse_basic_auth = emulator_quay.parse_basic_auth

    def basic_auth(header: str) -> tuple[tuple[str, str] | None, str | None]:
        # The OIDC JWTs nanoidp issued to the helper reach the test process only here; other
        # passwords tests send the emulator are deliberate junk ("not-a-jwt"), not secrets.
        credentials, problem = parse_basic_auth(header)
        if credentials is not None and leaks.JWT_PATTERN.fullmatch(credentials[1]):
            leaks.user(credentials[0])
            leaks.known(credentials[1], "JWT received by the Quay emulator")
        return credentials, problem

    patches.setattr(emulator_quay, "parse_basic_auth", basic_auth)
    add_robot = QuayEmulator.add_robot
    add_admin_token = QuayEmulator.add_admin_token

    def robot(self: QuayEmulator, name: str, *args: Any, **kwargs: Any) -> Any:
        leaks.user(name)
        return add_robot(self, name, *args, **kwargs)

    def admin_token(self: QuayEmulator, token: str, *args: Any, **kwargs: Any) -> None:
        leaks.known(token, "Quay OAuth admin token")
        add_admin_token(self, token, *args, **kwargs)

    patches.setattr(QuayEmulator, "add_robot", robot)
    patches.setattr(QuayEmulator, "add_admin_token", admin_token)


def pytest_configure(config: pytest.Config) -> None:
    patches = pytest.MonkeyPatch()
    _install_leak_hooks(patches)
    config.stash[_LEAK_PATCHES] = patches


def pytest_unconfigure(config: pytest.Config) -> None:
    patches = config.stash.get(_LEAK_PATCHES, None)
    if patches is not None:
        patches.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    leaks.set_current_test(item.nodeid)
    yield
    leaks.set_current_test("<session>")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    # Each report carries the sections of the earlier phases too: take this phase's only.
    for title, content in report.sections:
        words = title.split()
        if words[-1:] == [report.when] and ("stderr" in words or "log" in words):
            leaks.observe(content, " ".join(words[:-1]).lower(), test=item.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    summary = leaks.scan()
    session.config.stash[_LEAK_SUMMARY] = summary
    record(
        "leaks",
        bytes_checked=summary.bytes_checked,
        secrets=summary.secrets,
        hits=len(summary.hits),
    )
    if summary.hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    summary = config.stash.get(_LEAK_SUMMARY, None)
    if summary is None:
        return
    if summary.hits:
        terminalreporter.section("secrets found in output", red=True)
        for hit in summary.hits:
            terminalreporter.write_line(hit.describe())
    terminalreporter.write_line(summary.line())


# -- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A throw-away CA and a server certificate for 127.0.0.1, localhost and ::1."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def _nanoidp(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[NanoidpServers]:
    """nanoidp's server process (stopped at the end of the session) and its two layouts."""
    servers = start_nanoidp(tmp_path_factory.mktemp("oidc"), test_pki)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="session")
def oidc_provider(_nanoidp: NanoidpServers) -> OIDCProvider:
    """nanoidp (third-party) over TLS in Keycloak's layout, issuer ``{base}/realms/quay``.

    Users ``jdoe`` and ``alice`` (``sub`` = username), public client ``quayfed-cli`` (password
    grant), confidential client ``quayfed-ci`` (client_credentials, client_secret_basic).
    """
    provider = _nanoidp.provider
    for username, password in provider.users.items():
        leaks.user(username)
        leaks.known(password, f"password of user {username}")
    leaks.user(provider.public_client)
    leaks.user(provider.confidential_client)
    leaks.known(provider.confidential_secret, "client secret")
    return provider


@pytest.fixture(scope="session")
def kube_issuer(_nanoidp: NanoidpServers) -> KubeIssuer:
    """A Kubernetes-like service-account issuer over TLS; nanoidp signs its tokens."""
    return _nanoidp.kube


@pytest.fixture(scope="session")
def _quay_session(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[QuayEmulator]:
    emulator = QuayEmulator(ca_bundle=test_pki.ca_cert)
    server = emulator.start(pki=test_pki)
    emulator.write_registry_token_cert(tmp_path_factory.mktemp("quay") / "registry-token.crt")
    yield emulator
    server.close()


@pytest.fixture
def quay(_quay_session: QuayEmulator) -> QuayEmulator:
    """The running Quay emulator, reset to no robots, no faults and zero counters."""
    _quay_session.reset(config=True)
    return _quay_session


@pytest.fixture
def quay_ca(test_pki: TestPKI) -> Path:
    """The CA file that verifies the emulator's and the providers' TLS certificates."""
    return test_pki.ca_cert


@pytest.fixture(autouse=True)
def fresh_log_state() -> Iterator[None]:
    """Secrets and warnings a test registers stay with that test, as in a process of their own."""
    saved = (set(log._raw), set(log._encoded), set(log._said))
    yield
    for live, kept in zip((log._raw, log._encoded, log._said), saved):
        live.clear()
        live.update(kept)
