"""The platform files of packaging/kubernetes/, each checked by the tool that reads it:

- kind/cluster.yaml: decoded as kind v0.33.0 decodes it (its own v1alpha4 types, strictly, and
  its defaults: tests/platforms/kindconfig); every node's kubelet flags and mounts must point
  where the shipped files go;
- openshift/99-worker-quay-credential-provider.bu: rendered by Butane (``--strict``, pinned in
  tests/platforms/butane) into a MachineConfig whose files are the shipped ones, byte for byte,
  and whose kubelet drop-in names the plugin directory and the directory that holds the file;
- openshift/Containerfile: built with buildah on a stand-in base image made here FROM scratch
  (nothing is pulled), with the release tarball (or, without one, a stand-in of its layout).

The two Go programs come from $QUAYFED_PLATFORMS_BIN (.ci/platforms.sh builds them there) or
are built here with the go command; without Go or buildah the tests skip, under CI=true they
fail. That the kubelet itself accepts the shipped CredentialProviderConfig files, and a
directory holding one beside the Machine Config Operator's own, is tests/test_kubelet_code.py's.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from docker_credential_quayfed import kubelet
from tests.support import go_command, unavailable
from tests.test_kubelet_golden import _yaml_documents

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.platforms

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "packaging" / "kubernetes"
PROGRAMS = ROOT / "tests" / "platforms"
BIN_ENV = "QUAYFED_PLATFORMS_BIN"
FROZEN_ENV = "QUAYFED_FROZEN_PROVIDER"
BUTANE_VERSION = "v0.29.0"
BUILD_SECONDS = 900.0
RUN_SECONDS = 120.0
PROVIDER = kubelet.PROGRAM
CONFIG_FLAG = "image-credential-provider-config"
BIN_DIR_FLAG = "image-credential-provider-bin-dir"
OPENSHIFT_BIN_DIR = "/usr/libexec/kubelet-image-credential-provider-plugins"


def tool(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``name`` from $QUAYFED_PLATFORMS_BIN, else built here from tests/platforms/."""
    prebuilt = os.environ.get(BIN_ENV, "").strip()
    if prebuilt and (Path(prebuilt) / name).exists():
        return Path(prebuilt) / name
    go = go_command()
    if go is None:
        unavailable(f"no go command to build {name} (tests/platforms/)")
    assert go is not None
    output = tmp_path_factory.mktemp(name) / name
    if name == "butane":
        command = [go, "build", "-ldflags",
                   f"-X github.com/coreos/butane/internal/version.Raw={BUTANE_VERSION}",
                   "-o", str(output), "github.com/coreos/butane/internal"]  # fmt: skip
    else:
        command = [go, "build", "-o", str(output), "."]
    done = subprocess.run(
        command,
        cwd=PROGRAMS / ("butane" if name == "butane" else "kindconfig"),
        capture_output=True,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"},
        timeout=BUILD_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        unavailable(f"go build of {name} failed: {last}")
    return output


@pytest.fixture(scope="session")
def butane(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tool("butane", tmp_path_factory)


@pytest.fixture(scope="session")
def kindconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tool("kindconfig", tmp_path_factory)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_SECONDS, check=False, **kwargs
    )


def shipped_providers(name: str = "credential-providers.yaml") -> dict[str, Any]:
    (document,) = _yaml_documents((MANIFESTS / "one-quay" / name).read_text())
    assert isinstance(document, dict)
    return document


def config_arg(document: dict[str, Any]) -> str:
    """The node configuration's path in the provider's args (``--config PATH``)."""
    args = document["providers"][0]["args"]
    return str(args[args.index("--config") + 1])


def ca_bundle_path() -> str:
    text = (MANIFESTS / "one-quay" / "config.toml").read_text()
    return str(tomllib.loads(text)["kubelet"]["quay.example.com"]["ca_bundle"])


# -- kind ----------------------------------------------------------------------------------------
KIND_CONFIG = MANIFESTS / "kind" / "cluster.yaml"


def kind_read(kindconfig: Path, path: Path) -> dict[str, Any]:
    done = run([str(kindconfig), str(path)])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def kubelet_flags(patches: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """The kubeletExtraArgs that the patches of ``kind`` (InitConfiguration: the first
    control-plane node; JoinConfiguration: every other node) give the kubelet."""
    flags: dict[str, str] = {}
    for patch in patches:
        if patch.get("kind") == kind:
            flags.update(patch.get("nodeRegistration", {}).get("kubeletExtraArgs", {}))
    return flags


def test_the_kind_config_points_every_kubelet_at_the_shipped_files(kindconfig: Path) -> None:
    _yaml_documents(KIND_CONFIG.read_text())  # no key twice
    read = kind_read(kindconfig, KIND_CONFIG)
    cluster, patches = read["cluster"], read["patches"]
    nodes = cluster["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker"]
    # Cluster-wide patches reach every node: the first control plane inits, the others join.
    assert all(node_patches == [] for node_patches in patches[1:])
    # No apiVersion: kind applies each patch to kubeadm's v1beta3 (node images before 1.36) and
    # v1beta4 alike, turning the kubeletExtraArgs map into v1beta4's list.
    assert all("apiVersion" not in patch for patch in patches[0])
    providers = shipped_providers()
    for kind in ("InitConfiguration", "JoinConfiguration"):
        flags = kubelet_flags(patches[0], kind)
        assert set(flags) == {CONFIG_FLAG, BIN_DIR_FLAG}, (kind, flags)
        for node in nodes:
            mounts = {m["containerPath"]: m for m in node["extraMounts"]}
            assert all(m.get("readOnly") for m in mounts.values()), node["role"]
            where = {path: mounts[path]["hostPath"] for path in mounts}
            # the kubelet's two flags, the provider's --config and config.toml's CA: each a
            # mount of the file the repository ships (or the one the steps put there)
            assert (
                where[flags[CONFIG_FLAG]]
                == "packaging/kubernetes/one-quay/credential-providers.yaml"
            )
            assert where[flags[BIN_DIR_FLAG]] == "packaging/kubernetes/kind/node/bin"
            assert where[config_arg(providers)] == "packaging/kubernetes/one-quay/config.toml"
            assert where[ca_bundle_path()] == "packaging/kubernetes/kind/node/quay-ca.pem"
            for host_path in where.values():
                assert not Path(host_path).is_absolute()
                assert "kind/node/" in host_path or (ROOT / host_path).is_file(), host_path
    # kind's default node image: Kubernetes 1.34 or later, where the shipped file is the one
    image = re.search(r":v1\.([0-9]+)\.", nodes[0]["image"])
    assert image and int(image.group(1)) >= 34, nodes[0]["image"]


WORKER = "  - role: worker\n"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ((WORKER, f"{WORKER}    extraMount: []\n"), "field extraMount not found"),
        (("readOnly: true", "readOnly: yes please"), "cannot unmarshal"),
        ((WORKER, f"{WORKER}    role: worker\n"), 'mapping key "role" already defined'),
        (("kind.x-k8s.io/v1alpha4", "kind.x-k8s.io/v1alpha3"), "not a kind.x-k8s.io/v1alpha4"),
    ],
    ids=["unknown field", "wrong type", "key twice", "old apiVersion"],
)  # fmt: skip
def test_the_kind_checker_refuses_what_kind_refuses(
    kindconfig: Path, tmp_path: Path, change: tuple[str, str], refusal: str
) -> None:
    text = KIND_CONFIG.read_text()
    broken = text.replace(*change)
    assert broken != text
    path = tmp_path / "cluster.yaml"
    path.write_text(broken)
    done = run([str(kindconfig), str(path)])
    assert done.returncode == 1 and done.stdout == ""
    assert refusal in done.stderr, done.stderr


# -- OpenShift: the MachineConfig ----------------------------------------------------------------
BUTANE_FILE = MANIFESTS / "openshift" / "99-worker-quay-credential-provider.bu"


def files_dir(tmp_path: Path, ca: bytes) -> Path:
    """--files-dir as the steps make it: the shipped one-quay/ files and Quay's CA."""
    directory = tmp_path / "files"
    shutil.copytree(MANIFESTS / "one-quay", directory / "one-quay")
    (directory / "openshift").mkdir()
    (directory / "openshift" / "quay-ca.pem").write_bytes(ca)
    return directory


def render(butane: Path, source: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return run([str(butane), "--strict", "--files-dir", str(directory), str(source)])


def data_url(source: str, compression: str | None) -> bytes:
    """The bytes of an Ignition ``contents.source`` data URL."""
    header, _, payload = source.partition(",")
    assert header.startswith("data:"), header
    raw = base64.b64decode(payload) if header.endswith(";base64") else (
        urllib.parse.unquote_to_bytes(payload))  # fmt: skip
    return gzip.decompress(raw) if compression == "gzip" else raw


def test_butane_renders_the_machine_config(butane: Path, tmp_path: Path) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
    done = render(butane, BUTANE_FILE, files_dir(tmp_path, ca))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "butane warned (--strict makes a warning an error)"
    (machine_config,) = _yaml_documents(done.stdout)
    assert machine_config["apiVersion"] == "machineconfiguration.openshift.io/v1"
    assert machine_config["kind"] == "MachineConfig"
    assert machine_config["metadata"] == {
        "name": "99-worker-quay-credential-provider",
        "labels": {"machineconfiguration.openshift.io/role": "worker"},
    }
    config = machine_config["spec"]["config"]
    files = {
        f["path"]: (data_url(f["contents"]["source"], f["contents"].get("compression")), f["mode"])
        for f in config["storage"]["files"]
    }
    providers_path = "/etc/kubernetes/credential-providers/quay-credential-provider.yaml"
    providers = shipped_providers()
    assert files == {
        providers_path: ((MANIFESTS / "one-quay/credential-providers.yaml").read_bytes(), 0o644),
        config_arg(providers): ((MANIFESTS / "one-quay/config.toml").read_bytes(), 0o644),
        ca_bundle_path(): (ca, 0o644),
    }  # fmt: skip
    (unit,) = config["systemd"]["units"]
    assert unit["name"] == "kubelet.service" and "contents" not in unit
    (dropin,) = unit["dropins"]
    assert dropin["name"] == "50-quay-credential-provider.conf"
    lines = dropin["contents"].splitlines()
    assert lines[0] == "[Service]"
    (environment,) = [line for line in lines[1:] if line.strip()]
    name, _, value = shlex.split(environment.removeprefix("Environment="))[0].partition("=")
    # the variable the operator's kubelet.service expands (templates/*/01-*-kubelet/on-prem)
    assert name == "KUBELET_CRIO_IMAGE_CREDENTIAL_PROVIDER_FLAGS"
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in value.split())
    assert flags == {
        BIN_DIR_FLAG: OPENSHIFT_BIN_DIR,
        CONFIG_FLAG: str(Path(providers_path).parent),
    }


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (("version: 4.21.0", "version: 4.99.0"), "No translator exists for variant openshift"),
        (("local: one-quay/config.toml", "local: one-quay/missing.toml"), "no such file"),
        (("storage:\n  files:", "storage:\n  filez: []\n  files:"), "warning[$.storage.filez]"),
    ],
    ids=["unknown OpenShift version", "a missing local file", "an unknown key (a warning)"],
)  # fmt: skip
def test_butane_refuses_a_broken_file(
    butane: Path, tmp_path: Path, change: tuple[str, str], refusal: str
) -> None:
    text = BUTANE_FILE.read_text()
    broken = text.replace(*change)
    assert broken != text
    source = tmp_path / "broken.bu"
    source.write_text(broken)
    done = render(butane, source, files_dir(tmp_path, b"ca\n"))
    assert done.returncode != 0
    assert refusal in done.stderr, done.stderr


# -- OpenShift: the layered image ----------------------------------------------------------------
CONTAINERFILE = MANIFESTS / "openshift" / "Containerfile"


def release_tarball(tmp_path: Path) -> tuple[Path, bool]:
    """The self-contained provider's release tarball beside $QUAYFED_FROZEN_PROVIDER (True),
    else a stand-in of its layout (False): the link the kubelet runs and the folder."""
    frozen = os.environ.get(FROZEN_ENV, "").strip()
    if frozen:
        found = sorted(Path(frozen).parent.glob(f"{PROVIDER}-*-linux-*.tar.gz"))
        assert len(found) == 1, f"one release tarball beside ${FROZEN_ENV}: {found}"
        return found[0], True
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"${FROZEN_ENV} names no self-contained provider; CI must build it")
    folder = tmp_path / "stand-in" / f"{PROVIDER}.d"
    folder.mkdir(parents=True)
    (folder / PROVIDER).write_text("#!/bin/sh\necho stand-in\n")
    (folder / PROVIDER).chmod(0o755)
    (folder.parent / PROVIDER).symlink_to(f"{PROVIDER}.d/{PROVIDER}")
    tarball = tmp_path / f"{PROVIDER}-0-linux-x86_64.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder.parent / PROVIDER, arcname=PROVIDER)
        archive.add(folder, arcname=folder.name)
    return tarball, False


def test_the_layered_image_puts_the_provider_in_the_plugin_directory(tmp_path: Path) -> None:
    """What the image adds to RHCOS: the release's files under the kubelet's plugin directory
    (the link the kubelet runs resolves to the executable inside), the base's own providers
    kept. It does not prove that RHCOS boots it or that the MCO rolls it out."""
    buildah = shutil.which("buildah")
    if buildah is None:
        unavailable("no buildah to build the layered image")
    assert buildah is not None
    # Its own storage: nothing of this test is left in the machine's images.
    storage = [buildah, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"),
               "--storage-driver", "vfs"]  # fmt: skip
    base = tmp_path / "base"
    plugins = base / OPENSHIFT_BIN_DIR.lstrip("/")
    plugins.mkdir(parents=True)
    (plugins / "ecr-credential-provider").write_text("the platform's own provider\n")
    (base / "Containerfile").write_text("FROM scratch\nCOPY usr /usr\n")
    done = run([*storage, "build", "--quiet", "--pull=never", "-t", "localhost/rhcos-stand-in",
                str(base)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    context = tmp_path / "context"
    context.mkdir()
    tarball, real = release_tarball(tmp_path)
    shutil.copy(tarball, context / tarball.name)
    output = tmp_path / "image"
    done = run([
        *storage, "build", "--quiet", "--pull=never", "-f", str(CONTAINERFILE),
        "--build-arg", "RHCOS_IMAGE=localhost/rhcos-stand-in",
        "--build-arg", f"PROVIDER_TARBALL={tarball.name}",
        "--output", f"type=local,dest={output}", str(context),
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr
    directory = output / OPENSHIFT_BIN_DIR.lstrip("/")
    assert (directory / "ecr-credential-provider").read_text() == "the platform's own provider\n"
    link = directory / PROVIDER
    assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
    target = link.resolve()
    assert target.parent == (directory / f"{PROVIDER}.d").resolve()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    if real:
        # The image's own copy runs: a malformed request is refused in one line.
        refused = subprocess.run(
            [str(link)], input=b"{}", capture_output=True, timeout=RUN_SECONDS, check=False
        )
        assert refused.returncode == 2 and refused.stdout == b""
        assert refused.stderr.decode().startswith(f"{PROVIDER}: "), refused.stderr


# -- the pages ------------------------------------------------------------------------------------
def test_docs_have_a_section_per_platform() -> None:
    text = (ROOT / "docs" / "kubelet.md").read_text()
    headings = re.findall(r"^### (.+)$", text, re.M)
    for platform in ("kind", "OpenShift", "EKS, GKE and AKS", "Flatcar", "Talos"):
        assert platform in headings, (platform, headings)
    for path in ("kind/cluster.yaml", "openshift/99-worker-quay-credential-provider.bu",
                 "openshift/Containerfile", "one-quay/credential-providers-1.33.yaml"):  # fmt: skip
        assert path in text, path
