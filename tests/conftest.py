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
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI, make_test_pki
from tests.support.oidc_provider import KubeIssuer, NanoidpServers, OIDCProvider, start_nanoidp


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
    return _nanoidp.provider


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
