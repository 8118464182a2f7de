"""The self-contained quay-credential-provider (packaging/build_frozen.py) in a root with no
Python at all, as on Flatcar, Bottlerocket or Talos: a chroot holding only the executable, the
shared libraries that it and what it unpacks need (as ``ldd`` lists them), an empty /tmp and
/node (the node's config, CA file and token). The kubelet's requests reach it on stdin; the
test issuer and the Quay emulator answer over loopback TLS (a chroot shares the network).

The executable is built here, or taken from $QUAYFED_FROZEN_PROVIDER (.ci/run builds it
beside the linters). Without root or PyInstaller (the freeze extra) the tests skip; under
CI=true they fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from docker_credential_quayfed import kubelet
from quay_sandbox.quay import QuayEmulator
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
PROVIDER_ENV = "QUAYFED_FROZEN_PROVIDER"
INSIDE = "/quay-credential-provider"
NODE = "/node"
#: the node's config with the paths outside the root, for the installed launcher
HOST_CONFIG = "host.toml"
#: what nothing in the root may be called: an interpreter or its library
PYTHON_NAMES = re.compile(r"^(python.*|lib.*python.*)$", re.IGNORECASE)
_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(\S+)(?: \(0x[0-9a-f]+\))?$")


def build_frozen() -> ModuleType:
    """packaging/build_frozen.py (packaging/ is no package: its name would shadow PyPI's)."""
    return load_script(ROOT / "packaging" / "build_frozen.py")


def unavailable(reason: str) -> None:
    """Skip, except under CI=true, which must run these tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run it")
    pytest.skip(reason)


def shared_libraries(elf: Path, search: Path | None = None) -> set[Path]:
    """The libraries ``ldd`` resolves for ``elf``, outside ``search`` (where the bundled ones
    are), the dynamic loader included; a library it cannot find fails the test."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(search)} if search else None
    done = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env, check=False)
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
    return sorted(
        str(path.relative_to(root)) for path in root.rglob("*") if PYTHON_NAMES.match(path.name)
    )


@pytest.fixture(scope="module")
def frozen_provider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0 or not shutil.which("chroot"):
        unavailable("the chroot test needs root and chroot(8)")
    if importlib.util.find_spec("PyInstaller") is None:  # it builds, and reads what is inside
        unavailable("PyInstaller is not installed (pip install '.[freeze]')")
    chosen = os.environ.get(PROVIDER_ENV, "").strip()
    if chosen:
        path = Path(chosen).resolve()
        assert os.access(path, os.X_OK), f"${PROVIDER_ENV}={chosen} is not an executable"
        return path
    builder = build_frozen()
    output = tmp_path_factory.mktemp("frozen") / str(builder.NAME)
    try:
        builder.build(output)
    except builder.BuildError as exc:
        pytest.fail(f"build_frozen: {exc}")
    return output


@pytest.fixture(scope="module")
def chroot(frozen_provider: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the executable at /, the system libraries it needs and an empty /tmp."""
    root = tmp_path_factory.mktemp("node-root")
    unpacked = tmp_path_factory.mktemp("bundled")
    libraries = shared_libraries(frozen_provider)
    bundled = []
    for name, data in build_frozen().bundled_files(frozen_provider).items():
        path = unpacked / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if data[:4] == b"\x7fELF":  # libpython, libssl, the extension modules
            bundled.append(path)
    for path in bundled:  # once all are there: a bundled library is found before the system's
        libraries |= shared_libraries(path, search=unpacked)
    assert any(p.name.startswith("ld-linux") for p in libraries), libraries
    assert any(p.name.startswith("libc.so") for p in libraries), libraries
    for library in libraries:
        copy_into(root, library)
    shutil.copyfile(frozen_provider, root / INSIDE.lstrip("/"))
    (root / INSIDE.lstrip("/")).chmod(0o755)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    assert python_files(root) == [], "the root must hold no Python"
    return root


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
    assert list((chroot / "tmp").iterdir()) == [], "the executable left its unpacked copy"
    assert python_files(chroot) == [], "the root must hold no Python"


def run_in(root: Path, stdin: str, *args: str) -> ProviderRun:
    """The kubelet's exec of the provider, inside ``root``."""
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": f"{NODE}/cache",
        "HOME": NODE,
        "TMPDIR": "/tmp",
        "PATH": "/",
    }
    chroot = Path(shutil.which("chroot") or "chroot")
    return run_provider(stdin, executable=chroot, args=(str(root), INSIDE, *args), env=env)


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
