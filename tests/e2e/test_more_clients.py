"""helm, oras and crane push and pull through `credHelpers` against the token-auth registry.

Each client reads a docker-format config file whose `credHelpers` names the helper; the helper
mints a robot token at the Quay emulator (counted there) and the registry accepts only tokens
from the emulator's /v2/auth, so a round trip proves the helper's answer was used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.clients import ClientRun, ClientSandbox
from tests.e2e.deployment import E2E, PRIVATE_REPO
from tests.e2e.images import write_oci_image
from tests.e2e.works_with import WorksWith

pytestmark = [pytest.mark.e2e, pytest.mark.more_clients]

NAMESPACE = PRIVATE_REPO.split("/")[0]
# Federated with the same issuer as the suite's robot, but for another subject: Quay refuses
# to exchange the helper's identity token for this robot's token.
STRANGER = f"{NAMESPACE}+stranger"
CHART_VERSION = "0.1.0"
ROUND_TRIP = "`push` then `pull` round trip, one exchange"
REFUSED = "a robot that does not trust the identity is refused"


@pytest.fixture
def e2e(e2e_named: E2E) -> E2E:
    """These clients meet the registry named by host name, as Quay is (conftest's
    `named_registry` says why)."""
    return e2e_named


def add_stranger_robot(e2e: E2E) -> None:
    issuer = str(e2e.deployment.sources["password"]["issuer"])
    e2e.quay.add_robot(
        STRANGER,
        federation=[(issuer, "someone-else")],
        permissions={f"{NAMESPACE}/*": ["pull", "push"]},
    )


def assert_refused_for_the_stranger(e2e: E2E, pushed: ClientRun, ref: str) -> None:
    assert not pushed.ok, pushed.describe()
    # The helper's reason reaches the person at the terminal through the client.
    assert f"Quay refused the exchange for {STRANGER}" in pushed.stderr, pushed.describe()
    counters = e2e.quay.counters_snapshot()
    assert counters["attempted_by_robot"].get(STRANGER, 0) >= 1, "the helper asked for it"
    assert counters["exchanges_succeeded"] == 0
    assert not e2e.registry_has(ref), "nothing was pushed"


# helm


def package_chart(sandbox: ClientSandbox, name: str, marker: str) -> Path:
    """`helm package` a small chart whose values carry `marker`; return the archive."""
    source = sandbox.root / "charts" / name
    (source / "templates").mkdir(parents=True)
    (source / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: {name}\nversion: {CHART_VERSION}\ntype: application\n"
    )
    (source / "values.yaml").write_text(f"marker: {json.dumps(marker)}\n")
    (source / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  marker: {{ .Values.marker | quote }}\n"
    )
    packages = sandbox.root / "packages"
    packaged = sandbox.helm("package", str(source), "--destination", str(packages))
    assert packaged.ok, packaged.describe()
    return packages / f"{name}-{CHART_VERSION}.tgz"


def helm_round_trip(e2e: E2E, chart: str) -> None:
    sandbox = e2e.sandbox
    archive = package_chart(sandbox, chart, f"pushed by helm as {chart}")
    ref = f"{e2e.registry.host}/{NAMESPACE}/{chart}:{CHART_VERSION}"

    pushed = sandbox.helm_push(archive, f"oci://{e2e.registry.host}/{NAMESPACE}")
    assert pushed.ok, pushed.describe()
    assert e2e.registry_has(ref)
    assert e2e.exchanges() == 1

    pulled_dir = sandbox.root / "pulled"
    pulled = sandbox.helm_pull(
        f"oci://{e2e.registry.host}/{NAMESPACE}/{chart}", CHART_VERSION, pulled_dir
    )
    assert pulled.ok, pulled.describe()
    assert (pulled_dir / archive.name).read_bytes() == archive.read_bytes()
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"


def test_helm_push_and_pull_through_its_registry_config(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("helm")
    sandbox = e2e.sandbox
    # Only helm's own registry config names the helper: no docker config to fall back on.
    e2e.configure("password", client_config=sandbox.helm_registry_config)
    assert not sandbox.docker_config.exists()

    helm_round_trip(e2e, "chart-helm-config")
    works_with.verified("helm", f"{ROUND_TRIP} (`helm push`/`helm pull` oci://)", "helm-registry")


def test_helm_push_and_pull_through_the_docker_config(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("helm")
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.docker_config)
    assert not sandbox.helm_registry_config.exists()

    helm_round_trip(e2e, "chart-docker-config")
    works_with.verified("helm", f"{ROUND_TRIP} (`helm push`/`helm pull` oci://)", "docker")


def test_helm_push_as_a_robot_that_does_not_trust_the_identity_is_refused(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("helm")
    add_stranger_robot(e2e)
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.helm_registry_config, robot=STRANGER)
    chart = "chart-stranger"
    archive = package_chart(sandbox, chart, "never pushed")

    pushed = sandbox.helm_push(archive, f"oci://{e2e.registry.host}/{NAMESPACE}")
    assert_refused_for_the_stranger(e2e, pushed, f"{e2e.registry.host}/{NAMESPACE}/{chart}:0.1.0")
    works_with.verified("helm", REFUSED, "helm-registry")


# oras


ORAS_FILES = {"hello.txt": "hello from oras\n", "notes.md": "# pushed with oras\n"}


def test_oras_push_and_pull_through_the_docker_config(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("oras")
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.docker_config)
    source = sandbox.root / "artifact"
    source.mkdir()
    for name, text in ORAS_FILES.items():
        (source / name).write_text(text)
    ref = e2e.pushed("oras", "password")

    pushed = sandbox.oras_push(ref, source, sorted(ORAS_FILES))
    assert pushed.ok, pushed.describe()
    assert e2e.registry_has(ref)
    assert e2e.exchanges() == 1

    pulled_dir = sandbox.root / "pulled"
    pulled = sandbox.oras_pull(ref, pulled_dir)
    assert pulled.ok, pulled.describe()
    assert {path.name: path.read_text() for path in pulled_dir.iterdir()} == ORAS_FILES
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"
    works_with.verified("oras", f"{ROUND_TRIP} (`oras push`/`oras pull` of files)", "docker")


def test_oras_push_as_a_robot_that_does_not_trust_the_identity_is_refused(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("oras")
    add_stranger_robot(e2e)
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.docker_config, robot=STRANGER)
    source = sandbox.root / "artifact"
    source.mkdir()
    (source / "hello.txt").write_text("never pushed\n")
    ref = e2e.pushed("oras", "stranger")

    pushed = sandbox.oras_push(ref, source, ["hello.txt"])
    assert_refused_for_the_stranger(e2e, pushed, ref)
    works_with.verified("oras", REFUSED, "docker")


# crane


def test_crane_push_and_pull_through_the_docker_config(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("crane")
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.docker_config)
    layout = sandbox.root / "image"
    digest = write_oci_image(layout, "crane", {"hello.txt": b"pushed with crane\n"})
    ref = e2e.pushed("crane", "password")

    pushed = sandbox.crane_push(layout, ref)
    assert pushed.ok, pushed.describe()
    assert e2e.manifest_digest(ref) == digest
    assert e2e.exchanges() == 1

    pulled_layout = sandbox.root / "pulled"
    pulled = sandbox.crane_pull(ref, pulled_layout)
    assert pulled.ok, pulled.describe()
    index = json.loads((pulled_layout / "index.json").read_text())
    assert [manifest["digest"] for manifest in index["manifests"]] == [digest]
    algorithm, hex_digest = digest.split(":")
    original = (layout / "blobs" / algorithm / hex_digest).read_bytes()
    assert (pulled_layout / "blobs" / algorithm / hex_digest).read_bytes() == original
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"
    works_with.verified("crane", f"{ROUND_TRIP} (`crane push`/`crane pull` of an image)", "docker")


def test_crane_push_as_a_robot_that_does_not_trust_the_identity_is_refused(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("crane")
    add_stranger_robot(e2e)
    sandbox = e2e.sandbox
    e2e.configure("password", client_config=sandbox.docker_config, robot=STRANGER)
    layout = sandbox.root / "image"
    write_oci_image(layout, "crane", {"hello.txt": b"never pushed\n"})
    ref = e2e.pushed("crane", "stranger")

    pushed = sandbox.crane_push(layout, ref)
    assert_refused_for_the_stranger(e2e, pushed, ref)
    works_with.verified("crane", REFUSED, "docker")
