"""Build dist/quay-credential-provider: the kubelet credential provider as one folder that needs
no Python on the node (Flatcar, Bottlerocket, Talos) and no glibc newer than 2.28 (RHEL 8 and
9, RHCOS, Amazon Linux 2023, Debian 10 and newer).

PyInstaller (``--onedir``) bundles an interpreter, its shared libpython, the package and its
dependencies (httpx, httpcore, h11, anyio, idna, certifi's CA bundle, pyjwt, platformdirs) into
``dist/quay-credential-provider.d/``, whose executable ``dist/quay-credential-provider`` links
to (a relative symlink: the path the kubelet execs). The executable loads everything in place,
in its own process: nothing is unpacked, so a ``noexec`` /tmp does not matter, and a kill of
the process the kubelet started leaves nothing behind. ``dist/quay-credential-provider-VERSION-
linux-ARCH.tar.gz`` holds the link and the folder (the release artefact).

The interpreter is not the one running this script: packaging/frozen/toolchain.sh builds
CPython 3.11 with OpenSSL and zlib linked in, from Debian's source packages, with ``zig cc``
against glibc 2.28's symbol versions (cached under $QUAYFED_FROZEN_CACHE, else
~/.cache/quayfed-frozen: minutes the first time, nothing after), and a venv of it gets the
pinned PyInstaller (the ``freeze`` extra) and the package's dependencies. This script then runs
itself in that venv. ``--python PATH`` freezes with another interpreter that has PyInstaller
and the dependencies installed (the glibc check still applies).

The build fails when any ELF file in the folder (the executable, libpython, every extension
module) needs a glibc symbol version above 2.28 (``readelf --version-info``), when the Quay
emulator, the tests or what only the test, demo and dev extras bring are inside, when a module
the provider needs or the CA bundle is missing, or when the executable does not answer
``--version``. Builds are repeatable: a fixed hash seed and SOURCE_DATE_EPOCH (1980-01-01
unless set) for PyInstaller and the tarball.

``--arch aarch64`` on an x86_64 machine builds the arm64 provider: the toolchain cross-compiles
the interpreter, which then runs under qemu-user (binfmt_misc, with Debian's libc6:arm64 for
its loader), and PyInstaller runs in it; ``ldd`` is that loader's ``--list`` and ``objcopy``,
``objdump`` and ``strip`` binutils-aarch64-linux-gnu's (put first on PATH). The tarball says
``linux-aarch64``.

    python packaging/build_frozen.py [--output PATH] [--python PATH] [--max-glibc 2.28]
        [--arch x86_64|aarch64]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = Path(__file__).resolve().parent / "frozen_entry.py"
TOOLCHAIN = Path(__file__).resolve().parent / "frozen" / "toolchain.sh"
NAME = "quay-credential-provider"
#: the folder beside the link: ``NAME`` + this suffix
FOLDER_SUFFIX = ".d"
DEFAULT_OUTPUT = ROOT / "dist" / NAME
CACHE_ENV = "QUAYFED_FROZEN_CACHE"
#: the newest glibc symbol version anything in the folder may need
MAX_GLIBC = "2.28"
#: test doubles, and what the test, demo and dev extras bring (httpx's optional CLI included)
EXCLUDED = (
    "quay_sandbox",
    "tests",
    "cryptography",
    "trustme",
    "nanoidp",
    "pytest",
    "_pytest",
    "hypothesis",
    "rich",
    "pygments",
    "click",
    "tkinter",
)
#: modules the provider imports on some path: a missing one would fail on a node, not here
REQUIRED = (
    "docker_credential_quayfed.kubelet",
    "docker_credential_quayfed.broker",
    "docker_credential_quayfed.sources",
    "httpx",
    "httpcore",
    "h11",
    "idna",
    "jwt",
    "platformdirs",
    "certifi",
    # install-on-node (the installer image) and the YAML reader only it imports (node extra)
    "docker_credential_quayfed.node_install",
    "yaml",
)
CA_BUNDLE = "certifi/cacert.pem"
_GLIBC_NEED = re.compile(r"Name: GLIBC_(\S+)")


class BuildError(Exception):
    """A step of the build failed; the message says which and what to do."""


def folder_of(output: Path) -> Path:
    """The folder that holds the executable and everything it loads, beside ``output``."""
    return output.with_name(output.name + FOLDER_SUFFIX)


def tarball_of(output: Path, version: str) -> Path:
    return output.with_name(f"{output.name}-{version}-linux-{platform.machine()}.tar.gz")


def pyinstaller_command(workdir: Path) -> list[str]:
    excluded = [arg for module in EXCLUDED for arg in ("--exclude-module", module)]
    return [
        sys.executable,
        "-m",
        "PyInstaller",
        "--onedir",
        # everything beside the executable: the folder is already the provider's own
        "--contents-directory=.",
        "--noconfirm",
        "--strip",
        "--log-level=WARN",
        f"--name={NAME}",
        f"--paths={ROOT}",
        "--collect-submodules=docker_credential_quayfed",
        *excluded,
        f"--distpath={workdir / 'dist'}",
        f"--workpath={workdir / 'build'}",
        f"--specpath={workdir}",
        str(ENTRY),
    ]


def bundled_modules(executable: Path) -> set[str]:
    """The Python modules inside the executable's archive."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    pyz = archive.open_embedded_archive("PYZ.pyz")
    return set(pyz.toc)


def bundled_files(folder: Path) -> list[Path]:
    """Every file in the folder, by its path relative to it."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def elf_files(folder: Path) -> Iterator[Path]:
    """The executable, libpython, the extension modules: every ELF file in the folder."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def glibc_needed(elf: Path) -> list[str]:
    """The glibc symbol versions ``elf`` needs (its .gnu.version_r entries), e.g. ['2.2.5']."""
    done = subprocess.run(
        ["readelf", "--version-info", "--wide", str(elf)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"readelf --version-info {elf}: {done.stderr.strip()}")
    # only what it needs (.gnu.version_r), not what it defines or each symbol's version
    _, _, needs = done.stdout.partition("Version needs section")
    needs = needs.split("\n\n", 1)[0]
    return sorted(set(_GLIBC_NEED.findall(needs)), key=version_key)


def version_key(version: str) -> tuple[int, ...]:
    """'2.28' -> (2, 28); a version that is no number (GLIBC_PRIVATE) sorts above every one."""
    if not re.fullmatch(r"\d+(\.\d+)*", version):
        return (1 << 30,)
    return tuple(int(part) for part in version.split("."))


def glibc_report(folder: Path) -> dict[str, str]:
    """Each ELF file in the folder (relative path) and the newest glibc version it needs
    ('-' for none)."""
    if shutil.which("readelf") is None:
        raise BuildError("readelf is not installed (apt-get install binutils)")
    report = {}
    for elf in elf_files(folder):
        needed = glibc_needed(elf)
        report[str(elf.relative_to(folder))] = needed[-1] if needed else "-"
    return report


def check_glibc(folder: Path, limit: str = MAX_GLIBC) -> dict[str, str]:
    """Fails when any ELF file in the folder needs a glibc symbol version above ``limit``."""
    report = glibc_report(folder)
    if not report:
        raise BuildError(f"no ELF file in {folder}")
    above = {
        name: needed
        for name, needed in report.items()
        if needed != "-" and version_key(needed) > version_key(limit)
    }
    if above:
        listed = ", ".join(f"{name} needs GLIBC_{needed}" for name, needed in above.items())
        raise BuildError(
            f"above GLIBC_{limit}: {listed}; freeze with the interpreter that "
            f"packaging/frozen/toolchain.sh builds (no --python)"
        )
    return report


def search_paths(elf: Path) -> list[str]:
    """The RPATH and RUNPATH entries of ``elf`` (where the loader looks for its libraries)."""
    done = subprocess.run(
        ["readelf", "--dynamic", "--wide", str(elf)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BuildError(f"readelf --dynamic {elf}: {done.stderr.strip()}")
    return [
        entry
        for found in re.findall(
            r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", done.stdout
        )
        for entry in found.split(":")
    ]


def check_search_paths(folder: Path) -> None:
    """Fails when a file in the folder would look for libraries outside it (a directory of the
    build machine, which on a node is missing, or anyone's)."""
    outside = {
        str(elf.relative_to(folder)): entry
        for elf in elf_files(folder)
        for entry in search_paths(elf)
        if not entry.startswith("$ORIGIN")
    }
    if outside:
        listed = ", ".join(f"{name} searches {entry}" for name, entry in outside.items())
        raise BuildError(f"library search paths outside the folder: {listed}")


def check_contents(folder: Path) -> None:
    modules = bundled_modules(folder / NAME)
    inside = sorted({m for m in modules if m.partition(".")[0] in EXCLUDED})
    inside += sorted(
        str(p) for p in bundled_files(folder) if p.parts[0].partition(".")[0] in EXCLUDED
    )
    if inside:
        raise BuildError(f"modules that must stay out are inside: {', '.join(inside)}")
    missing = [m for m in REQUIRED if m not in modules]
    if Path(CA_BUNDLE) not in bundled_files(folder):
        missing.append(CA_BUNDLE)
    if missing:
        raise BuildError(
            f"missing from the folder: {', '.join(missing)}; is the package installed "
            "with its dependencies in this environment?"
        )


def check_runs(executable: Path) -> str:
    done = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0 or not done.stdout.startswith(f"{NAME} "):
        raise BuildError(
            f"{executable} --version exited {done.returncode}: "
            f"{(done.stdout + done.stderr).strip()[-800:]}"
        )
    return done.stdout.split()[1]


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))


def write_tarball(output: Path, tarball: Path) -> None:
    """The link and the folder, sorted, owned by root, dated SOURCE_DATE_EPOCH."""
    mtime = source_date_epoch()

    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = mtime
        if not info.issym():
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    folder = folder_of(output)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(output, arcname=output.name, filter=normalized)
        archive.add(folder, arcname=folder.name, recursive=False, filter=normalized)
        for path in sorted(folder.rglob("*")):
            archive.add(
                path,
                arcname=str(path.relative_to(output.parent)),
                recursive=False,
                filter=normalized,
            )
    partial = tarball.with_name(tarball.name + ".partial")
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
    ):
        compressed.write(buffer.getvalue())
    os.replace(partial, tarball)


TOOLCHAIN = Path(__file__).resolve().parent / "frozen" / "toolchain.sh"


def source_pins(toolchain: Path = TOOLCHAIN) -> dict[str, tuple[str, str]]:
    """The Debian source packages the interpreter is built from: {what: (package, version)}."""
    found = re.findall(r"^(\w+)_SOURCE=([\w.+-]+)=(\S+)$", toolchain.read_text(), re.M)
    return {what.lower(): (package, version) for what, package, version in found}


def bundled_distributions(root: str = "docker-credential-quayfed") -> dict[str, str]:
    """The Python distributions the frozen provider holds: the package and what it requires
    (without extras), as installed beside the interpreter that froze it."""
    from importlib import metadata

    found: dict[str, str] = {}
    pending = [root]
    try:
        metadata.distribution(root)
    except metadata.PackageNotFoundError:  # frozen from the source tree: its declared ones
        import tomllib

        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        pending = [_requirement_name(str(requirement)) for requirement in declared["dependencies"]]
    # and install-on-node's YAML reader (the node extra), which the folder holds too
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending += [_requirement_name(str(r)) for r in project["optional-dependencies"]["node"]]
    while pending:
        name = pending.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another Python (tomli before 3.11)
        key = dist.metadata["Name"].lower()
        if key in found:
            continue
        found[key] = dist.version
        for requirement in dist.requires or ():
            if "extra ==" in requirement:
                continue
            pending.append(_requirement_name(requirement))
    return dict(sorted(found.items()))


def _requirement_name(requirement: str) -> str:
    """The distribution a requirement names (``httpx>=0.23.3`` -> ``httpx``)."""
    match = re.match(r"[A-Za-z0-9_.-]+", requirement.strip())
    return match.group(0) if match else requirement.strip()


def write_release_files(tarball: Path, version: str) -> tuple[Path, Path]:
    """Beside the tarball: its SHA-256 (``sha256sum -c`` reads it) and a CycloneDX 1.5 SBOM
    of what it holds (the package, its Python dependencies, the interpreter and the C
    libraries linked into it, each with the Debian source version it was built from)."""
    import hashlib
    import json
    import uuid

    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    checksum = tarball.with_name(tarball.name + ".sha256")
    checksum.write_text(f"{digest}  {tarball.name}\n")
    components: list[dict[str, object]] = [
        {
            "type": "library",
            "name": name,
            "version": dist_version,
            "purl": f"pkg:pypi/{name}@{dist_version}",
        }
        for name, dist_version in bundled_distributions().items()
        if name != "docker-credential-quayfed"
    ]
    for what, (package, source_version) in source_pins().items():
        components.append(
            {
                "type": "application" if what == "cpython" else "library",
                "name": what,
                "version": source_version,
                "purl": f"pkg:deb/debian/{package}@{source_version}?arch=source",
            }
        )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source_date_epoch()))
    # the machine it runs on and the compiler that built the interpreter and its libraries
    pinned = re.search(r"^ZIGLANG=(\S+)$", TOOLCHAIN.read_text(), re.M)
    zig = pinned.group(1) if pinned else "unknown"
    target = f"{platform.machine()}-linux-gnu.{MAX_GLIBC}"
    sbom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'sha256:' + digest)}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "component": {
                "type": "application",
                "name": NAME,
                "version": version,
                "hashes": [{"alg": "SHA-256", "content": digest}],
                "properties": [{"name": "quayfed:target", "value": target}],
            },
            "tools": {
                "components": [
                    {
                        "type": "application",
                        "name": "zig",
                        "version": zig,
                        "purl": f"pkg:pypi/ziglang@{zig}",
                        "description": f"zig cc -target {target}",
                    }
                ]
            },
        },
        "components": components,
    }
    bom = tarball.with_name(tarball.name.removesuffix(".tar.gz") + ".cdx.json")
    bom.write_text(json.dumps(sbom, indent=2, sort_keys=True) + "\n")
    return checksum, bom


def install(built: Path, output: Path) -> None:
    """``built`` (PyInstaller's folder) as ``output``'s folder, and ``output`` linking to its
    executable; whatever was there before (an older onefile executable too) is replaced."""
    folder = folder_of(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(built, staging, symlinks=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    link = output.with_name(output.name + ".link-partial")
    link.unlink(missing_ok=True)
    link.symlink_to(Path(folder.name) / NAME)
    os.replace(link, output)


def freeze(output: Path, max_glibc: str) -> tuple[Path, dict[str, str]]:
    """PyInstaller with this interpreter; the checks; the folder, link and tarball."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError(f"PyInstaller is not installed for {sys.executable}") from None
    env = {**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": str(source_date_epoch())}
    with tempfile.TemporaryDirectory(prefix="quayfed-frozen-") as scratch:
        workdir = Path(scratch)
        done = subprocess.run(
            pyinstaller_command(workdir), capture_output=True, text=True, env=env, check=False
        )
        built = workdir / "dist" / NAME
        if done.returncode != 0 or not (built / NAME).is_file():
            raise BuildError(
                f"PyInstaller failed ({done.returncode}):\n{done.stderr.strip()[-4000:]}"
            )
        report = check_glibc(built, max_glibc)
        check_search_paths(built)
        check_contents(built)
        version = check_runs(built / NAME)
        install(built, output)
    check_runs(output)
    tarball = tarball_of(output, version)
    write_tarball(output, tarball)
    write_release_files(tarball, version)
    return tarball, report


def cache_dir() -> Path:
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quayfed-frozen"


def toolchain_python(cache: Path, arch: str) -> Path:
    """The glibc-2.28 CPython for ``arch`` that packaging/frozen/toolchain.sh builds (or kept)."""
    done = subprocess.run(
        ["bash", str(TOOLCHAIN), str(cache), arch],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BuildError(f"{TOOLCHAIN.name} failed ({done.returncode}); its output is above")
    return Path(lines[-1])


def freeze_requirements() -> list[str]:
    """The pinned PyInstaller (the freeze extra) and the package's own dependencies."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [*extras["freeze"], *extras["node"], *project["dependencies"]]


def build_venv(interpreter: Path, cache: Path) -> Path:
    """A venv of ``interpreter`` with PyInstaller and the dependencies (kept, updated by pip
    when the requirements change)."""
    requirements = freeze_requirements()
    venv = cache / f"venv-{interpreter.parent.parent.name}"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    # an older toolchain's for the same machine, or older requirements
    for built in [
        *cache.glob(f"{venv.name.rsplit('-', 1)[0]}-*"),
        *cache.glob("venv-python-" + "?" * 16),
    ]:
        shutil.rmtree(built, ignore_errors=True)
    steps = [
        [str(interpreter), "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{' '.join(step[:4])}... failed:\n{done.stderr.strip()[-2000:]}")
    stamp.write_text(wanted)
    return python


#: what PyInstaller runs by name, for an interpreter emulated by qemu-user: the host's ldd and
#: binutils do not read aarch64 files (the loader's --list is ldd without the vDSO's nameless
#: line, which qemu prints)
CROSS_TOOLS = {
    "aarch64": {
        "ldd": 'listed=$(/lib/ld-linux-aarch64.so.1 --list "$@") || exit\n'
        "printf '%s\\n' \"$listed\" | sed '/^[[:space:]]*(0x/d'",
        **{tool: f'exec aarch64-linux-gnu-{tool} "$@"' for tool in ("objcopy", "objdump", "strip")},
    },
}


def cross_tools(cache: Path, arch: str) -> dict[str, str]:
    """The environment for freezing with an emulated ``arch`` interpreter: PATH starts with
    ``ldd``, ``objcopy``, ``objdump`` and ``strip`` for that machine's files."""
    if arch not in CROSS_TOOLS:
        raise BuildError(f"no build for {arch} on {platform.machine()}")
    missing = [
        need
        for need in ("/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu-objcopy")
        if not (Path(need).exists() if need.startswith("/") else shutil.which(need))
    ]
    if missing:
        raise BuildError(
            f"no {', '.join(missing)}: apt-get install libc6:arm64 binutils-aarch64-linux-gnu "
            "qemu-user-static (after dpkg --add-architecture arm64); .ci/frozen-arm64.sh does"
        )
    tools = cache / f"tools-{arch}"
    tools.mkdir(parents=True, exist_ok=True)
    for name, line in CROSS_TOOLS[arch].items():
        (tools / name).write_text(f"#!/bin/sh\n{line}\n")
        (tools / name).chmod(0o755)
    return {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    parser.add_argument(
        "--python",
        type=Path,
        help="freeze with this interpreter (PyInstaller and the dependencies installed); "
        f"default: the toolchain's, built or kept under ${CACHE_ENV}",
    )
    parser.add_argument("--max-glibc", default=MAX_GLIBC, help="%(default)s")
    parser.add_argument(
        "--arch", default=platform.machine(), choices=("x86_64", "aarch64"), help="%(default)s"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    output = args.output.absolute()
    try:
        if args.python is None:
            cache = cache_dir()
            python = build_venv(toolchain_python(cache, args.arch), cache)
            print(f"toolchain ready in {time.monotonic() - started:.1f}s: {python}", flush=True)
        else:
            python = args.python.absolute()
        if python != Path(sys.executable).absolute():
            again = [str(python), __file__, "--output", str(output), "--python", str(python)]
            emulated = args.arch != platform.machine()
            env = cross_tools(cache_dir(), args.arch) if emulated else None
            again += ["--max-glibc", args.max_glibc, "--arch", args.arch]
            return subprocess.run(again, env=env, check=False).returncode
        tarball, report = freeze(output, args.max_glibc)
    except BuildError as exc:
        sys.stderr.write(f"build_frozen: {exc}\n")
        return 1
    width = max(len(name) for name in report)
    print(f"glibc symbol versions needed (newest per file; at most GLIBC_{args.max_glibc}):")
    for name, needed in report.items():
        print(f"  {name:<{width}}  {'GLIBC_' + needed if needed != '-' else 'none'}")
    folder = folder_of(output)
    size = sum((folder / p).stat().st_size for p in bundled_files(folder))
    print(
        f"built {output} -> {os.readlink(output)} ({size / (1 << 20):.1f} MiB) and {tarball} "
        f"({tarball.stat().st_size / (1 << 20):.1f} MiB) with {sys.executable} "
        f"in {time.monotonic() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
