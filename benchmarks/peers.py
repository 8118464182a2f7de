"""Two Go credential helpers that Debian packages, each asked what it answers from local state.

- ``docker-credential-ecr-login get`` (amazon-ecr-credential-helper) for an ECR registry whose
  token is in its cache file (``$AWS_ECR_CACHE_DIR/cache.json``), with static credentials in
  the environment: it loads its AWS config, finds the cached token valid and answers, with no
  network.
- ``docker-credential-pass list`` (golang-docker-credential-helpers) on a password store of
  one entry: it reads the store's directory tree (no gpg, no ``pass`` process).

:func:`peers` gives both, each with its command, or None when its executable is not installed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from measure import Command

ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_REGION = "us-east-1"
ECR_ACCESS_KEY = "AKIAQUAYFEDBENCH0000"  # a made-up key id: it only names the cache entry
PASS_SERVER = "https://peer.quay.test"
PASS_USER = "robot"


def ecr_cache_key(access_key: str, region: str, registry_id: str) -> str:
    """The helper's key: region, base64 of the key id followed by MD5("") (Go's md5.Sum(b)
    appends the digest of nothing to b), and the registry id."""
    checksum = base64.b64encode(access_key.encode() + hashlib.md5(b"").digest()).decode()
    return f"{region}-{checksum}-{registry_id}"


def ecr_login(workdir: Path) -> Command | None:
    binary = shutil.which("docker-credential-ecr-login")
    if binary is None:
        return None
    cache = workdir / "ecr-cache"
    cache.mkdir(mode=0o700, parents=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    entry = {
        "AuthorizationToken": base64.b64encode(b"AWS:bench-password").decode(),
        "RequestedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ExpiresAt": (now + datetime.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ProxyEndpoint": f"https://{ECR_REGISTRY}",
        "Service": "ecr",
    }
    key = ecr_cache_key(ECR_ACCESS_KEY, ECR_REGION, ECR_REGISTRY.split(".", 1)[0])
    registries = {"Registries": {key: entry}, "Version": "1.0"}
    (cache / "cache.json").write_text(json.dumps(registries), encoding="utf-8")
    empty = workdir / "ecr-empty"
    empty.write_text("", encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "AWS_ECR_CACHE_DIR": str(cache),
        "AWS_ACCESS_KEY_ID": ECR_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": "bench-unused",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return Command(
        "docker-credential-ecr-login get",
        [binary, "get"],
        env,
        stdin=ECR_REGISTRY.encode(),
        answer_ok=lambda out: b'"Secret":"bench-password"' in out,
    )


def pass_list(workdir: Path) -> Command | None:
    binary = shutil.which("docker-credential-pass")
    if binary is None:
        return None
    store = workdir / "password-store"
    server = base64.urlsafe_b64encode(PASS_SERVER.encode()).decode()
    entry = store / "docker-credential-helpers" / server
    entry.mkdir(mode=0o700, parents=True)
    (store / ".gpg-id").write_text("bench@quay.test\n", encoding="utf-8")
    (entry / f"{PASS_USER}.gpg").write_bytes(b"")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PASSWORD_STORE_DIR": str(store),
    }
    expected = json.dumps({PASS_SERVER: PASS_USER}, separators=(",", ":")).encode()
    return Command(
        "docker-credential-pass list",
        [binary, "list"],
        env,
        answer_ok=lambda out: out.strip() == expected,
    )


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    package: str
    asked: str
    command: Command | None  # None: not installed


def peers(workdir: Path) -> list[Peer]:
    return [
        Peer(
            "peer_ecr-login",
            "docker-credential-ecr-login get",
            "amazon-ecr-credential-helper",
            "an ECR registry whose token is in its cache file",
            ecr_login(workdir),
        ),
        Peer(
            "peer_pass",
            "docker-credential-pass list",
            "golang-docker-credential-helpers",
            "a password store of one entry, read as a directory tree",
            pass_list(workdir),
        ),
    ]
