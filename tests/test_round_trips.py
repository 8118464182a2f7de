"""What a cold get costs on the wire, counted at the servers (the helper's own requests, told
apart by its User-Agent from the emulator's fetches of the issuer's keys): discovery is kept
on disk, and a kept JWT leaves only the exchange."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.support.realm import PasswordRealm, start_password_realm

ROBOT = "org+counted"
PASSWORD = "counted-password-5e1"


class Wire:
    """The realm, Quay and the helper's config; counts the helper's own traffic."""

    def __init__(self, realm: PasswordRealm) -> None:
        self.realm = realm
        self.issuer = realm.issuer
        self.quay = realm.quay
        self.env = realm.env
        self._seen = (0, 0)

    def traffic(self) -> tuple[int, int]:
        """(connections, requests) at the issuer and Quay together since the last call."""
        connections = requests = 0
        for server in (self.realm.issuer_server, self.realm.quay_server):
            c, r = server.traffic("docker-credential-quayfed/")
            connections, requests = connections + c, requests + r
        seen = (connections - self._seen[0], requests - self._seen[1])
        self._seen = (connections, requests)
        return seen

    def get(self) -> None:
        result = run_helper("get", self.quay.host, env=self.env)
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["Username"] == ROBOT
        assert PASSWORD not in result.stderr

    def forget(self, pattern: str) -> None:
        for path in self.realm.cache_dir.glob(pattern):
            path.unlink()


@pytest.fixture
def wire(test_pki: TestPKI, tmp_path: Path) -> Iterator[Wire]:
    realm = start_password_realm(test_pki, tmp_path, ROBOT, PASSWORD)
    yield Wire(realm)
    realm.close()


def test_a_cold_get_with_discovery_kept_costs_two_connections_and_two_requests(
    wire: Wire,
) -> None:
    wire.get()
    assert wire.traffic() == (3, 3), "first ever: discovery, token request, exchange"
    wire.get()
    assert wire.traffic() == (0, 0), "a cache hit touches no server"
    wire.forget("*.token")
    wire.forget("@jwt-*")
    wire.get()
    assert wire.traffic() == (2, 2), "cold, discovery from disk: token request and exchange"


def test_a_kept_jwt_leaves_only_the_exchange(wire: Wire) -> None:
    wire.get()
    wire.traffic()
    wire.forget("*.token")
    wire.get()
    assert wire.traffic() == (1, 1)
    assert wire.issuer.token_requests == 1


def test_a_kept_discovery_that_no_longer_works_is_fetched_again(wire: Wire) -> None:
    wire.get()
    cache = Path(wire.env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])
    (kept,) = cache.glob("@discovery-*.json")
    document = json.loads(kept.read_text())
    document["token_endpoint"] = document["token_endpoint"].replace("/token", "/moved")
    kept.write_text(json.dumps(document))
    wire.forget("*.token")
    wire.forget("@jwt-*")
    wire.get()
    assert wire.issuer.token_requests == 2
    assert "/moved" not in next(cache.glob("@discovery-*.json")).read_text()


def test_a_jwt_quay_refused_is_not_kept_for_reuse(wire: Wire) -> None:
    wire.get()
    assert list(wire.realm.cache_dir.glob("@jwt-*"))
    wire.forget("*.token")
    wire.quay.add_robot(ROBOT, federation=[(wire.issuer.issuer, "someone-else")])
    refused = run_helper("get", wire.quay.host, env=wire.env)
    assert refused.returncode == 1 and "continuing without credentials" in refused.stderr
    assert not list(wire.realm.cache_dir.glob("@jwt-*")), "a refused JWT would be refused again"


def test_a_cold_get_reads_the_jwt_without_loading_a_crypto_library(wire: Wire) -> None:
    """The helper never verifies a signature (Quay does): the OIDC JWT's header and claims are
    read with the standard library, so a cold get does not import jwt and cryptography."""
    result = run_helper("get", wire.quay.host, env={**wire.env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"httpx", "docker_credential_quayfed"} <= imported  # the full path ran
    assert not imported & {"jwt", "cryptography"}
