"""helm, oras and crane push and pull through `credHelpers` against the token-auth registry.

Each client reads a docker-format config file whose `credHelpers` names the helper; the helper
mints a robot token at the Quay emulator (counted there) and the registry accepts only tokens
from the emulator's /v2/auth, so a round trip proves the helper's answer was used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.e2e.clients import MORE_CLIENTS, ClientRun
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
# The config file each client is given (works_with.CONFIG_FILES); helm also reads docker's.
CONFIG_FILE = {"helm": "helm-registry", "oras": "docker", "crane": "docker"}
ORAS_FILES = {"hello.txt": "hello from oras\n", "notes.md": "# pushed with oras\n"}


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


def client_config(e2e: E2E, config_file: str) -> Path:
    sandbox = e2e.sandbox
    return {"helm-registry": sandbox.helm_registry_config, "docker": sandbox.docker_config}[
        config_file
    ]


def assert_refused_for_the_stranger(e2e: E2E, pushed: ClientRun, ref: str) -> None:
    assert not pushed.ok, pushed.describe()
    # The helper's reason reaches the person at the terminal through the client.
    assert f"Quay refused the exchange for {STRANGER}" in pushed.stderr, pushed.describe()
    counters = e2e.quay.counters_snapshot()
    assert counters["attempted_by_robot"].get(STRANGER, 0) >= 1, "the helper asked for it"
    assert counters["exchanges_succeeded"] == 0
    assert not e2e.registry_has(ref), "nothing was pushed"


# One push per client: (the client's run, the reference it pushed to).


def push_chart(e2e: E2E, name: str) -> tuple[ClientRun, str]:
    """`helm package` a small chart `chart-NAME` whose values carry NAME; `helm push` it."""
    sandbox = e2e.sandbox
    chart = f"chart-{name}"
    source = sandbox.root / "charts" / chart
    (source / "templates").mkdir(parents=True)
    (source / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: {chart}\nversion: {CHART_VERSION}\ntype: application\n"
    )
    (source / "values.yaml").write_text(f"marker: {json.dumps(name)}\n")
    (source / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  marker: {{ .Values.marker | quote }}\n"
    )
    archive = chart_archive(e2e, name)
    packaged = sandbox.helm("package", str(source), "--destination", str(archive.parent))
    assert packaged.ok, packaged.describe()
    pushed = sandbox.helm_push(archive, f"oci://{e2e.registry.host}/{NAMESPACE}")
    return pushed, f"{e2e.registry.host}/{NAMESPACE}/{chart}:{CHART_VERSION}"


def chart_archive(e2e: E2E, name: str) -> Path:
    """Where `push_chart` has `helm package` write chart-NAME."""
    return e2e.sandbox.root / "packages" / f"chart-{name}-{CHART_VERSION}.tgz"


def push_files(e2e: E2E, name: str) -> tuple[ClientRun, str]:
    """`oras push` ORAS_FILES (in the sandbox's `artifact` directory) as one artifact."""
    source = e2e.sandbox.root / "artifact"
    source.mkdir()
    for file_name, text in ORAS_FILES.items():
        (source / file_name).write_text(text)
    ref = e2e.pushed("oras", name)
    return e2e.sandbox.oras_push(ref, source, sorted(ORAS_FILES)), ref


def push_image(e2e: E2E, name: str) -> tuple[ClientRun, str]:
    """`crane push` a one-layer image (the OCI layout in the sandbox's `image` directory)."""
    layout = e2e.sandbox.root / "image"
    write_oci_image(layout, "crane", {"hello.txt": f"pushed with crane: {name}\n".encode()})
    ref = e2e.pushed("crane", name)
    return e2e.sandbox.crane_push(layout, ref), ref


PUSH: Mapping[str, Callable[[E2E, str], tuple[ClientRun, str]]] = {
    "helm": push_chart,
    "oras": push_files,
    "crane": push_image,
}


def assert_pushed_once(e2e: E2E, pushed: ClientRun, ref: str) -> None:
    assert pushed.ok, pushed.describe()
    assert e2e.registry_has(ref)
    assert e2e.exchanges() == 1, "the helper minted one robot token"


#: docker's native credential stores: helm uses one for its own (absent) registry config when
#: it finds the helper on PATH, and never falls back to docker's config when it fails
NATIVE_STORES = frozenset({"docker-credential-secretservice", "docker-credential-pass"})


def without_native_stores(path: str, shadow: Path) -> str:
    """``path`` with the native-store helpers left out (each directory that holds one replaced
    by a directory of links to the rest): a host that has none, such as a CI runner without
    golang-docker-credential-helpers."""
    directories = []
    for index, directory in enumerate(path.split(os.pathsep)):
        found = Path(directory)
        if not any((found / name).exists() for name in NATIVE_STORES):
            directories.append(directory)
            continue
        linked = shadow / str(index)
        linked.mkdir(parents=True)
        for entry in found.iterdir():
            if entry.name not in NATIVE_STORES:
                (linked / entry.name).symlink_to(entry)
        directories.append(str(linked))
    return os.pathsep.join(directories)


@pytest.mark.parametrize("config_file", ["helm-registry", "docker"])
def test_helm_push_and_pull(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None], config_file: str
) -> None:
    """helm reads its own registry config first, then docker's: each alone names the helper.
    The fallback to docker's needs a host without a native credential store: helm detects
    docker-credential-secretservice (or -pass) for its own empty config and fails with it
    (without a D-Bus session: "Cannot autolaunch D-Bus"), so on such hosts helm's own
    registry config is the place for credHelpers (the README says so)."""
    require_client("helm")
    e2e.configure("password", client_config=client_config(e2e, config_file))
    other_config = "docker" if config_file == "helm-registry" else "helm-registry"
    assert not client_config(e2e, other_config).exists()
    if config_file == "docker":
        shadow = e2e.sandbox.root / "path-without-native-stores"
        e2e.sandbox.env["PATH"] = without_native_stores(e2e.sandbox.env["PATH"], shadow)

    pushed, ref = push_chart(e2e, config_file)
    assert_pushed_once(e2e, pushed, ref)

    pulled_dir = e2e.sandbox.root / "pulled"
    chart_url = f"oci://{ref.rsplit(':', 1)[0]}"
    pulled = e2e.sandbox.helm_pull(chart_url, CHART_VERSION, pulled_dir)
    assert pulled.ok, pulled.describe()
    archive = chart_archive(e2e, config_file)
    assert (pulled_dir / archive.name).read_bytes() == archive.read_bytes()
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"
    works_with.verified("helm", f"{ROUND_TRIP} (`helm push`/`helm pull` oci://)", config_file)


def test_oras_push_and_pull(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("oras")
    e2e.configure("password", client_config=e2e.sandbox.docker_config)

    pushed, ref = push_files(e2e, "password")
    assert_pushed_once(e2e, pushed, ref)

    pulled_dir = e2e.sandbox.root / "pulled"
    pulled = e2e.sandbox.oras_pull(ref, pulled_dir)
    assert pulled.ok, pulled.describe()
    assert {path.name: path.read_text() for path in pulled_dir.iterdir()} == ORAS_FILES
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"
    works_with.verified("oras", f"{ROUND_TRIP} (`oras push`/`oras pull` of files)", "docker")


def test_crane_push_and_pull(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None]
) -> None:
    require_client("crane")
    e2e.configure("password", client_config=e2e.sandbox.docker_config)

    pushed, ref = push_image(e2e, "password")
    assert_pushed_once(e2e, pushed, ref)
    layout = e2e.sandbox.root / "image"
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    assert e2e.manifest_digest(ref) == digest

    pulled_layout = e2e.sandbox.root / "pulled"
    pulled = e2e.sandbox.crane_pull(ref, pulled_layout)
    assert pulled.ok, pulled.describe()
    index = json.loads((pulled_layout / "index.json").read_text())
    assert [manifest["digest"] for manifest in index["manifests"]] == [digest]
    blob = Path("blobs", *digest.split(":"))
    assert (pulled_layout / blob).read_bytes() == (layout / blob).read_bytes()
    assert e2e.exchanges() == 1, "the pull is served from the helper's cache"
    works_with.verified("crane", f"{ROUND_TRIP} (`crane push`/`crane pull` of an image)", "docker")


@pytest.mark.parametrize("client", MORE_CLIENTS)
def test_push_as_a_robot_that_does_not_trust_the_identity_is_refused(
    e2e: E2E, works_with: WorksWith, require_client: Callable[[str], None], client: str
) -> None:
    require_client(client)
    add_stranger_robot(e2e)
    e2e.configure("password", client_config=client_config(e2e, CONFIG_FILE[client]), robot=STRANGER)

    pushed, ref = PUSH[client](e2e, "stranger")
    assert_refused_for_the_stranger(e2e, pushed, ref)
    works_with.verified(client, REFUSED, CONFIG_FILE[client])
