"""A person logs in once (device code approved at the third-party provider), then real clients
pull through credHelpers with no password anywhere; logout ends it."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.deployment import E2E
from tests.e2e.works_with import WorksWith
from tests.support.oidc_provider import OIDCProvider

pytestmark = pytest.mark.e2e

CODE_LINE = re.compile(r"open (\S+) and (?:check|enter) the code (\S+)")


def log_in(e2e: E2E, provider: OIDCProvider) -> None:
    process = subprocess.Popen(
        ["docker-credential-quayfed", "login", e2e.registry.host],
        env=e2e.sandbox.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    found = CODE_LINE.search(process.stderr.readline())
    assert found, "login printed no code"
    provider.approve_device(found.group(1), found.group(2), "jdoe")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stdout.startswith(f"Logged in to {e2e.registry.host} as jdoe")


def test_login_then_podman_and_skopeo_pull(
    e2e: E2E, oidc_provider: OIDCProvider, works_with: WorksWith
) -> None:
    e2e.configure("device")
    denied = e2e.sandbox.pull("podman", e2e.private(4))
    assert not denied.ok, "no login yet: the private image is refused"
    assert "docker-credential-quayfed login" in denied.output

    log_in(e2e, oidc_provider)
    assert e2e.exchanges() == 1
    pulled = e2e.sandbox.pull("podman", e2e.private(4))
    assert pulled.ok, pulled.describe()
    inspected = e2e.sandbox.skopeo_inspect(e2e.private(5))
    assert inspected.ok, inspected.describe()
    assert e2e.exchanges() == 1, "the robot token minted at login serves both clients"
    works_with.verified("podman", "pull after login (device code)", "auth.json")

    logout = e2e.sandbox.run("docker-credential-quayfed", ["logout", e2e.registry.host])
    assert logout.ok and "revoked at the issuer" in logout.stdout, logout.describe()
    again = e2e.sandbox.skopeo_inspect(e2e.private(6))
    assert not again.ok, "after logout the private image is refused again"
