"""Smoke checks for a built helper: the zipapp on each Python, or an installed executable.

    python packaging/smoke.py zipapp dist/docker-credential-quayfed --python PY [--python PY]
    python packaging/smoke.py command PATH/TO/docker-credential-quayfed

Each run checks `version`, `--help` and a cache hit: `store` of a robot token (an unsigned
JWT with exp) and then `get`, in a private temporary config and cache, with no network. For
a zipapp it also imports every vendored dependency from inside the archive and loads
certifi's cacert.pem into an SSL context, on each Python given. Exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REGISTRY = "q.example"
ROBOT = "org+bot"
CONFIG = f"""\
[registries."{REGISTRY}"]
robot = "{ROBOT}"
issuer = "https://127.0.0.1:1/realms/x"
source = "env"
token_env = "QUAYFED_SMOKE_UNUSED_TOKEN"
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
print("dependencies import from the archive; CA bundle loads from", path)
"""


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


def run(argv: Sequence[str], env: dict[str, str], stdin: str = "") -> str:
    result = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, env=env, check=False, timeout=60
    )
    if result.returncode != 0:
        raise SmokeError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )
    return result.stdout


def check_helper(helper: Sequence[str], expected_version: str) -> list[str]:
    """`version`, `--help`, store + cache-hit get; returns what was verified."""
    with tempfile.TemporaryDirectory(prefix="quayfed-smoke-") as scratch:
        config = Path(scratch) / "config.toml"
        config.write_text(CONFIG, encoding="utf-8")
        env = {
            **os.environ,
            "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
            "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(Path(scratch) / "cache"),
        }
        env.pop("DOCKER_CREDENTIAL_QUAYFED_DEBUG", None)
        env.pop("QUAYFED_SMOKE_UNUSED_TOKEN", None)
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
    command = [python, "-I", "-S", "-c", IMPORT_CHECK, str(zipapp.resolve())]
    return run(command, dict(os.environ)).strip()


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
            for python in args.pythons:
                # -I -S: no site-packages, so nothing can come from outside the archive.
                done = check_helper([python, "-I", "-S", str(args.path)], expected)
                imports = check_zipapp_imports(python, args.path)
                print(f"ok  zipapp on {python}: {', '.join(done)}; {imports}")
        else:
            done = check_helper([args.path], expected)
            print(f"ok  {args.path}: {', '.join(done)}")
    except (SmokeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
