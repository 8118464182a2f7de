"""Each client pulls and pushes a private image with a robot token the helper minted,
for each way the helper can get its OIDC token."""

from __future__ import annotations

import pytest

from tests.e2e.deployment import E2E
from tests.e2e.works_with import WorksWith

pytestmark = pytest.mark.e2e

SOURCES = ("password", "client_credentials", "file")
SOURCE_LABELS = {
    "password": "password grant",
    "client_credentials": "client_credentials",
    "file": "projected token file",
}


@pytest.mark.parametrize("source", SOURCES)
def test_skopeo_inspect_and_copy(e2e: E2E, source: str, works_with: WorksWith) -> None:
    e2e.configure(source)
    sandbox = e2e.sandbox

    inspected = sandbox.skopeo_inspect(e2e.private(1))
    assert inspected.ok, inspected.describe()
    assert '"Digest": "sha256:' in inspected.stdout

    copied = sandbox.skopeo_copy(
        f"docker://{e2e.private(2)}", f"docker://{e2e.pushed('skopeo', source)}"
    )
    assert copied.ok, copied.describe()
    assert e2e.manifest_digest(e2e.pushed("skopeo", source)) == e2e.manifest_digest(e2e.private(2))
    assert e2e.exchanges() == 1, "one exchange serves the whole session"
    works_with.verified("skopeo", f"inspect + copy (push) via {SOURCE_LABELS[source]}", "auth.json")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("client", ["podman", "buildah"])
def test_pull_and_push(e2e: E2E, client: str, source: str, works_with: WorksWith) -> None:
    e2e.configure(source)
    sandbox = e2e.sandbox

    pulled = sandbox.pull(client, e2e.private(3))
    assert pulled.ok, pulled.describe()
    assert e2e.private(3) in sandbox.local_images(client)

    target = e2e.pushed(client, source)
    pushed = sandbox.push(client, e2e.private(3), target)
    assert pushed.ok, pushed.describe()
    assert e2e.registry_has(target)
    assert e2e.exchanges() == 1
    works_with.verified(client, f"pull + push via {SOURCE_LABELS[source]}", "auth.json")


@pytest.mark.parametrize("source", SOURCES)
def test_docker_manifest_inspect(e2e: E2E, source: str, works_with: WorksWith) -> None:
    e2e.configure(source)

    inspected = e2e.sandbox.docker_manifest_inspect(e2e.private(5))
    assert inspected.ok, inspected.describe()
    assert '"schemaVersion": 2' in inspected.stdout
    assert e2e.exchanges() == 1
    works_with.verified("docker", f"manifest inspect via {SOURCE_LABELS[source]}", "docker")


def test_private_image_is_denied_without_the_helper(e2e: E2E) -> None:
    """The registry really enforces auth: the same pull without credHelpers fails."""
    inspected = e2e.sandbox.skopeo_inspect(e2e.private(1))
    assert not inspected.ok
    assert "unauthorized" in inspected.stderr.lower() or "denied" in inspected.stderr.lower(), (
        inspected.describe()
    )
    assert e2e.exchanges() == 0


def test_podman_reads_credhelpers_from_home_docker_config(e2e: E2E, works_with: WorksWith) -> None:
    sandbox = e2e.sandbox
    sandbox.use_home_docker_config()
    e2e.configure("password", client_config=sandbox.home_docker_config)
    assert not sandbox.auth_file.exists()

    pulled = sandbox.podman_pull(e2e.private(6))
    assert pulled.ok, pulled.describe()
    assert e2e.exchanges() == 1
    works_with.verified("podman", "pull via ~/.docker/config.json credHelpers", "home-docker")
