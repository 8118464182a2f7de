"""Build dist/docker-credential-quayfed: one executable file that needs only python3 >= 3.9.

The file is a zipapp (PEP 441): a few lines of ``/bin/sh`` followed by a zip that holds the
package and its pure-Python dependencies (httpx, httpcore, h11, anyio, idna,
certifi, pyjwt, platformdirs, and for Python 3.9/3.10 tomli, exceptiongroup and
typing_extensions). Dependencies are resolved by pip running under the oldest supported
Python, so that every environment marker for 3.9 is honoured; the newer Pythons need a
subset of that set. Only wheels are accepted, and a compiled file anywhere fails the build.

The archive is reproducible: entries are sorted and carry one fixed timestamp
(SOURCE_DATE_EPOCH when set). Its ``__main__`` carries a build id, a hash of the rest of the
archive. On the first run it unpacks the payload into
``$XDG_CACHE_HOME/docker-credential-quayfed/zipapp-<build id>`` and byte-compiles it there
for the running interpreter (``zipapp_unpack.py``, stored as ``_quayfed_unpack``); later runs
import the package from that directory, as fast as from a wheel. The sh lines start those runs
as ``python3 -S`` on that directory directly: Python running the zip itself would import runpy
(importlib.util, contextlib, functools...), read the zip's index and run `site`, which cost a
cache-hit `get` more than its own work. ``python3 FILE`` runs the archive the ordinary way,
and so do the sh lines when there is no unpacked copy yet or PYTHONPATH is set. When no such
directory can be used, the zipapp runs from the archive: certifi then finds its cacert.pem
through importlib.resources, which copies it to a private (0600) temporary file.

    python packaging/build_zipapp.py [--output PATH] [--resolve-with PYTHON]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "docker_credential_quayfed"
DEFAULT_OUTPUT = ROOT / "dist" / "docker-credential-quayfed"
OLDEST_PYTHON = (3, 9)
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
UNPACK_SOURCE = Path(__file__).resolve().parent / "zipapp_unpack.py"
UNPACK_MODULE = "_quayfed_unpack"
# Where a first run unpacks the payload, and whether that copy can be used: shared by the
# archive's __main__ and the shell boot below. Kept to syntax that any python3 can parse (to
# explain an old one), to imports of os and sys alone, and to double quotes (the boot travels
# in single quotes).
UNPACKED_TEMPLATE = """\
BUILD_ID = "{build_id}"


def _private_directory(path):
    # A directory, not a symlink, of this user, closed to everyone else.
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return info.st_mode & 0o170077 == 0o040000 and info.st_uid == os.getuid()


def _build_directory():
    # (directory, marker) for this interpreter, or None: then everything runs from the zip.
    tag = sys.implementation.cache_tag
    if tag is None or not hasattr(os, "getuid"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
    if not os.path.isabs(base):
        return None
    root = os.path.join(base, "docker-credential-quayfed", "zipapp-" + BUILD_ID)
    return root, ".compiled-%s-opt%d" % (tag, sys.flags.optimize)


def _ready(root, marker):
    return (
        _private_directory(os.path.dirname(root))
        and _private_directory(root)
        and os.path.exists(os.path.join(root, marker))
        and os.path.exists(os.path.join(root, ".complete"))
    )
"""
# The archive's __main__: what `python3 FILE` runs. After the first run this is all that runs
# before the package itself is imported from the unpacked, compiled directory.
MAIN_TEMPLATE = """\
\"\"\"docker-credential-quayfed as one file: the package and its dependencies are inside.

The first run unpacks them to $XDG_CACHE_HOME/docker-credential-quayfed/zipapp-BUILD_ID
(~/.cache when unset) and compiles them there for the running Python (see _quayfed_unpack);
later runs import from that directory. Without a usable one, everything runs from the zip.
\"\"\"
import os
import sys

if sys.version_info < {oldest!r}:
    sys.stderr.write("docker-credential-quayfed needs Python 3.9 or newer\\n")
    sys.exit(1)

{unpacked}

def _unpacked():
    # The payload unpacked and compiled for this interpreter, or None: run from the zip.
    found = _build_directory()
    if found is None:
        return None
    root, marker = found
    if _ready(root, marker):
        return root
    try:
        from {unpack_module} import prepare

        if prepare(os.path.dirname(__file__), root, marker):
            return root
    except Exception:
        pass
    return None


_root = _unpacked()
if _root is None:
    from docker_credential_quayfed.cli import main
else:
    sys.path.insert(0, _root)
    try:
        from docker_credential_quayfed.cli import main
    except ImportError:
        # A damaged copy (files deleted under it): the next run extracts it again; this one
        # runs from the zip.
        try:
            os.unlink(os.path.join(_root, ".complete"))
        except OSError:
            pass
        sys.path.remove(_root)
        for _name in list(sys.modules):
            if _name.partition(".")[0] == "docker_credential_quayfed":
                del sys.modules[_name]
        from docker_credential_quayfed.cli import main

sys.exit(main())
"""
# The shell boot before the zip: the file is run by sh, which starts python3 -S on this code.
# When a first run has unpacked and compiled the payload for this interpreter, it imports the
# package from there: no zipimport, no runpy (importlib.util, contextlib, functools...) and no
# `site`, which cost a cache hit more than the helper's own work; fastpath.answer_or_decline
# answers a hit and leaves without the interpreter's teardown, as the installed launchers do,
# and hands anything else to cli.
# Otherwise, or with a PYTHONPATH (whose sitecustomize expects the ordinary start), Python
# runs the archive as it is, __main__ and all.
BOOT_TEMPLATE = """\
import os
import sys

del sys.argv[0]  # "-c": the file is argv[0] after it, as when Python runs it
if sys.path[:1] == [""]:
    del sys.path[0]  # -c puts the working directory first: nothing is imported from there
{unpacked}
_found = sys.version_info >= {oldest!r} and _build_directory()
if _found and _ready(*_found):
    sys.path.insert(0, _found[0])
    from docker_credential_quayfed.fastpath import answer_or_decline

    _read = answer_or_decline(_found[0])
    from docker_credential_quayfed.cli import main

    sys.exit(main(None, *_read))
import runpy

runpy.run_path(sys.argv[0], run_name="__main__")
"""
SHELL_TEMPLATE = """\
#!/bin/sh
# docker-credential-quayfed as one file: a zip of the package and its dependencies follows.
# python3 can run this file as it is; sh starts python3 on the copy a first run unpacked.
[ -z "${{PYTHONPATH-}}" ] || exec python3 "$0" "$@"
exec python3 -S -c '{boot}' "$0" "$@"
"""


def unpacked_source(build_id: str) -> str:
    return UNPACKED_TEMPLATE.format(build_id=build_id)


def main_source(build_id: str) -> str:
    return MAIN_TEMPLATE.format(
        oldest=OLDEST_PYTHON, unpacked=unpacked_source(build_id), unpack_module=UNPACK_MODULE
    )


def shell_boot(build_id: str) -> bytes:
    """The lines before the zip: sh, then python3 on the unpacked copy when it is there."""
    boot = BOOT_TEMPLATE.format(oldest=OLDEST_PYTHON, unpacked=unpacked_source(build_id))
    if "'" in boot:
        raise BuildError("the shell boot's Python must not contain a single quote")
    return SHELL_TEMPLATE.format(boot=boot).encode("ascii")


def payload_id(tree: Path) -> str:
    """A hash of every archive entry's name and content (``__main__.py`` aside)."""
    digest = hashlib.sha256()
    for name, path in archive_entries(tree):
        if name != "__main__.py":
            data = path.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()[:16]


class BuildError(Exception):
    """A step of the build failed; the message says which and what to do."""


def project_dependencies(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as stream:
        project = tomllib.load(stream)["project"]
    return [str(requirement) for requirement in project["dependencies"]]


def find_oldest_python() -> str:
    """An interpreter of the oldest supported version: this one, python3.9, or pyenv's."""
    if sys.version_info[:2] == OLDEST_PYTHON:
        return sys.executable
    name = "python{}.{}".format(*OLDEST_PYTHON)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    pattern = os.path.join(root, "versions", "{}.{}.*".format(*OLDEST_PYTHON), "bin", "python")
    candidates = [shutil.which(name), *sorted(glob.glob(pattern), reverse=True)]
    for candidate in candidates:
        # A pyenv shim is on PATH even when it refuses to run the version it names.
        if candidate and _python_version(candidate) == OLDEST_PYTHON:
            return candidate
    raise BuildError(
        f"no working {name} found (on PATH or under {root}/versions): dependencies are "
        "resolved with the oldest supported Python so that its environment markers apply; "
        "pass --resolve-with PATH/TO/python3.9"
    )


def _python_version(python: str) -> tuple[int, ...] | None:
    try:
        result = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return tuple(int(part) for part in result.stdout.split())


def install_dependencies(python: str, requirements: Sequence[str], target: Path) -> None:
    command = [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"pip failed ({' '.join(command)}):\n{result.stderr.strip()}")
    # Console scripts and caches are of no use inside the archive.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)


def copy_package(source: Path, target: Path) -> None:
    shutil.copytree(
        source, target / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def compiled_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and p.suffix in COMPILED_SUFFIXES)


def archive_entries(tree: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            yield path.relative_to(tree).as_posix(), path


def fixed_timestamp() -> tuple[int, int, int, int, int, int]:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # zip's floor: 1980-01-01
    stamp = time.gmtime(max(epoch, 315532800))
    return (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5])


def write_archive(tree: Path, output: Path, boot: bytes) -> int:
    """Shell boot + zip, written beside ``output`` and renamed over it; returns the entry
    count."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    date_time = fixed_timestamp()
    count = 0
    with partial.open("wb") as stream:
        stream.write(boot)
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, path in archive_entries(tree):
                info = zipfile.ZipInfo(name, date_time)
                # __main__ stored as it is: reading it then needs no zlib, whose import alone
                # costs a cache hit a few milliseconds.
                stored = name == "__main__.py"
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                archive.writestr(info, path.read_bytes())
                count += 1
    os.chmod(partial, 0o755)
    os.replace(partial, output)
    return count


def build(output: Path, resolve_with: str | None) -> int:
    python = resolve_with or find_oldest_python()
    requirements = project_dependencies(ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="quayfed-zipapp-") as scratch:
        tree = Path(scratch) / "app"
        tree.mkdir()
        install_dependencies(python, requirements, tree)
        copy_package(ROOT / PACKAGE, tree)
        shutil.copyfile(UNPACK_SOURCE, tree / f"{UNPACK_MODULE}.py")
        compiled = compiled_files(tree)
        if compiled:
            names = ", ".join(str(p.relative_to(tree)) for p in compiled)
            raise BuildError(f"compiled files would make the zipapp platform-bound: {names}")
        build_id = payload_id(tree)
        (tree / "__main__.py").write_text(main_source(build_id), encoding="utf-8")
        return write_archive(tree, output, shell_boot(build_id))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    parser.add_argument(
        "--resolve-with",
        metavar="PYTHON",
        help="the Python 3.9 that runs pip (default: this one, python3.9, or pyenv's 3.9)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        count = build(args.output, args.resolve_with)
    except BuildError as exc:
        sys.stderr.write(f"build_zipapp: {exc}\n")
        return 1
    size = args.output.stat().st_size
    print(
        f"built {args.output} ({count} files, {size // 1024} KiB) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
