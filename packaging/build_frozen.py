"""Build dist/quay-credential-provider: the kubelet credential provider as one executable that
needs no Python on the node (Flatcar, Bottlerocket, Talos).

PyInstaller (the ``freeze`` extra) bundles the interpreter this script runs under, its shared
libpython, the package and its dependencies (httpx, httpcore, h11, anyio, idna, certifi's CA
bundle, pyjwt, platformdirs) into one file with ``--onefile``: each run unpacks them into a
private directory under $TMPDIR (else /tmp) and removes it on exit. On the node it needs only
what PyInstaller never bundles: glibc (libc, libm, libdl, libpthread and the loader, of the
build machine's version or newer) and zlib. The entry (``frozen_entry.py``) runs what
bin/quay-credential-provider runs.

The Quay emulator and test issuers (quay_sandbox), the tests and packages that only the test,
demo and dev extras bring are left out, and the build fails when one of them is inside, or when
a module the provider needs is missing, or when the executable does not answer ``--version``.
Builds are repeatable: a fixed hash seed and SOURCE_DATE_EPOCH (1980-01-01 unless set).

    python packaging/build_frozen.py [--output PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = Path(__file__).resolve().parent / "frozen_entry.py"
NAME = "quay-credential-provider"
DEFAULT_OUTPUT = ROOT / "dist" / NAME
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
)
CA_BUNDLE = "certifi/cacert.pem"


class BuildError(Exception):
    """A step of the build failed; the message says which and what to do."""


def pyinstaller_command(workdir: Path) -> list[str]:
    excluded = [arg for module in EXCLUDED for arg in ("--exclude-module", module)]
    return [
        sys.executable,
        "-m",
        "PyInstaller",
        "--onefile",
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


def bundled_files(executable: Path) -> dict[str, bytes]:
    """Every data file and shared library inside the executable, by its unpacked path."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    # typecodes: b binary (shared library or extension), x data file, z the module archive
    return {name: archive.extract(name) for name, entry in archive.toc.items() if entry[-1] in "bx"}


def check_contents(executable: Path) -> None:
    modules = bundled_modules(executable)
    inside = sorted({m for m in modules if m.partition(".")[0] in EXCLUDED})
    if inside:
        raise BuildError(f"modules that must stay out are inside: {', '.join(inside)}")
    missing = [m for m in REQUIRED if m not in modules]
    if CA_BUNDLE not in bundled_files(executable):
        missing.append(CA_BUNDLE)
    if missing:
        raise BuildError(
            f"missing from the executable: {', '.join(missing)}; is the package installed "
            "with its dependencies in this environment (pip install -e '.[freeze]')?"
        )


def check_runs(executable: Path) -> None:
    done = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0 or not done.stdout.startswith(f"{NAME} "):
        raise BuildError(
            f"{executable} --version exited {done.returncode}: "
            f"{(done.stdout + done.stderr).strip()[-800:]}"
        )


def build(output: Path) -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError("PyInstaller is not installed; pip install -e '.[freeze]'") from None
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800"),
    }
    with tempfile.TemporaryDirectory(prefix="quayfed-frozen-") as scratch:
        workdir = Path(scratch)
        command = pyinstaller_command(workdir)
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        built = workdir / "dist" / NAME
        if done.returncode != 0 or not built.is_file():
            raise BuildError(
                f"PyInstaller failed ({done.returncode}):\n{done.stderr.strip()[-4000:]}"
            )
        check_contents(built)
        check_runs(built)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        shutil.copyfile(built, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        build(args.output)
    except BuildError as exc:
        sys.stderr.write(f"build_frozen: {exc}\n")
        return 1
    size = args.output.stat().st_size
    print(f"built {args.output} ({size / (1 << 20):.1f} MiB) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
