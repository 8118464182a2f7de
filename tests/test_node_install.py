"""``quay-credential-provider install-on-node`` (docker_credential_quayfed/node_install.py) and
the installer image and DaemonSet that run it (packaging/installer/).

- The merge itself, on documents and on a node root in a temp directory: other providers and
  fields kept, ours replaced by name, JSON written back as JSON, a file that is no
  CredentialProviderConfig refused with nothing on the node changed, a second run that changes
  nothing (every path's content, inode and mtime compared), a new provider version switched in
  by one rename of the link.
- The shipped DaemonSet against the installer's own arguments and the shipped one-quay files.
- The kubelet's own code (tests/test_kubelet_code.py's Go program) accepts what the installer
  writes: a merged EKS-like JSON file, a merged GKE-like YAML file, a new file.
- The real thing (marker ``node_install``): the image built FROM scratch by
  packaging/installer/build-image.sh, run by rootful podman with the DaemonSet's mounts,
  security context and arguments against a fake host root (the hostPath directories under a
  temp directory). The image is $QUAYFED_INSTALLER_IMAGE in the container storage under
  $QUAYFED_NODE_INSTALL_STORAGE (.ci/node-install.sh builds it), else built here from
  $QUAYFED_FROZEN_PROVIDER. Without podman, buildah or a provider the tests skip; under CI=true
  they fail.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from docker_credential_quayfed import node_install
from docker_credential_quayfed.kubelet import PROGRAM
from docker_credential_quayfed.node_install import InstallRefused
from tests.support import unavailable
from tests.support.oidc_provider import KubeIssuer
from tests.test_kubelet_code import APIServer, Kubelet, kubelet_code  # noqa: F401 (a fixture)
from tests.test_kubelet_golden import provider_problems

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "packaging" / "installer"
DAEMONSET = INSTALLER / "daemonset.yaml"
ONE_QUAY = ROOT / "packaging" / "kubernetes" / "one-quay"
IMAGE_ENV = "QUAYFED_INSTALLER_IMAGE"
STORAGE_ENV = "QUAYFED_NODE_INSTALL_STORAGE"
FROZEN_ENV = "QUAYFED_FROZEN_PROVIDER"
DEFAULT_STORAGE = "/var/cache/quayfed-ci/node-install/containers"
#: one podman run or image build, everything included
CONTAINER_SECONDS = 300.0

ECR: dict[str, Any] = {
    "name": "ecr-credential-provider",
    "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
    "defaultCacheDuration": "12h",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
}
#: as EKS writes it: JSON, the kubelet's config and its providers in one directory
EKS_CONFIG = "/etc/eks/image-credential-provider/config.json"
EKS_BIN = "/etc/eks/image-credential-provider"
EKS_TEXT = json.dumps(
    {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
     "providers": [ECR]},
    indent=4,
)  # fmt: skip
GKE_CONFIG = "/etc/srv/kubernetes/cri_auth_config.yaml"
GKE_BIN = "/home/kubernetes/bin"
GKE_TEXT = """\
# written by the node image; the kubelet reads it at start
kind: CredentialProviderConfig
apiVersion: kubelet.config.k8s.io/v1
providers:
  - name: auth-provider-gcp
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages: ["container.cloud.google.com", "gcr.io", "*.gcr.io", "*.pkg.dev"]
    args: [get-credentials, --v=3]
    defaultCacheDuration: 1m
"""


def ours() -> list[dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load((ONE_QUAY / "credential-providers.yaml").read_text())
    entries: list[dict[str, Any]] = document["providers"]
    return entries


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: kind, mode, inode, mtime and content (or link target)."""
    seen: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content: str = os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = ""
        seen[str(path.relative_to(root))] = (info.st_mode, info.st_ino, info.st_mtime_ns, content)
    return seen


# -- the merge, on documents --------------------------------------------------------------------
def test_merge_keeps_every_other_provider_and_field() -> None:
    existing: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [ECR, {"name": "other", "matchImages": ["x.example"]}],
        "someFieldOfANewerKubelet": {"kept": True},
    }
    before = copy.deepcopy(existing)
    merged = node_install.merge(existing, ours())
    assert existing == before, "the document read is not changed"
    assert merged["providers"] == [ECR, existing["providers"][1], *ours()]
    assert merged["someFieldOfANewerKubelet"] == {"kept": True}
    assert list(merged) == list(existing)


def test_merge_replaces_our_entry_by_name_in_its_place() -> None:
    old = {**ours()[0], "matchImages": ["old.example.com"]}
    partner = {**ours()[0], "name": f"{PROGRAM}-partner"}
    existing = {"kind": "CredentialProviderConfig", "providers": [old, ECR]}
    merged = node_install.merge(existing, [*ours(), partner])
    assert merged["providers"] == [ours()[0], ECR, partner]
    assert node_install.merge(merged, [*ours(), partner]) == merged


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("[1, 2]", "no mapping at its top"),
        ("kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n", "kind:"),
        ('{"kind": "CredentialProviderConfig", "apiVersion": "v9", "providers": []}', "v9"),
        ("kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders: x\n",
         "providers is not a list"),
        ("kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\n"
         "providers: [{matchImages: [a]}]\n", "with a name"),
        ("kind: CredentialProviderConfig\nproviders: [\n", "neither JSON nor YAML at line"),
        ("", "no mapping"),
    ],
)  # fmt: skip
def test_what_is_no_credential_provider_config_is_refused(text: str, refusal: str) -> None:
    with pytest.raises(InstallRefused, match=refusal.replace("[", r"\[")):
        node_install.parse_config(text, "/etc/kubernetes/x.yaml")


def test_json_is_json_and_yaml_is_yaml() -> None:
    assert node_install.parse_config(EKS_TEXT, "x").json
    assert not node_install.parse_config(GKE_TEXT, "x").json
    merged = node_install.merge(node_install.parse_config(GKE_TEXT, "x").document, ours())
    assert yaml.safe_load(node_install.render(merged, as_json=False)) == merged
    assert json.loads(node_install.render(merged, as_json=True)) == merged


@pytest.mark.parametrize(
    "entry", [{"name": "quay"}, {"name": f"{PROGRAM}-a/b"}, {"name": "ecr-credential-provider"}]
)
def test_only_this_providers_entries_are_installed(entry: dict[str, Any]) -> None:
    with pytest.raises(InstallRefused, match="is not quay-credential-provider"):
        node_install.our_entries({"providers": [entry]}, "providers.yaml")


# -- the command, on a node root in a temp directory ---------------------------------------------
def fake_provider(folder: Path, marker: str = "1") -> Path:
    """A provider folder: an executable that says which build it is, and a library beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    executable = folder / PROGRAM
    executable.write_text(f"#!/bin/sh\necho {PROGRAM} {marker}\n")
    executable.chmod(0o755)
    (folder / "lib").mkdir(exist_ok=True)
    (folder / "lib" / "libpython.so").write_bytes(marker.encode() * 4096)
    return folder


def install_args(host: Path, source: Path, config: str, bin_dir: str, *more: str) -> list[str]:
    return [
        "--host-root", str(host), "--source", str(source), "--kubelet-config", config,
        "--bin-dir", bin_dir, "--providers", str(ONE_QUAY / "credential-providers.yaml"),
        "--node-file", str(ONE_QUAY / "config.toml"), *more,
    ]  # fmt: skip


def node_with(host: Path, path: str, text: str) -> Path:
    on_host = host / path.lstrip("/")
    on_host.parent.mkdir(parents=True, exist_ok=True)
    on_host.write_text(text)
    return on_host


@pytest.mark.parametrize(
    ("config", "bin_dir", "text", "other"),
    [
        (EKS_CONFIG, EKS_BIN, EKS_TEXT, ECR["name"]),
        (GKE_CONFIG, GKE_BIN, GKE_TEXT, "auth-provider-gcp"),
    ],
    ids=["eks-json", "gke-yaml"],
)
def test_install_merges_and_a_second_run_changes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str,
    bin_dir: str,
    text: str,
    other: str,
) -> None:
    host = tmp_path / "host"
    path = node_with(host, config, text)
    source = fake_provider(tmp_path / "provider")
    args = install_args(host, source, config, bin_dir)
    assert node_install.main(args) == 0
    said = capsys.readouterr().out
    assert f"restart the kubelet: it reads {config} only when it starts" in said
    written = path.read_text()
    assert written.lstrip().startswith("{") == config.endswith(".json")
    document = yaml.safe_load(written)  # JSON is YAML
    assert [p["name"] for p in document["providers"]] == [other, PROGRAM]
    assert document["providers"][0] == yaml.safe_load(text)["providers"][0]
    assert document["providers"][1] == ours()[0]
    provider = host / bin_dir.lstrip("/") / PROGRAM
    done = subprocess.run([str(provider)], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout == f"{PROGRAM} 1\n"
    node_toml = host / "etc" / "docker-credential-quayfed" / "config.toml"
    assert node_toml.read_bytes() == (ONE_QUAY / "config.toml").read_bytes()
    assert node_toml.stat().st_mode & 0o777 == 0o600

    before = snapshot(host)
    assert node_install.main(args) == 0
    assert capsys.readouterr().out.endswith("the node already has it; nothing changed\n")
    assert snapshot(host) == before


def test_without_a_kubelet_config_it_writes_one_and_names_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = tmp_path / "host"
    source = fake_provider(tmp_path / "provider")
    config, bin_dir = node_install.DEFAULT_KUBELET_CONFIG, node_install.DEFAULT_BIN_DIR
    assert node_install.main(install_args(host, source, config, bin_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        f"{PROGRAM} install-on-node: the kubelet reads no CredentialProviderConfig yet: start "
        f"it with --image-credential-provider-config={config} "
        f"--image-credential-provider-bin-dir={bin_dir}"
    )
    written = yaml.safe_load((host / config.lstrip("/")).read_text())
    shipped = yaml.safe_load((ONE_QUAY / "credential-providers.yaml").read_text())
    assert written == shipped


def test_a_broken_file_is_refused_and_nothing_on_the_node_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = tmp_path / "host"
    node_with(host, EKS_CONFIG, EKS_TEXT.replace("CredentialProviderConfig", "Something"))
    before = snapshot(host)
    source = fake_provider(tmp_path / "provider")
    assert node_install.main(install_args(host, source, EKS_CONFIG, EKS_BIN)) == 1
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == (
        f"{PROGRAM} install-on-node: {EKS_CONFIG} is not a CredentialProviderConfig "
        "(kind: 'Something'); nothing on the node was changed\n"
    )
    assert snapshot(host) == before


def test_a_new_build_is_switched_in_by_the_link_and_the_one_before_it_kept(tmp_path: Path) -> None:
    host = tmp_path / "host"
    bins = host / EKS_BIN.lstrip("/")
    node_with(host, EKS_CONFIG, EKS_TEXT)
    (bins / ".quay-credential-provider" / "0123.partial-99").mkdir(parents=True)  # a killed run
    builds = [fake_provider(tmp_path / f"build-{n}", str(n)) for n in (1, 2, 3)]
    seen = []
    for build in builds:
        assert node_install.main(install_args(host, build, EKS_CONFIG, EKS_BIN)) == 0
        link = bins / PROGRAM
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        done = subprocess.run([str(link)], capture_output=True, text=True, check=True, timeout=30)
        seen.append(done.stdout.split()[-1])
        # the current folder and the one the link named before: a run it started may read it
        kept = sorted(p.name for p in (bins / ".quay-credential-provider").iterdir())
        assert len(kept) == min(len(seen), 2) and Path(os.readlink(link)).parts[1] in kept
    assert seen == ["1", "2", "3"]


def test_a_second_entry_name_is_a_link(tmp_path: Path) -> None:
    host = tmp_path / "host"
    providers = tmp_path / "providers.yaml"
    two = yaml.safe_load(
        (ROOT / "packaging/kubernetes/two-quays/credential-providers.yaml").read_text()
    )
    providers.write_text(yaml.safe_dump(two))
    source = fake_provider(tmp_path / "provider")
    args = install_args(host, source, GKE_CONFIG, GKE_BIN, "--providers", str(providers))
    node_with(host, GKE_CONFIG, GKE_TEXT)
    assert node_install.main(args) == 0
    partner = host / GKE_BIN.lstrip("/") / f"{PROGRAM}-partner"
    assert os.readlink(partner) == PROGRAM
    written = yaml.safe_load((host / GKE_CONFIG.lstrip("/")).read_text())
    assert [p["name"] for p in written["providers"]] == [
        "auth-provider-gcp", PROGRAM, f"{PROGRAM}-partner"
    ]  # fmt: skip


# -- the shipped DaemonSet ------------------------------------------------------------------------
def shipped_documents() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d}


def option(args: list[str], name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]


def test_the_daemonset_installs_the_shipped_one_quay_files() -> None:
    """The ConfigMap holds packaging/kubernetes/one-quay's files; both containers run the
    installer with the same mounts and arguments (the second one keeps it installed); every
    node path the installer writes is a hostPath mounted under --host-root."""
    documents = shipped_documents()
    data = documents["ConfigMap"]["data"]
    entries = yaml.safe_load(data["credential-providers.yaml"])
    assert entries == yaml.safe_load((ONE_QUAY / "credential-providers.yaml").read_text())
    assert all(provider_problems(p) == [] for p in entries["providers"])
    assert data["config.toml"] == (ONE_QUAY / "config.toml").read_text()

    pod = documents["DaemonSet"]["spec"]["template"]["spec"]
    assert documents["DaemonSet"]["spec"]["selector"]["matchLabels"].items() <= (
        documents["DaemonSet"]["spec"]["template"]["metadata"]["labels"].items()
    )
    (install,) = pod["initContainers"]
    (keep,) = pod["containers"]
    assert keep["image"] == install["image"]
    assert keep["args"] == [*install["args"], "--watch=300"]
    assert keep["volumeMounts"] == install["volumeMounts"]
    assert keep["securityContext"] == install["securityContext"]
    args = install["args"]
    assert args[0] == "install-on-node"
    parsed = node_install.parser().parse_args(args[1:])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in install["volumeMounts"]}
    assert len(mounts) == len(install["volumeMounts"])
    host_root = str(parsed.host_root)

    def mounted_from_host(path: str) -> bool:
        return any(
            "hostPath" in volume
            and mount == host_root + volume["hostPath"]["path"]
            and (path + "/").startswith(volume["hostPath"]["path"] + "/")
            for mount, volume in mounts.items()
        )

    for path in (
        os.path.dirname(parsed.kubelet_config),
        parsed.bin_dir,
        node_install.NODE_FILES_DIR,
    ):
        assert mounted_from_host(path), path
    (config_mount,) = [m for m, v in mounts.items() if "configMap" in v]
    for given in [parsed.providers, *parsed.node_file]:
        assert given.parent == Path(config_mount) and given.name in data, given
    toml = f"{node_install.NODE_FILES_DIR}/{parsed.node_file[0].name}"
    assert entries["providers"][0]["args"][:2] == ["--config", toml]
    assert install["securityContext"]["readOnlyRootFilesystem"] is True
    assert install["securityContext"]["capabilities"] == {"drop": ["ALL"]}


# -- the kubelet's own code takes what the installer writes ---------------------------------------
@pytest.mark.kubelet_code
@pytest.mark.parametrize(
    ("config", "bin_dir", "text", "others"),
    [
        (EKS_CONFIG, EKS_BIN, EKS_TEXT, [ECR["name"]]),
        (GKE_CONFIG, GKE_BIN, GKE_TEXT, ["auth-provider-gcp"]),
        (GKE_CONFIG, GKE_BIN, GKE_TEXT.replace("/v1\n", "/v1beta1\n", 1), ["auth-provider-gcp"]),
        (node_install.DEFAULT_KUBELET_CONFIG, node_install.DEFAULT_BIN_DIR, None, []),
    ],
    ids=["eks-json", "gke-yaml", "v1beta1-yaml", "none"],
)
def test_the_kubelet_accepts_the_merged_config(
    kubelet_code: Path,  # noqa: F811 (tests.test_kubelet_code's fixture)
    kube_issuer: KubeIssuer,
    tmp_path: Path,
    config: str,
    bin_dir: str,
    text: str | None,
    others: list[str],
) -> None:
    host = tmp_path / "host"
    if text is not None:
        node_with(host, config, text)
    source = fake_provider(tmp_path / "provider")
    assert node_install.main(install_args(host, source, config, bin_dir)) == 0
    bins = host / bin_dir.lstrip("/")
    for name in others:  # the cloud's own providers, as the node has them
        fake_provider(tmp_path / name).joinpath(PROGRAM).rename(bins / name)
    written = host / config.lstrip("/")
    assert [p["name"] for p in yaml.safe_load(written.read_text())["providers"]] == [
        *others, PROGRAM
    ]  # fmt: skip
    running = Kubelet(kubelet_code, written, bins, APIServer(kube_issuer), {})
    try:
        assert running.refused is None
    finally:
        running.close()


# -- the image, run by podman against a fake host root ---------------------------------------------
def storage() -> Path:
    return Path(os.environ.get(STORAGE_ENV, "").strip() or DEFAULT_STORAGE)


def global_options() -> list[str]:
    """Container storage of its own (vfs: no overlay mount needed), and runc where it is
    installed (crun refuses this machine's hybrid cgroup layout)."""
    options = ["--root", str(storage() / "root"), "--runroot", str(storage() / "run")]
    options += ["--storage-driver", "vfs"]
    return options


def podman_run_options() -> list[str]:
    """No network; file and process limits below the machine's, which an unprivileged
    setrlimit may set (podman's defaults are above them)."""
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    return [*runtime, "run", "--rm", "--network=none", *limits]


@pytest.fixture(scope="module")
def installer_image() -> str:
    for tool in ("podman", "buildah"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (.ci/node-install.sh installs it)")
    chosen = os.environ.get(IMAGE_ENV, "").strip()
    if chosen:
        return chosen
    provider = os.environ.get(FROZEN_ENV, "").strip()
    if not provider:
        unavailable(f"neither ${IMAGE_ENV} nor ${FROZEN_ENV} is set (.ci/node-install.sh)")
    image = "localhost/quay-credential-provider-installer:test"
    done = subprocess.run(
        ["bash", str(INSTALLER / "build-image.sh"), provider, image],
        capture_output=True,
        text=True,
        env={**os.environ, "BUILDAH_OPTIONS": " ".join(global_options())},
        timeout=CONTAINER_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return image


class Pod:
    """The DaemonSet's installer container as podman runs it: its hostPath volumes under a
    fake host root, its ConfigMap as files, its security context and its arguments, with the
    node paths changed the way packaging/installer/README.md says for a node's own flags."""

    def __init__(self, image: str, host: Path, config: str, bin_dir: str, extra: Path) -> None:
        self.image, self.host = image, host
        text = DAEMONSET.read_text()
        text = text.replace(node_install.DEFAULT_KUBELET_CONFIG, config)
        text = text.replace("/etc/kubernetes", os.path.dirname(config))
        text = text.replace(node_install.DEFAULT_BIN_DIR, bin_dir)
        documents = {d["kind"]: d for d in yaml.safe_load_all(text) if d}
        self.spec = documents["DaemonSet"]["spec"]["template"]["spec"]
        self.files = extra / "config"
        self.files.mkdir(parents=True)
        for name, content in documents["ConfigMap"]["data"].items():
            (self.files / name).write_text(content)
        self.extra = extra

    def command(self, *more: str, watch: bool = False, mounts: tuple[str, ...] = ()) -> list[str]:
        (container,) = self.spec["containers" if watch else "initContainers"]
        security = container["securityContext"]
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        options = [f"--user={security['runAsUser']}:{security['runAsGroup']}"]
        if security.get("readOnlyRootFilesystem"):
            options.append("--read-only")
        options += [f"--cap-drop={c.lower()}" for c in security["capabilities"]["drop"]]
        if security.get("allowPrivilegeEscalation") is False:
            options.append("--security-opt=no-new-privileges")
        bound = set()
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "hostPath" in volume:
                source = self.host / volume["hostPath"]["path"].lstrip("/")
                if volume["hostPath"].get("type") == "DirectoryOrCreate":
                    source.mkdir(parents=True, exist_ok=True)
            else:
                source = self.files
            binding = f"{source}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") else "")
            if binding not in bound:  # one directory for both (EKS): one mount
                bound.add(binding)
                options.append(f"--volume={binding}")
        options += [f"--volume={m}" for m in mounts]
        return [
            "podman", *global_options(), *podman_run_options(), *options,
            self.image, *container["args"], *more,
        ]  # fmt: skip

    def run(self, *more: str, mounts: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*more, mounts=mounts),
            capture_output=True,
            text=True,
            timeout=CONTAINER_SECONDS,
            check=False,
        )


def lines_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.removeprefix(f"{PROGRAM} install-on-node: ") for line in done.stdout.splitlines()]


@pytest.mark.node_install
@pytest.mark.parametrize(
    ("config", "bin_dir", "text", "others"),
    [
        (EKS_CONFIG, EKS_BIN, EKS_TEXT, [ECR["name"]]),
        (GKE_CONFIG, GKE_BIN, GKE_TEXT, ["auth-provider-gcp"]),
        (node_install.DEFAULT_KUBELET_CONFIG, node_install.DEFAULT_BIN_DIR, None, []),
    ],
    ids=["eks-json", "gke-yaml", "none"],
)
def test_the_image_installs_on_a_node(
    installer_image: str,
    tmp_path: Path,
    config: str,
    bin_dir: str,
    text: str | None,
    others: list[str],
) -> None:
    host = tmp_path / "host"
    if text is not None:
        node_with(host, config, text)
    pod = Pod(installer_image, host, config, bin_dir, tmp_path)
    done = pod.run()
    assert done.returncode == 0, done.stderr
    said = lines_of(done)
    assert said[0].startswith(f"copied the provider into {bin_dir}/.quay-credential-provider/")
    if text is None:
        assert said[-1].startswith("the kubelet reads no CredentialProviderConfig yet: start it")
    else:
        assert said[-1] == f"restart the kubelet: it reads {config} only when it starts"
    written = (host / config.lstrip("/")).read_text()
    assert written.lstrip().startswith("{") == config.endswith(".json")
    document = yaml.safe_load(written)
    assert [p["name"] for p in document["providers"]] == [*others, PROGRAM]
    if text is not None:
        assert document["providers"][0] == yaml.safe_load(text)["providers"][0]
    assert document["providers"][-1] == ours()[0]
    # the copied provider runs on the node, outside the image
    provider = host / bin_dir.lstrip("/") / PROGRAM
    version = subprocess.run(
        [str(provider), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert version.stdout.startswith(f"{PROGRAM} ")
    node_toml = host / "etc" / "docker-credential-quayfed" / "config.toml"
    assert node_toml.read_bytes() == (ONE_QUAY / "config.toml").read_bytes()

    before = snapshot(host)
    again = pod.run()
    assert again.returncode == 0, again.stderr
    assert lines_of(again) == ["the node already has it; nothing changed"]
    assert snapshot(host) == before, "a second run changed the node"


@pytest.mark.node_install
def test_the_image_refuses_a_broken_file_and_leaves_the_node_as_it_was(
    installer_image: str, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    node_with(host, GKE_CONFIG, GKE_TEXT + "  - name: [unclosed\n")
    pod = Pod(installer_image, host, GKE_CONFIG, GKE_BIN, tmp_path)
    pod.command()  # creates the hostPath directories, as the kubelet would
    before = snapshot(host)
    done = pod.run()
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"{PROGRAM} install-on-node: {GKE_CONFIG} is neither JSON nor YAML at line 11; "
        "nothing on the node was changed\n"
    )
    assert snapshot(host) == before


@pytest.mark.node_install
def test_the_provider_path_is_always_a_whole_provider(installer_image: str, tmp_path: Path) -> None:
    """While the image switches the node from another build (``--source``) to its own, a
    reader resolving the path the kubelet execs finds every file of one build or the other,
    complete, every time."""
    host = tmp_path / "host"
    node_with(host, EKS_CONFIG, EKS_TEXT)
    pod = Pod(installer_image, host, EKS_CONFIG, EKS_BIN, tmp_path)
    older = fake_provider(tmp_path / "older", "older")
    first = pod.run("--source=/older", mounts=(f"{older}:/older:ro",))
    assert first.returncode == 0, first.stderr
    provider = host / EKS_BIN.lstrip("/") / PROGRAM

    def build_in(folder: Path) -> str:
        """What the folder holds: each file's path and size, as one digest."""
        found = sorted((str(p.relative_to(folder)), p.lstat().st_size) for p in folder.rglob("*"))
        return hashlib.sha256(repr(found).encode()).hexdigest()

    stop = threading.Event()
    seen: dict[str, int] = {}

    def read() -> None:
        while not stop.is_set():
            found = build_in(provider.resolve().parent)
            seen[found] = seen.get(found, 0) + 1

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = pod.run()
    finally:
        stop.set()
        reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    image_folder = provider.resolve().parent
    assert (image_folder / "yaml").is_dir() and (image_folder / "libpython3.11.so.1.0").is_file()
    older_build, image_build = build_in(older), build_in(image_folder)
    assert seen.get(older_build, 0) > 0, "the reader ran before the switch"
    assert set(seen) <= {older_build, image_build}, "a reader found a partial provider"


@pytest.mark.node_install
def test_the_watching_container_puts_back_what_the_node_lost(
    installer_image: str, tmp_path: Path
) -> None:
    """The DaemonSet's main container (``--watch``): the node's file rewritten without our
    entry (a node image update, say) has it again at the next check; SIGTERM stops it."""
    host = tmp_path / "host"
    node_with(host, EKS_CONFIG, EKS_TEXT)
    pod = Pod(installer_image, host, EKS_CONFIG, EKS_BIN, tmp_path)
    name = f"quayfed-node-install-{os.getpid()}"
    command = pod.command(watch=True)
    at = command.index("run") + 1
    command = [*command[:at], "--detach", f"--name={name}", *command[at:]]
    command.remove("--rm")  # its log and exit code are read after it stops
    command[command.index("--watch=300")] = "--watch=1"
    started = subprocess.run(command, capture_output=True, text=True, timeout=CONTAINER_SECONDS)
    assert started.returncode == 0, started.stderr
    path = host / EKS_CONFIG.lstrip("/")
    try:
        for expected in ([ECR["name"], PROGRAM], [ECR["name"], PROGRAM]):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (
                    path.exists()
                    and [
                        p["name"] for p in json.loads(path.read_text() or "{}").get("providers", [])
                    ]
                    == expected
                ):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{path} never listed {expected}: {path.read_text()}")
            path.write_text(EKS_TEXT)  # the node's own file again, without our entry
    finally:
        stopped = subprocess.run(
            ["podman", *global_options(), "stop", "--time=20", name],
            capture_output=True, text=True, timeout=CONTAINER_SECONDS, check=False,
        )  # fmt: skip
        exited = subprocess.run(
            ["podman", *global_options(), "inspect", "--format={{.State.ExitCode}}", name],
            capture_output=True, text=True, timeout=CONTAINER_SECONDS, check=False,
        )  # fmt: skip
        logs = subprocess.run(
            ["podman", *global_options(), "logs", name],
            capture_output=True, text=True, timeout=CONTAINER_SECONDS, check=False,
        )  # fmt: skip
        subprocess.run(
            ["podman", *global_options(), "rm", "--force", name],
            capture_output=True, timeout=CONTAINER_SECONDS, check=False,
        )  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    assert exited.stdout.strip() == "0", "SIGTERM ends it (0), not the SIGKILL after --time (137)"
    assert logs.stdout.count(f"merged {PROGRAM} into {EKS_CONFIG}") >= 2, logs.stdout


@pytest.mark.node_install
def test_the_same_provider_gives_the_same_image(installer_image: str, tmp_path: Path) -> None:
    """Two builds from one provider folder, seconds apart, in storage of their own, are one
    image (one ID): buildah commits with one timestamp for the image and its files
    (SOURCE_DATE_EPOCH, else 1980-01-01), so the image a release names can be rebuilt."""
    provider = os.environ.get(FROZEN_ENV, "").strip()
    if not provider:
        unavailable(f"${FROZEN_ENV} is not set (.ci/frozen.sh builds the provider)")
    options = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    options += ["--storage-driver", "vfs"]
    ids = []
    for n in (1, 2):
        done = subprocess.run(
            ["bash", str(INSTALLER / "build-image.sh"), provider, f"localhost/twice:{n}"],
            capture_output=True,
            text=True,
            env={**os.environ, "BUILDAH_OPTIONS": " ".join(options)},
            timeout=CONTAINER_SECONDS,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.split()[-1])
        time.sleep(1.1)  # a clock that moved on must not show in the image
    assert ids[0] == ids[1], ids
    subprocess.run(
        ["buildah", *options, "rmi", "--all", "--force"],
        capture_output=True, timeout=CONTAINER_SECONDS, check=False,
    )  # fmt: skip
