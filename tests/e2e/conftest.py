"""Fixtures for the end-to-end suite: real registries, real clients, the installed helper."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.e2e.clients import CLIENTS, ClientSandbox, client_search_path, install_hint
from tests.e2e.deployment import (
    E2E,
    HELPER_EXECUTABLE,
    OTHER_IMAGE,
    PRIVATE_REPO,
    PRIVATE_TAGS,
    PUBLIC_IMAGE,
    ROBOT,
    Deployment,
    seed,
)
from tests.e2e.registry import DistributionRegistry, ServerTLS, TokenAuth
from tests.e2e.works_with import WorksWith
from tests.support.oidc_provider import KubeIssuer, OIDCProvider

QUAY_TOKEN_LIFETIME = 3600
USERNAME = "jdoe"
SERVICE_ACCOUNT = ("ci", "builder")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_binary(name: str) -> None:
    """In CI a missing binary fails the test; locally it skips it."""
    if shutil.which(name, path=client_search_path()) is None:
        message = f"{name} is not installed ({install_hint(name)})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def require_client() -> Callable[[str], None]:
    """`require_client(name)` for a client only some tests use: fails in CI, skips elsewhere."""
    return require_binary


@pytest.fixture(scope="session")
def helper_bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the helper the clients run: the one named by $QUAYFED_E2E_HELPER
    (e.g. the single-file zipapp), else the INSTALLED one (`pip install .` in this venv)."""
    chosen = os.environ.get("QUAYFED_E2E_HELPER", "").strip()
    if chosen:
        target = Path(chosen).resolve()
        if not os.access(target, os.X_OK):
            pytest.fail(f"QUAYFED_E2E_HELPER={chosen} is not an executable file")
        directory = tmp_path_factory.mktemp("helper-bin")
        (directory / HELPER_EXECUTABLE).symlink_to(target)
        return directory
    beside = Path(sys.executable).parent / HELPER_EXECUTABLE
    found = str(beside) if beside.exists() else shutil.which(HELPER_EXECUTABLE)
    if found is None:
        pytest.fail(f"{HELPER_EXECUTABLE} is not installed; run 'pip install -e .'")
    return Path(found).parent


@pytest.fixture(scope="session")
def works_with() -> Iterator[WorksWith]:
    table = WorksWith()
    yield table
    table.write_if_requested()


def quay_token_auth(
    quay: QuayEmulator, registry: DistributionRegistry, root: Path, *, realm_host: str
) -> TokenAuth:
    """The registry's `auth: token:` block for tokens from the emulator's /v2/auth, which
    the realm names `realm_host` (a name of 127.0.0.1, where the emulator listens)."""
    return TokenAuth(
        realm=f"https://{realm_host}:{quay.host.rsplit(':', 1)[1]}/v2/auth",
        service=registry.host,
        issuer=quay.registry_issuer,
        rootcertbundle=quay.write_registry_token_cert(root / "registry-token-signer.pem"),
    )


@pytest.fixture(scope="session")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    test_pki: TestPKI,
    oidc_provider: OIDCProvider,
    kube_issuer: KubeIssuer,
    helper_bin_dir: Path,
) -> Iterator[Deployment]:
    """The third-party OIDC provider (nanoidp) and the Kubernetes-like issuer from
    tests/conftest.py; this suite's own Quay emulator (its robot must outlive each test,
    and the registry's token realm points at it) and two registries."""
    for binary in ("docker-registry", *CLIENTS):
        require_binary(binary)
    root = tmp_path_factory.mktemp("e2e-servers")

    token_file = kube_issuer.write_token(
        root / "serviceaccount-token", namespace=SERVICE_ACCOUNT[0], name=SERVICE_ACCOUNT[1]
    )
    password = oidc_provider.users[USERNAME]

    quay = QuayEmulator(ca_bundle=test_pki.ca_cert, token_lifetime=QUAY_TOKEN_LIFETIME)
    quay.add_robot(
        ROBOT,
        federation=[
            # nanoidp's sub is the username, and the client_id for client_credentials.
            (oidc_provider.issuer, USERNAME),
            (oidc_provider.issuer, oidc_provider.confidential_client),
            (kube_issuer.issuer, "system:serviceaccount:{}:{}".format(*SERVICE_ACCOUNT)),
        ],
        permissions={"quay_federation/*": ["pull", "push"]},
    )
    quay.start(pki=test_pki)

    registry = DistributionRegistry(
        root / "registry", ServerTLS(test_pki.server_cert, test_pki.server_key)
    )
    other = DistributionRegistry(root / "other", tls=None)
    seeder = ClientSandbox(root / "seeder", test_pki.ca_cert, helper_bin_dir)
    try:
        registry.start()
        other.start()
        seed(
            seeder,
            registry,
            {
                **{f"{PRIVATE_REPO}:{tag}": f"private image {tag}\n" for tag in PRIVATE_TAGS},
                PUBLIC_IMAGE: "public image\n",
            },
        )
        seed(seeder, other, {OTHER_IMAGE: "image on another registry\n"})
        # Now behave like Quay's registry: every request needs a token from Quay's /v2/auth.
        registry.stop()
        registry.start(quay_token_auth(quay, registry, root, realm_host="127.0.0.1"))
        seeder.close()
        yield Deployment(
            quay=quay,
            registry=registry,
            other=other,
            ca_cert=test_pki.ca_cert,
            sources={
                "password": {
                    "issuer": oidc_provider.issuer,
                    "client_id": oidc_provider.public_client,
                    "username": USERNAME,
                    "password_env": "OIDC_PASSWORD",
                },
                "client_credentials": {
                    "issuer": oidc_provider.issuer,
                    "client_id": oidc_provider.confidential_client,
                    "client_secret_env": "OIDC_CLIENT_SECRET",
                    "token_type": "access_token",
                },
                "file": {"issuer": kube_issuer.issuer, "token_file": str(token_file)},
                "device": {
                    "issuer": oidc_provider.issuer,
                    "client_id": oidc_provider.public_client,
                    "scope": "openid offline_access",
                },
            },
            secret_env={
                "OIDC_PASSWORD": password,
                "OIDC_CLIENT_SECRET": oidc_provider.confidential_secret,
            },
        )
    finally:
        registry.stop()
        other.stop()
        quay.close()


@pytest.fixture(scope="session")
def named_registry(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[DistributionRegistry]:
    """A third registry, empty, that clients name `localhost:PORT` and whose token realm names
    the Quay emulator `localhost` too. oras and crane refuse a token realm at a loopback or
    private address unless it is the registry's own host (oras) or host:port (crane), as it
    is for Quay, which serves /v2/auth itself; this suite's emulator and registries are
    separate processes on 127.0.0.1, so these two meet them by host name."""
    root = tmp_path_factory.mktemp("e2e-named-registry")
    quay = deployment.quay
    registry = DistributionRegistry(
        root / "registry",
        ServerTLS(test_pki.server_cert, test_pki.server_key),
        hostname="localhost",
    )
    try:
        registry.start(quay_token_auth(quay, registry, root, realm_host="localhost"))
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def e2e_named(
    deployment: Deployment,
    named_registry: DistributionRegistry,
    tmp_path: Path,
    helper_bin_dir: Path,
) -> Iterator[E2E]:
    """`e2e`, with the registry named by host name (`named_registry`) as the private one."""
    yield from _fresh_view(replace(deployment, registry=named_registry), tmp_path, helper_bin_dir)


@pytest.fixture
def e2e(deployment: Deployment, tmp_path: Path, helper_bin_dir: Path) -> Iterator[E2E]:
    """A fresh sandbox and a cold helper cache; checks no client printed a secret."""
    yield from _fresh_view(deployment, tmp_path, helper_bin_dir)


def _fresh_view(deployment: Deployment, tmp_path: Path, helper_bin_dir: Path) -> Iterator[E2E]:
    deployment.quay.reset()
    deployment.quay.set_token_lifetime(QUAY_TOKEN_LIFETIME)
    sandbox = ClientSandbox(tmp_path / "clients", deployment.ca_cert, helper_bin_dir)
    view = E2E(deployment, sandbox, tmp_path / "helper")
    yield view
    sandbox.close()
    view.check_no_secrets()
