"""A real CNCF distribution 2.8 registry (Debian's `docker-registry`) run as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REGISTRY_BINARY = "docker-registry"


@dataclass(frozen=True)
class ServerTLS:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class TokenAuth:
    """distribution's `auth: token:` block: where clients get a token and whose tokens count."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DistributionRegistry:
    """One registry process with filesystem storage that survives restarts.

    `start(token_auth=None)` runs it open to anyone (used to seed images);
    `start(token_auth=...)` runs it the way Quay's registry behaves: every pull or push
    needs a bearer token from the realm.
    """

    def __init__(
        self,
        workdir: Path,
        tls: ServerTLS | None,
        port: int | None = None,
        hostname: str = "127.0.0.1",
    ) -> None:
        """`hostname` is the name clients use (a loopback name); it listens on 127.0.0.1."""
        self.workdir = workdir
        self.tls = tls
        self.port = port or free_port()
        self.hostname = hostname
        self.storage = workdir / "storage"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def config(self, token_auth: TokenAuth | None) -> dict[str, object]:
        http: dict[str, object] = {
            "addr": f"127.0.0.1:{self.port}",
            "secret": "e2e-registry-http-secret",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http["tls"] = {"certificate": str(self.tls.certificate), "key": str(self.tls.key)}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if token_auth:
            config["auth"] = {
                "token": {
                    "realm": token_auth.realm,
                    "service": token_auth.service,
                    "issuer": token_auth.issuer,
                    "rootcertbundle": str(token_auth.rootcertbundle),
                }
            }
        return config

    def start(self, token_auth: TokenAuth | None = None, timeout: float = 15.0) -> None:
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise FileNotFoundError(
                f"{REGISTRY_BINARY} not on PATH (apt-get install docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        # YAML is a superset of JSON, so no YAML writer is needed.
        self.config_path.write_text(json.dumps(self.config(token_auth), indent=2))
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [binary, "serve", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"registry exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"registry did not listen on {self.host}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def tag_digest(self, repository_and_tag: str) -> str | None:
        """The manifest digest `repo:tag` points at, read from the storage directory."""
        repository, tag = repository_and_tag.rsplit(":", 1)
        link = (
            self.storage / "docker/registry/v2/repositories" / repository
            / "_manifests/tags" / tag / "current/link"
        )  # fmt: skip
        return link.read_text().strip() if link.exists() else None
