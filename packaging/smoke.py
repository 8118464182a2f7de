"""Smoke checks for a built helper: the zipapp on each Python, or an installed executable.

    python packaging/smoke.py zipapp dist/docker-credential-quayfed --python PY [--python PY]
    python packaging/smoke.py command PATH/TO/docker-credential-quayfed

Each run checks `version`, `--help` and a cache hit: `store` of a robot token (an unsigned
JWT with exp) and then `get`, in a private temporary config and cache, with no network.

For a zipapp, on each Python given, all sharing one temporary XDG_CACHE_HOME: the first run
unpacks and compiles the payload (zipapp-<build id>, 0700, `.complete`, a
`.compiled-<cache tag>-opt0` marker per Python); a later run imports the package from that
directory's `__pycache__` and imports nothing of the unpacking (zipfile, hashlib, compileall,
...: `python -X importtime`); the vendored dependencies import from the unpacked directory
with certifi's cacert.pem a real file there. With an unusable cache directory the same checks
pass running from inside the archive, where the dependencies import and the CA bundle loads
too. Exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

REGISTRY = "q.example"
ROBOT = "org+bot"
CONFIG = f"""\
[registries."{REGISTRY}"]
robot = "{ROBOT}"
issuer = "https://127.0.0.1:1/realms/x"
source = "password"
client_id = "smoke"
username = "smoke"
password_env = "QUAYFED_SMOKE_UNSET"
quay_url = "https://127.0.0.1:1"
"""
# Imported from inside the zipapp: the network path's dependencies and the CA bundle.
IMPORT_CHECK = """\
import ssl, sys
sys.path.insert(0, sys.argv[1])
import anyio, certifi, h11, httpcore, httpx, idna, jwt, platformdirs
if sys.version_info < (3, 11):
    import tomli
path = certifi.where()
context = ssl.create_default_context(cafile=path)
assert context.cert_store_stats()["x509_ca"] > 50, context.cert_store_stats()
httpx.Client().close()
for module in (httpx, jwt, certifi):
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print("dependencies import from", sys.argv[1], "and the CA bundle loads from", path)
"""
APP = "docker-credential-quayfed"
# What a run with the payload unpacked must not import: the first run's machinery.
UNPACK_ONLY_MODULES = frozenset(
    {"zipfile", "hashlib", "compileall", "py_compile", "tempfile", "shutil", "fcntl"}
    | {"_quayfed_unpack"}
)


class SmokeError(Exception):
    pass


def fake_jwt(lifetime: float = 3600.0) -> str:
    """An unsigned JWT with iat and exp: all `store` reads of a robot token."""

    def segment(value: dict[str, object]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": ROBOT, "iat": now, "exp": now + int(lifetime)}
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}.c2ln"


def run_full(
    argv: Sequence[str], env: Mapping[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise SmokeError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )
    return result


def run(argv: Sequence[str], env: Mapping[str, str], stdin: str = "") -> str:
    return run_full(argv, env, stdin).stdout


def check_helper(
    helper: Sequence[str], expected_version: str, extra_env: Mapping[str, str] | None = None
) -> list[str]:
    """`version`, `--help`, store + cache-hit get; returns what was verified."""
    with tempfile.TemporaryDirectory(prefix="quayfed-smoke-") as scratch:
        config = Path(scratch) / "config.toml"
        config.write_text(CONFIG, encoding="utf-8")
        env = {
            **os.environ,
            "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
            "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(Path(scratch) / "cache"),
            **(extra_env or {}),
        }
        env.pop("DOCKER_CREDENTIAL_QUAYFED_DEBUG", None)
        version = run([*helper, "version"], env).strip()
        if version != f"docker-credential-quayfed {expected_version}":
            raise SmokeError(f"version printed {version!r}, expected {expected_version}")
        if "exit codes:" not in run([*helper, "--help"], env):
            raise SmokeError("--help has no 'exit codes:' section")
        token = fake_jwt()
        stored = {"ServerURL": REGISTRY, "Username": ROBOT, "Secret": token}
        run([*helper, "store"], env, json.dumps(stored))
        # The issuer and Quay URLs point at a closed port: only a cache hit can answer.
        answer = json.loads(run([*helper, "get"], env, REGISTRY + "\n"))
        if answer != stored:
            raise SmokeError(f"get answered {answer!r}, expected the stored token")
    return [version, "--help", "store + cache-hit get"]


def check_zipapp_imports(python: str, zipapp: Path) -> str:
    """The vendored dependencies and the CA bundle, from inside the archive (the fallback)."""
    command = [python, "-I", "-S", "-c", IMPORT_CHECK, str(zipapp.resolve())]
    return run(command, dict(os.environ)).strip()


def build_id(zipapp: Path) -> str:
    with zipfile.ZipFile(zipapp) as archive:
        main = archive.read("__main__.py").decode("utf-8")
    match = re.search(r'^BUILD_ID = "([0-9a-f]+)"$', main, re.M)
    if match is None:
        raise SmokeError(f"{zipapp}: no BUILD_ID in __main__.py")
    return match.group(1)


def unpacked_root(zipapp: Path, cache_home: Path) -> Path:
    """Where the zipapp unpacks itself with XDG_CACHE_HOME=cache_home."""
    return cache_home / APP / f"zipapp-{build_id(zipapp)}"


def cache_tag(python: str) -> str:
    code = "import sys; print(sys.implementation.cache_tag)"
    return run([python, "-I", "-S", "-c", code], dict(os.environ)).strip()


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def check_unpacked(python: str, zipapp: Path, cache_home: Path) -> str:
    """After a first run: the unpacked directory, and a later run that imports from it."""
    root = unpacked_root(zipapp, cache_home)
    tag = cache_tag(python)
    marker = root / f".compiled-{tag}-opt0"
    for path in (root / ".complete", marker):
        if not path.is_file():
            raise SmokeError(f"no {path.name} in {root} after a first run")
    for directory in (root.parent, root):
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o700:
            raise SmokeError(f"{directory} is not a 0700 directory: {oct(info.st_mode)}")
    debris = [p.name for p in root.parent.iterdir() if p.name.startswith(".")]
    if debris:
        raise SmokeError(f"left behind in {root.parent}: {debris}")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    helper = [python, "-I", "-S", str(zipapp)]
    verbose = run_full([python, "-v", *helper[1:], "version"], env).stderr
    pyc = f"{root}/docker_credential_quayfed/__pycache__/cli.{tag}.pyc"
    if f"code object from '{pyc}'" not in verbose:
        raise SmokeError(f"a later run did not load {pyc}")
    timed = run_full([python, "-X", "importtime", *helper[1:], "version"], env).stderr
    imported = imported_modules(timed)
    if "docker_credential_quayfed.cli" not in imported:
        raise SmokeError(f"-X importtime shows no docker_credential_quayfed.cli:\n{timed}")
    extra = sorted(imported & UNPACK_ONLY_MODULES)
    if extra:
        raise SmokeError(f"a later run imported {', '.join(extra)}")
    command = [python, "-I", "-S", "-c", IMPORT_CHECK, str(root)]
    imports = run(command, env).strip()
    return (
        f"first run unpacked to {root} (0700, .complete, {marker.name}); a later run loads "
        f"{tag} pycs from it and imports no zipfile/hashlib/compileall; {imports}"
    )


def check_zipapp(python: str, zipapp: Path, cache_home: Path, expected: str) -> list[str]:
    """Unpacked into ``cache_home`` (shared by the Pythons), and run from the zip as fallback."""
    helper = [python, "-I", "-S", str(zipapp)]  # -I -S: nothing from outside the archive
    done = check_helper(helper, expected, {"XDG_CACHE_HOME": str(cache_home)})
    done.append(check_unpacked(python, zipapp, cache_home))
    with tempfile.TemporaryDirectory(prefix="quayfed-smoke-nocache-") as scratch:
        unusable = Path(scratch) / "a-file"
        unusable.write_text("not a directory\n", encoding="utf-8")
        fallback = {"XDG_CACHE_HOME": str(unusable / "cache"), "HOME": str(unusable)}
        check_helper(helper, expected, fallback)
    done.append(
        f"with no usable cache directory: runs from the zip; {check_zipapp_imports(python, zipapp)}"
    )
    return done


def package_version() -> str:
    init = Path(__file__).resolve().parent.parent / "docker_credential_quayfed" / "__init__.py"
    for line in init.read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SmokeError(f"no __version__ in {init}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    zipapp = modes.add_parser("zipapp", help="check a zipapp on each --python")
    zipapp.add_argument("path", type=Path)
    zipapp.add_argument("--python", action="append", required=True, dest="pythons")
    command = modes.add_parser("command", help="check an installed executable")
    command.add_argument("path")
    args = parser.parse_args(argv)
    expected = package_version()
    try:
        if args.mode == "zipapp":
            with tempfile.TemporaryDirectory(prefix="quayfed-smoke-xdg-") as cache_home:
                for python in args.pythons:
                    done = check_zipapp(python, args.path.resolve(), Path(cache_home), expected)
                    print(f"ok  zipapp on {python}: {'; '.join(done)}")
        else:
            done = check_helper([args.path], expected)
            print(f"ok  {args.path}: {', '.join(done)}")
    except (SmokeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
