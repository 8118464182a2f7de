"""Command lines for the real registry clients, run in an isolated sandbox.

A `ClientSandbox` owns everything a client reads or writes: HOME, the docker config
directory, the containers auth file, storage for podman and buildah, temp dirs and the CA
directory. Clients inherit the sandbox environment, and so does the credential helper they
start, which is how the helper gets its config, cache directory and secrets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLIENTS = ("skopeo", "podman", "buildah", "docker")
# Built from their Go modules by .ci/more-clients.sh; found on PATH or in MORE_CLIENTS_BIN_ENV.
MORE_CLIENTS = ("helm", "oras", "crane")
MORE_CLIENTS_BIN_ENV = "QUAYFED_MORE_CLIENTS_BIN"
HELPER_NAME = "quayfed"
DEFAULT_TIMEOUT = 90.0


def client_search_path() -> str:
    """PATH, after the directory named by $QUAYFED_MORE_CLIENTS_BIN when it is set."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    more = os.environ.get(MORE_CLIENTS_BIN_ENV, "").strip()
    return f"{more}{os.pathsep}{path}" if more else path


def install_hint(client: str) -> str:
    if client in MORE_CLIENTS:
        return (
            f"bash .ci/more-clients.sh, then put its directory on PATH or in {MORE_CLIENTS_BIN_ENV}"
        )
    return f"apt-get install {client}"


@dataclass(frozen=True)
class ClientRun:
    """One finished client command."""

    client: str
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.2f}s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def client_version(client: str) -> str:
    """The version string a client reports, e.g. '1.9.3' for skopeo."""
    argv = {
        "skopeo": ["skopeo", "--version"],
        "podman": ["podman", "--version"],
        "buildah": ["buildah", "--version"],
        "docker": ["docker", "--version"],
        "helm": ["helm", "version", "--short"],
        "oras": ["oras", "version"],
        "crane": ["crane", "version"],
    }[client]
    text = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PATH": client_search_path()},
    ).stdout
    # "skopeo version 1.9.3", "Docker version 28.2.2, build e6534b4", "buildah version 1.28.2 (...)"
    # "v4.3.2" (helm), "Version:    1.3.6" (oras), "v0.22.1" (crane)
    words = text.replace(",", " ").split()
    for label in ("version", "Version:"):
        if label in words:
            return words[words.index(label) + 1]
    return words[0].split("+")[0].lstrip("v") if words else ""


@dataclass(frozen=True)
class RunningClient:
    client: str
    argv: tuple[str, ...]
    process: subprocess.Popen[str]
    started: float


@dataclass
class ClientSandbox:
    """An isolated home for the clients; `env` is passed to every client it runs."""

    root: Path
    ca_certificate: Path
    helper_bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    runs: list[ClientRun] = field(default_factory=list)
    runroot: Path = field(init=False)

    def __post_init__(self) -> None:
        for directory in (
            self.home,
            self.docker_config_dir,
            self.cert_dir,
            self.tmp,
            self.root / "xdg-runtime",
            self.root / "xdg-config",
        ):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca_certificate, self.cert_dir / "ca.crt")
        # podman refuses a runroot longer than 50 characters, so it cannot live in tmp_path.
        self.runroot = Path(tempfile.mkdtemp(prefix="qfe2e-", dir="/tmp"))
        self.env = {
            "PATH": f"{self.helper_bin_dir}{os.pathsep}{client_search_path()}",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.tmp),
            "DOCKER_CONFIG": str(self.docker_config_dir),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "XDG_RUNTIME_DIR": str(self.root / "xdg-runtime"),
            "XDG_CONFIG_HOME": str(self.root / "xdg-config"),
            **self.env,
        }

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    # Paths

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def docker_config_dir(self) -> Path:
        return self.root / "docker"

    @property
    def docker_config(self) -> Path:
        return self.docker_config_dir / "config.json"

    @property
    def home_docker_config(self) -> Path:
        return self.home / ".docker" / "config.json"

    @property
    def auth_file(self) -> Path:
        return self.root / "auth.json"

    @property
    def cert_dir(self) -> Path:
        return self.root / "certs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    # Client configuration

    def use_helper_for(self, hosts: Iterable[str], config_file: Path | None = None) -> Path:
        """Add `credHelpers` entries for `hosts` to a docker-style config file (default:
        both the docker config and the containers auth file)."""
        targets = [config_file] if config_file else [self.docker_config, self.auth_file]
        for target in targets:
            document = json.loads(target.read_text()) if target.exists() else {}
            helpers = document.setdefault("credHelpers", {})
            for host in hosts:
                helpers[host] = HELPER_NAME
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(document, indent=2))
        return targets[0]

    def read_config(self, config_file: Path) -> dict[str, object]:
        document: dict[str, object] = json.loads(config_file.read_text())
        return document

    def use_home_docker_config(self) -> None:
        """Leave only ~/.docker/config.json for clients: no auth file, no DOCKER_CONFIG."""
        self.env.pop("REGISTRY_AUTH_FILE", None)
        self.env.pop("DOCKER_CONFIG", None)
        self.auth_file.unlink(missing_ok=True)

    # Running

    def run(
        self,
        client: str,
        args: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ClientRun:
        argv = (client, *args)
        env = {**self.env, **(extra_env or {})}
        started = time.monotonic()
        completed = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd or self.root,
            timeout=timeout,
            check=False,
        )
        result = ClientRun(
            client=client,
            argv=argv,
            returncode=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr,
            seconds=time.monotonic() - started,
        )
        self.runs.append(result)
        return result

    def start(self, client: str, args: Sequence[str]) -> RunningClient:
        """Start a client without waiting for it (for parallel runs); see `wait`."""
        argv = (client, *args)
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.root,
        )
        return RunningClient(client, argv, process, time.monotonic())

    def wait(self, running: RunningClient, timeout: float = DEFAULT_TIMEOUT) -> ClientRun:
        stdout, stderr = running.process.communicate(timeout=timeout)
        result = ClientRun(
            client=running.client,
            argv=running.argv,
            returncode=running.process.returncode,
            stdout=stdout,
            stderr=stderr,
            seconds=time.monotonic() - running.started,
        )
        self.runs.append(result)
        return result

    # skopeo

    def _tls_args(self, tls_verify: bool) -> list[str]:
        return [f"--cert-dir={self.cert_dir}"] if tls_verify else ["--tls-verify=false"]

    def skopeo_inspect(self, ref: str, *, tls_verify: bool = True) -> ClientRun:
        return self.run("skopeo", ["inspect", *self._tls_args(tls_verify), f"docker://{ref}"])

    def skopeo_copy(
        self,
        source: str,
        destination: str,
        *,
        src_tls_verify: bool = True,
        dest_tls_verify: bool = True,
    ) -> ClientRun:
        source_args = (
            [f"--src-cert-dir={self.cert_dir}"] if src_tls_verify else ["--src-tls-verify=false"]
        )
        dest_args = (
            [f"--dest-cert-dir={self.cert_dir}"] if dest_tls_verify else ["--dest-tls-verify=false"]
        )
        return self.run("skopeo", ["copy", *source_args, *dest_args, source, destination])

    # podman and buildah (root, no runtime, vfs storage in the sandbox)

    def storage_args(self, client: str) -> list[str]:
        base = self.root / f"{client}-storage"
        args = [
            f"--root={base / 'root'}",
            f"--runroot={self.runroot / client}",
            "--storage-driver=vfs",
        ]
        if client == "podman":
            (base / "tmp").mkdir(parents=True, exist_ok=True)
            args += [
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                f"--tmpdir={base / 'tmp'}",
            ]
        return args

    def pull(self, client: str, ref: str) -> ClientRun:
        """podman pull, or buildah pull --policy always."""
        return self.podman_pull(ref) if client == "podman" else self.buildah_pull(ref)

    def push(self, client: str, image: str, ref: str) -> ClientRun:
        return self.podman_push(image, ref) if client == "podman" else self.buildah_push(image, ref)

    def local_images(self, client: str) -> list[str]:
        """`repo:tag` of every image in podman's or buildah's storage."""
        name = "{{.Repository}}" if client == "podman" else "{{.Name}}"
        listed = self.run(
            client, [*self.storage_args(client), "images", "--format", f"{name}:{{{{.Tag}}}}"]
        )
        assert listed.ok, listed.describe()
        return listed.stdout.split()

    def podman(self, *args: str, stdin: str | None = None) -> ClientRun:
        return self.run("podman", [*self.storage_args("podman"), *args], stdin=stdin)

    def podman_pull_args(self, ref: str, *, tls_verify: bool = True) -> list[str]:
        return [*self.storage_args("podman"), "pull", *self._tls_args(tls_verify), ref]

    def podman_pull(self, ref: str, *, tls_verify: bool = True) -> ClientRun:
        return self.run("podman", self.podman_pull_args(ref, tls_verify=tls_verify))

    def podman_push(self, image: str, ref: str, *, tls_verify: bool = True) -> ClientRun:
        return self.podman("push", *self._tls_args(tls_verify), image, f"docker://{ref}")

    def podman_login(self, host: str, username: str | None, password: str | None) -> ClientRun:
        credentials = ["--username", username, "--password-stdin"] if username else []
        return self.podman("login", *self._tls_args(True), *credentials, host, stdin=password)

    def podman_logout(self, host: str) -> ClientRun:
        return self.podman("logout", host)

    def buildah(self, *args: str) -> ClientRun:
        return self.run("buildah", [*self.storage_args("buildah"), *args])

    def buildah_pull(self, ref: str, *, tls_verify: bool = True) -> ClientRun:
        return self.buildah("pull", "--policy", "always", *self._tls_args(tls_verify), ref)

    def buildah_push(self, image: str, ref: str) -> ClientRun:
        return self.buildah("push", *self._tls_args(True), image, f"docker://{ref}")

    # docker CLI (no engine: only commands that talk to registries directly)

    def docker_manifest_inspect(self, ref: str, *, insecure: bool = False) -> ClientRun:
        return self.run(
            "docker", ["manifest", "inspect", *(["--insecure"] if insecure else []), ref]
        )

    def docker_login(self, host: str, username: str, password: str) -> ClientRun:
        return self.run(
            "docker", ["login", "--username", username, "--password-stdin", host], stdin=password
        )

    def docker_logout(self, host: str) -> ClientRun:
        return self.run("docker", ["logout", host])

    # helm v4 (charts as OCI artifacts; its own registry config, then docker's, for credentials)

    @property
    def helm_registry_config(self) -> Path:
        """Where helm looks first for credentials: $XDG_CONFIG_HOME/helm/registry/config.json."""
        return Path(self.env["XDG_CONFIG_HOME"]) / "helm" / "registry" / "config.json"

    def helm(self, *args: str) -> ClientRun:
        return self.run("helm", args)

    def helm_push(self, chart_archive: Path, repository_url: str) -> ClientRun:
        return self.helm(
            "push", f"--ca-file={self.cert_dir / 'ca.crt'}", str(chart_archive), repository_url
        )

    def helm_pull(self, chart_url: str, version: str, destination: Path) -> ClientRun:
        destination.mkdir(parents=True, exist_ok=True)  # helm writes into it, never makes it
        return self.helm(
            "pull",
            f"--ca-file={self.cert_dir / 'ca.crt'}",
            chart_url,
            "--version",
            version,
            "--destination",
            str(destination),
        )

    # oras (OCI artifacts; docker's config for credentials)

    def oras_push(self, ref: str, directory: Path, files: Sequence[str]) -> ClientRun:
        """Push `files` (names relative to `directory`) as one artifact."""
        return self.run("oras", ["push", *self._oras_tls_args(), ref, *files], cwd=directory)

    def oras_pull(self, ref: str, destination: Path) -> ClientRun:
        return self.run("oras", ["pull", *self._oras_tls_args(), "--output", str(destination), ref])

    def _oras_tls_args(self) -> list[str]:
        # oras speaks plain HTTP to a registry named localhost unless told otherwise.
        return ["--plain-http=false", f"--ca-file={self.cert_dir / 'ca.crt'}"]

    # crane (go-containerregistry; docker's config for credentials; Go's SSL_CERT_FILE for TLS)

    def crane(self, *args: str) -> ClientRun:
        return self.run("crane", args, extra_env={"SSL_CERT_FILE": str(self.cert_dir / "ca.crt")})

    def crane_push(self, layout: Path, ref: str) -> ClientRun:
        """Push the one image of the OCI layout directory `layout`."""
        return self.crane("push", str(layout), ref)

    def crane_pull(self, ref: str, layout: Path) -> ClientRun:
        """Pull `ref` into the OCI layout directory `layout`."""
        return self.crane("pull", "--format=oci", ref, str(layout))
