"""The self-contained quay-credential-provider (packaging/build_frozen.py): a folder holding
the executable, its libpython and everything it loads, behind one path (a symlink), that needs
no glibc above 2.28 and runs in a root with no Python at all, as on Flatcar, Bottlerocket or
Talos: a chroot holding only the link and the folder, the build machine's shared libraries that
the folder's ELF files need (as ``ldd`` lists them), a noexec /tmp and /node (the node's
config, CA file and token). The kubelet's requests reach it on stdin; the test issuer and the
Quay emulator answer over loopback TLS (a chroot shares the network). It runs in the process
the kubelet started: a SIGKILL of that pid leaves no process and no file behind.

Each test runs for the amd64 provider and for the arm64 one, which runs under qemu-user (its
emulation registered with binfmt_misc with the F flag, so that it works inside the chroot too;
the chroot then holds Debian's arm64 loader and libc). Each is built here (the toolchain is
cached, see packaging/README.md), or taken from $QUAYFED_FROZEN_PROVIDER and
$QUAYFED_FROZEN_PROVIDER_ARM64 (.ci/run builds them beside the linters: the link; its folder
is beside it). Without root, chroot(8), a tmpfs mount or the arm64 emulation the tests skip;
under CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from docker_credential_quayfed import kubelet
from quay_sandbox.quay import QuayEmulator
from tests.support import unavailable
from tests.support.oidc_provider import KubeIssuer
from tests.support.scripts import load_script
from tests.test_kubelet_golden import (
    GOLDEN,
    NODE_ROBOT,
    PULLER_ROBOT,
    GoldenNode,
    ProviderRun,
    golden_node,
    response_problems,
    run_provider,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
#: each machine the provider is built for: the variable naming a built one, and its ELF
#: header's Machine (readelf -h)
MACHINES = {
    "x86_64": ("QUAYFED_FROZEN_PROVIDER", "Advanced Micro Devices X86-64"),
    "aarch64": ("QUAYFED_FROZEN_PROVIDER_ARM64", "AArch64"),
}
#: what runs an arm64 file on this machine: its emulation, and Debian's arm64 loader
EMULATION = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
LOADERS = {"aarch64": Path("/lib/ld-linux-aarch64.so.1")}
INSIDE = "/quay-credential-provider"
NODE = "/node"
#: the node's config with the paths outside the root, for the installed launcher
HOST_CONFIG = "host.toml"
#: what nothing in the root may be called: an interpreter or its library
PYTHON_NAMES = re.compile(r"^(python.*|lib.*python.*)$", re.IGNORECASE)
_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(\S+)(?: \(0x[0-9a-f]+\))?$")
#: how long a started provider may take to reach its read of stdin
STARTED_DEADLINE = 30.0


def build_frozen() -> ModuleType:
    """packaging/build_frozen.py (packaging/ is no package: its name would shadow PyPI's)."""
    return load_script(ROOT / "packaging" / "build_frozen.py")


def shared_libraries(elf: Path, search: Path | None = None, machine: str = "") -> set[Path]:
    """The libraries ``ldd`` resolves for ``elf`` (for another ``machine``: that machine's
    loader, ``--list``, which is what ldd runs), outside ``search`` (where the bundled ones
    are), the dynamic loader included; a library it cannot find fails the test."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(search)} if search else None
    lister = [str(LOADERS[machine]), "--list"] if machine in LOADERS else ["ldd"]
    done = subprocess.run([*lister, str(elf)], capture_output=True, text=True, env=env, check=False)
    if "not a dynamic executable" in done.stdout + done.stderr:
        return set()
    assert done.returncode == 0, done.stderr
    found = set()
    for line in done.stdout.splitlines():
        assert "not found" not in line, f"{elf.name}: {line.strip()}"
        if line.strip() == "statically linked":  # an extension that needs nothing
            continue
        match = _LDD_LINE.match(line)
        assert match, f"ldd {elf.name}: unexpected line {line!r}"
        path = Path(match.group(2))
        if path.is_absolute() and not (search and path.parent == search):
            found.add(path)
    return found


def copy_into(root: Path, path: Path) -> None:
    """``path`` at the same place under ``root``: the file's content under the name asked for."""
    target = root / path.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path.resolve(), target)
    target.chmod(0o755)


def python_files(root: Path) -> list[str]:
    """What is called like an interpreter or its library in ``root``, outside the provider's
    own folder (which holds its libpython and extension modules)."""
    folder = root / (INSIDE.lstrip("/") + ".d")
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if PYTHON_NAMES.match(path.name) and folder not in path.parents
    )


def is_mounted(path: Path) -> bool:
    return any(
        line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines()
    )


def emulation_problem(machine: str) -> str:
    """Why a file built for ``machine`` cannot run here ('' when it can)."""
    if machine == platform.machine():
        return ""
    if machine not in LOADERS or platform.machine() != "x86_64":
        return f"no emulation of {machine} on {platform.machine()}"
    if not EMULATION.is_file() or EMULATION.read_text().split("\n")[0] != "enabled":
        return f"no {machine} emulation registered ({EMULATION}; .ci/frozen-arm64.sh registers it)"
    if "F" not in re.findall(r"^flags: (\S*)$", EMULATION.read_text(), re.M)[0]:
        return f"{EMULATION} lacks the F flag: its interpreter would be missing in a chroot"
    if not LOADERS[machine].exists():
        return f"no {LOADERS[machine]} (apt-get install libc6:arm64)"
    return ""


def machine_of(elf: Path) -> str:
    """The Machine of ``elf``'s header, as readelf -h says it."""
    done = subprocess.run(["readelf", "-h", str(elf)], capture_output=True, text=True, check=True)
    found = re.findall(r"^\s*Machine:\s*(.+?)\s*$", done.stdout, re.M)
    assert found, done.stdout
    return str(found[0])


@pytest.fixture(scope="module", params=list(MACHINES), ids=["amd64", "arm64"])
def machine(request: pytest.FixtureRequest) -> str:
    """The machine the provider under test is built for (arm64 runs under qemu-user)."""
    return str(request.param)


@pytest.fixture(scope="module")
def frozen_provider(machine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The link the kubelet execs; its folder is beside it."""
    if os.geteuid() != 0 or not shutil.which("chroot"):
        unavailable("the chroot test needs root and chroot(8)")
    problem = emulation_problem(machine)
    if problem:
        unavailable(problem)
    builder = build_frozen()
    variable = MACHINES[machine][0]
    chosen = os.environ.get(variable, "").strip()
    if chosen:
        path = Path(chosen).absolute()
        assert os.access(path, os.X_OK), f"${variable}={chosen} is not an executable"
    else:
        path = tmp_path_factory.mktemp(f"frozen-{machine}") / str(builder.NAME)
        command = [
            sys.executable,
            str(ROOT / "packaging" / "build_frozen.py"),
            "--output",
            str(path),
            "--arch",
            machine,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"build_frozen: {done.stdout}{done.stderr}"
    assert path.is_symlink(), f"{path} must be a link into its folder"
    assert builder.folder_of(path).is_dir()
    return path


@pytest.fixture(scope="module")
def chroot(
    frozen_provider: Path, machine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A root with the link at / and its folder beside it, the build machine's system
    libraries that they need (arm64: Debian's libc6:arm64), and a /tmp mounted noexec."""
    root = tmp_path_factory.mktemp("node-root")
    folder = build_frozen().folder_of(frozen_provider)
    inside = root / INSIDE.lstrip("/")
    shutil.copytree(folder, inside.with_name(folder.name), symlinks=True)
    inside.symlink_to(os.readlink(frozen_provider))
    copied = inside.with_name(folder.name)
    libraries: set[Path] = set()
    for elf in build_frozen().elf_files(copied):  # a bundled library is found before the system's
        libraries |= shared_libraries(elf, search=elf.parent, machine=machine)
    assert any(p.name.startswith("ld-linux") for p in libraries), libraries
    assert any(p.name.startswith("libc.so") for p in libraries), libraries
    for library in libraries:
        copy_into(root, library)
    tmp = root / "tmp"
    tmp.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noexec,nosuid,nodev,mode=1777", "tmpfs", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a noexec tmpfs: {mounted.stderr.strip()}")
    try:
        assert python_files(root) == [], "the root must hold no Python"
        yield root
    finally:
        subprocess.run(["umount", str(tmp)], check=False)


@pytest.fixture
def node(
    chroot: Path, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> Iterator[tuple[GoldenNode, Path]]:
    """The golden node's config with its CA file and node token inside the root (/node)."""
    directory = chroot / NODE.lstrip("/")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    setup = golden_node(quay, kube_issuer, directory)
    shutil.copyfile(setup.config, directory / HOST_CONFIG)  # the same node seen from outside
    shutil.copyfile(kube_issuer.ca_cert, directory / "ca.pem")
    setup.values.update(ca_bundle=f"{NODE}/ca.pem", node_token_file=f"{NODE}/node-token")
    setup.config.write_text(setup.fill((GOLDEN / "node.toml").read_text()))
    yield setup, chroot
    assert list((chroot / "tmp").iterdir()) == [], "the provider left files in /tmp"
    assert python_files(chroot) == [], "the root must hold no Python"


def node_env() -> dict[str, str]:
    return {
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": f"{NODE}/cache",
        "HOME": NODE,
        "TMPDIR": "/tmp",
        "PATH": "/",
    }


def run_in(root: Path, stdin: str, *args: str) -> ProviderRun:
    """The kubelet's exec of the provider, inside ``root``."""
    chroot = Path(shutil.which("chroot") or "chroot")
    return run_provider(stdin, executable=chroot, args=(str(root), INSIDE, *args), env=node_env())


def kubelet_request(image: str, token: str = "", robot: str = "") -> str:
    body: dict[str, object] = {
        "apiVersion": kubelet.API_VERSION,
        "kind": kubelet.REQUEST_KIND,
        "image": image,
    }
    if token:
        body["serviceAccountToken"] = token
        body["serviceAccountAnnotations"] = {kubelet.ROBOT_ANNOTATION: robot}
    return json.dumps(body)


@pytest.mark.parametrize(
    ("stdin", "args", "said"),
    [
        ("{", (), "not a JSON CredentialProviderRequest"),
        (kubelet_request("nginx"), (), "names no registry host"),
        ("", ("--bogus",), "unknown argument '--bogus'"),
    ],
)
def test_a_malformed_request_is_refused_in_one_line(
    node: tuple[GoldenNode, Path], stdin: str, args: tuple[str, ...], said: str
) -> None:
    setup, root = node
    frozen = run_in(root, stdin, "--config", f"{NODE}/config.toml", *args)
    line = frozen.refused()  # one stderr line, nothing on stdout, no traceback
    assert said in line
    # Exactly what the installed launcher (bin/quay-credential-provider) says and exits with.
    launcher = setup.run(stdin, args=("--config", str(setup.directory / HOST_CONFIG), *args))
    assert (frozen.returncode, line) == (launcher.returncode, launcher.refused())


def test_a_pod_identity_request_is_answered(
    node: tuple[GoldenNode, Path], quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    _, root = node
    text = kubelet_request(
        f"{quay.host}/quay_federation/app:1", kube_issuer.mint("apps", "puller-a"), PULLER_ROBOT
    )
    response = run_in(root, text, "--config", f"{NODE}/config.toml").response()
    assert response_problems(response, json.loads(text)) == []
    assert response["auth"][quay.host]["username"] == PULLER_ROBOT
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1
    assert len(list((root / NODE.lstrip("/") / "cache").glob("*.token"))) == 1


def test_a_node_identity_request_is_answered(
    node: tuple[GoldenNode, Path], quay: QuayEmulator
) -> None:
    """No token in the request: the node's own token file, exchanged as [registries] says."""
    _, root = node
    text = kubelet_request(f"{quay.host}/quay_federation/app:1")
    response = run_in(root, text, "--config", f"{NODE}/config.toml").response()
    assert response_problems(response, json.loads(text)) == []
    assert response["auth"][quay.host]["username"] == NODE_ROBOT
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1


def test_the_executable_and_libpython_are_built_for_the_machine(
    frozen_provider: Path, machine: str
) -> None:
    """readelf's Machine of the executable and libpython: what the tarball's name says."""
    builder = build_frozen()
    folder = builder.folder_of(frozen_provider)
    libpython = sorted(folder.glob("libpython3*"))
    assert libpython, sorted(p.name for p in folder.iterdir())
    for elf in (frozen_provider.resolve(), *libpython):
        assert machine_of(elf) == MACHINES[machine][1], elf
    tarballs = [p.name for p in frozen_provider.parent.glob(f"{builder.NAME}-*.tar.gz")]
    assert tarballs and all(name.endswith(f"-linux-{machine}.tar.gz") for name in tarballs)


def test_nothing_in_the_folder_needs_a_glibc_above_2_28(frozen_provider: Path) -> None:
    builder = build_frozen()
    report = builder.check_glibc(builder.folder_of(frozen_provider), "2.28")
    names = {Path(name).name for name in report}
    assert builder.NAME in names, report
    assert any(name.startswith("libpython3") for name in names), report
    assert any(name.startswith("_ssl.") for name in names), report  # OpenSSL is linked in
    needed = [builder.version_key(v) for v in report.values() if v != "-"]
    assert needed and max(needed) <= (2, 28), report
    # and no file looks for libraries outside the folder (the toolchain's directory)
    builder.check_search_paths(builder.folder_of(frozen_provider))


def test_the_glibc_check_fails_on_a_library_built_for_a_newer_glibc(
    frozen_provider: Path, tmp_path: Path
) -> None:
    """A library of the build machine (Debian 12: glibc 2.36) beside the executable fails the
    check, by name: the check reads every file, not just the ones PyInstaller picked."""
    builder = build_frozen()
    interpreter = Path(sys.executable).resolve()
    newer = [
        path
        for path in [*sorted(shared_libraries(interpreter)), interpreter]
        if re.fullmatch(r"2\.\d+", (builder.glibc_needed(path) or ["-"])[-1])
        and builder.version_key(builder.glibc_needed(path)[-1]) > (2, 28)
    ]
    if not newer:
        pytest.skip(f"nothing of {interpreter} here needs a glibc above 2.28")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copyfile(builder.folder_of(frozen_provider) / builder.NAME, folder / builder.NAME)
    shutil.copyfile(newer[0], folder / newer[0].name)
    with pytest.raises(builder.BuildError, match=rf"{re.escape(newer[0].name)} needs GLIBC_2\.\d+"):
        builder.check_glibc(folder, "2.28")
    assert builder.check_glibc(folder, "99.0")[builder.NAME] != "-"


def test_requests_are_answered_with_a_noexec_tmp(
    node: tuple[GoldenNode, Path], quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """/tmp, where $TMPDIR points, is mounted noexec: an executable there does not run, and the
    provider, which unpacks nothing, answers all the same."""
    _, root = node
    tmp = root / "tmp"
    options = [
        line.split()[3]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1] == str(tmp)
    ]
    assert options and "noexec" in options[-1].split(","), options
    probe = tmp / "probe"
    shutil.copyfile(root / INSIDE.lstrip("/"), probe)
    probe.chmod(0o755)
    with pytest.raises(PermissionError):
        subprocess.run([str(probe), "--version"], capture_output=True, check=False, timeout=30)
    probe.unlink()
    text = kubelet_request(
        f"{quay.host}/quay_federation/app:1", kube_issuer.mint("apps", "puller-a"), PULLER_ROBOT
    )
    response = run_in(root, text, "--config", f"{NODE}/config.toml").response()
    assert response["auth"][quay.host]["username"] == PULLER_ROBOT


def processes_in(root: Path) -> dict[int, str]:
    """Every process whose root directory is ``root`` (chrooted there), with its executable."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == str(root):
                found[int(entry.name)] = os.readlink(entry / "exe")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def children_of(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(c) for c in (task / "children").read_text().split()}
    return children


def test_a_kill_of_the_started_process_leaves_nothing_behind(node: tuple[GoldenNode, Path]) -> None:
    """The kubelet kills the process it started when a request times out: that process is the
    interpreter itself (libpython loaded in it, no child), so nothing outlives it, and it
    wrote nothing to /tmp (checked by the fixture)."""
    _, root = node
    chroot = shutil.which("chroot") or "chroot"
    process = subprocess.Popen(  # stdin stays open: the provider waits for the request
        [chroot, str(root), INSIDE, "--config", f"{NODE}/config.toml"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **node_env()},
    )
    try:
        deadline = time.monotonic() + STARTED_DEADLINE
        maps = Path(f"/proc/{process.pid}/maps")
        while "libpython3" not in maps.read_text():
            assert process.poll() is None, f"the provider exited {process.returncode}"
            assert time.monotonic() < deadline, "the started process never loaded libpython"
            time.sleep(0.05)
        assert processes_in(root) == {process.pid: os.readlink(f"/proc/{process.pid}/exe")}
        assert children_of(process.pid) == set()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=STARTED_DEADLINE) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STARTED_DEADLINE)
        assert process.stdin is not None
        process.stdin.close()
    assert processes_in(root) == {}


def test_release_files_carry_a_checksum_and_an_sbom(tmp_path: Path) -> None:
    """Beside the tarball: a SHA-256 that ``sha256sum -c`` accepts, and a CycloneDX SBOM
    naming the package's Python dependencies and the Debian sources of the interpreter."""
    import hashlib
    from importlib import metadata

    builder = build_frozen()
    tarball = tmp_path / "quay-credential-provider-0.1.0-linux-x86_64.tar.gz"
    tarball.write_bytes(b"not really a tarball, but bytes to hash")
    checksum, bom = builder.write_release_files(tarball, "0.1.0")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert checksum.read_text() == f"{digest}  {tarball.name}\n"
    checked = subprocess.run(
        ["sha256sum", "-c", checksum.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    sbom = json.loads(bom.read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.5")
    assert sbom["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": digest}]
    by_name = {component["name"]: component for component in sbom["components"]}
    for name in ("httpx", "pyjwt", "platformdirs", "certifi"):
        assert by_name[name]["version"] == metadata.version(name), name
        assert by_name[name]["purl"] == f"pkg:pypi/{name}@{metadata.version(name)}"
    pins = builder.source_pins()
    assert set(pins) >= {"cpython", "openssl", "zlib", "libffi"}
    assert by_name["cpython"]["version"] == pins["cpython"][1]
    assert by_name["openssl"]["purl"].startswith("pkg:deb/debian/openssl@")
    target = sbom["metadata"]["component"]["properties"]
    assert target == [{"name": "quayfed:target", "value": f"{platform.machine()}-linux-gnu.2.28"}]
    (zig,) = sbom["metadata"]["tools"]["components"]
    assert zig["name"] == "zig" and zig["purl"] == f"pkg:pypi/ziglang@{zig['version']}", zig
    again = json.loads(builder.write_release_files(tarball, "0.1.0")[1].read_text())
    assert again == sbom, "the SBOM is reproducible"


def test_the_built_tarball_has_its_release_files(frozen_provider: Path, machine: str) -> None:
    """Its checksum and SBOM, which names the machine it was built for."""
    tarballs = sorted(frozen_provider.parent.glob("quay-credential-provider-*.tar.gz"))
    assert tarballs, f"no tarball beside {frozen_provider}"
    for tarball in tarballs:
        checksum = tarball.with_name(tarball.name + ".sha256")
        bom = tarball.with_name(tarball.name.removesuffix(".tar.gz") + ".cdx.json")
        assert checksum.is_file() and bom.is_file(), tarball
        named = {component["name"] for component in json.loads(bom.read_text())["components"]}
        assert {"httpx", "pyjwt", "platformdirs", "cpython", "openssl"} <= named, named
        properties = json.loads(bom.read_text())["metadata"]["component"]["properties"]
        assert {"name": "quayfed:target", "value": f"{machine}-linux-gnu.2.28"} in properties
        checked = subprocess.run(
            ["sha256sum", "-c", checksum.name],
            cwd=tarball.parent,
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
