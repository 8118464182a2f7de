"""A real Keycloak (``org.keycloak:keycloak-quarkus-dist``, unpacked where
``$QUAYFED_KEYCLOAK_HOME`` says, built by ``.ci/keycloak.sh``) on 127.0.0.1 over HTTPS with the
tests' CA, its H2 database in a directory of its own, and the realm of
``tests/keycloak/realm-quay.json`` imported at start-up.

The distribution is shared and read-only here: each server gets a home of its own (its own
``bin/kc.sh``, so ``kc.home.dir`` and with it ``data/`` are its own; ``lib``, ``themes`` and
``providers`` are links to the distribution).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOME_ENV = "QUAYFED_KEYCLOAK_HOME"
REALM_TEMPLATE = Path(__file__).with_name("realm-quay.json")
REALM = "quay"
#: a cold JVM on two busy cores: Keycloak says it started in 20-60 s here
START_DEADLINE = 240.0
STOP_DEADLINE = 30.0


#: the realm's placeholders that hold secrets
SECRET_VALUES = ("JDOE_PASSWORD", "CI_SECRET", "EXCHANGER_SECRET")
#: the kid of the private_key_jwt client's key in the realm's JWKS
CLIENT_KEY_ID = "quayfed-test-1"


@dataclass(frozen=True)
class ClientKey:
    """The private_key_jwt client's RSA key: its PEM file and the JWKS the realm holds."""

    path: Path
    jwks: str


def make_client_key(directory: Path) -> ClientKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "client-key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": CLIENT_KEY_ID, "use": "sig", "alg": "RS256"})
    return ClientKey(path, json.dumps({"keys": [public]}))


def realm_values(client_key: ClientKey, *, login_token_lifespan: int = 300) -> dict[str, str]:
    """Fresh secrets and settings for the realm file's ``${NAME}`` placeholders."""
    return {
        "JDOE_PASSWORD": secrets.token_urlsafe(18),
        "CI_SECRET": secrets.token_urlsafe(24),
        "EXCHANGER_SECRET": secrets.token_urlsafe(24),
        "CI_JWKS": client_key.jwks,
        "LOGIN_TOKEN_LIFESPAN": str(login_token_lifespan),
    }


class KeycloakMissing(Exception):
    """What is missing to run Keycloak here, in one line."""


def find_home() -> Path:
    """The unpacked distribution ``$QUAYFED_KEYCLOAK_HOME`` names, and a Java to run it."""
    named = os.environ.get(HOME_ENV, "").strip()
    if not named:
        raise KeycloakMissing(f"${HOME_ENV} is not set (run .ci/keycloak.sh, which prints it)")
    home = Path(named)
    if not (home / "bin" / "kc.sh").is_file() or not (home / "lib" / "quarkus-run.jar").is_file():
        raise KeycloakMissing(f"${HOME_ENV}={named} holds no Keycloak distribution (bin/kc.sh)")
    java_home = os.environ.get("JAVA_HOME", "")
    if not (java_home and os.access(Path(java_home, "bin", "java"), os.X_OK)) and not shutil.which(
        "java"
    ):
        raise KeycloakMissing("no java on PATH nor in $JAVA_HOME (Keycloak 26 needs Java 17+)")
    return home


def version(home: Path) -> str:
    """``26.7.3`` from the distribution's version.txt."""
    text = (home / "version.txt").read_text(encoding="utf-8")
    return text.strip().rsplit(" ", 1)[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Keycloak:
    """A running Keycloak and what the tests need to know of its realm."""

    home: Path
    base_url: str
    version: str
    log_path: Path
    process: subprocess.Popen[bytes]
    #: seconds from the start of kc.sh to the realm's discovery document answering
    startup_seconds: float
    #: the values put in the realm file's ``${NAME}`` placeholders (secrets among them)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop kc.sh and the JVM it started (not exec'd: its child, in its process group)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(STOP_DEADLINE)
                _wait_group_gone(self.process.pid, STOP_DEADLINE)
                return
            except subprocess.TimeoutExpired:
                continue


def _wait_group_gone(group: int, seconds: float) -> None:
    """Wait until no process of ``group`` is left (the JVM outlives kc.sh by a moment)."""
    until = time.monotonic() + seconds
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > until:
            raise subprocess.TimeoutExpired(f"process group {group}", seconds)
        time.sleep(0.1)


def realm_text(values: dict[str, str]) -> str:
    """The realm template with each ``${NAME}`` replaced by its value, JSON-escaped."""
    text = REALM_TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("${" + name + "}", json.dumps(value)[1:-1])
    if "${" in text:
        left = text[text.index("${") :].split("}", 1)[0]
        raise ValueError(f"the realm template's placeholder {left}}} has no value")
    json.loads(text)
    return text


def _server_home(distribution: Path, directory: Path) -> Path:
    home = directory / "keycloak"
    (home / "bin").mkdir(parents=True)
    shutil.copy2(distribution / "bin" / "kc.sh", home / "bin" / "kc.sh")
    for shared in ("lib", "themes", "providers"):
        (home / shared).symlink_to(distribution / shared)
    shutil.copytree(distribution / "conf", home / "conf")
    (home / "data" / "import").mkdir(parents=True)
    return home


def start(
    distribution: Path,
    directory: Path,
    *,
    ca_cert: Path,
    server_cert: Path,
    server_key: Path,
    values: dict[str, str],
) -> Keycloak:
    """Start Keycloak and wait (at most START_DEADLINE) until the realm answers discovery.

    On a failed start the process is stopped and the error carries the log's tail.
    """
    home = _server_home(distribution, directory)
    realm_file = home / "data" / "import" / "realm-quay.json"
    fd = os.open(realm_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(realm_text(values))
    port = free_port()
    base_url = f"https://127.0.0.1:{port}"
    log_path = directory / "keycloak.log"
    env = {
        **os.environ,
        # the JVM's default heap is a share of the machine's memory: keep it small
        "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx768m",
    }
    for name in list(env):
        if name.startswith("KC_") or name == "KEYCLOAK_ADMIN":
            env.pop(name)
    command = [
        str(home / "bin" / "kc.sh"),
        "start",
        "--optimized",
        f"--hostname={base_url}",
        # one node, its caches local: no cluster transport listening beyond loopback
        "--cache=local",
        "--http-enabled=false",
        "--http-host=127.0.0.1",
        f"--https-port={port}",
        f"--https-certificate-file={server_cert}",
        f"--https-certificate-key-file={server_key}",
        "--import-realm",
    ]
    began = time.monotonic()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Keycloak(
        home=home,
        base_url=base_url,
        version=version(distribution),
        log_path=log_path,
        process=process,
        startup_seconds=0.0,
        values=values,
    )
    discovery = f"{server.issuer}/.well-known/openid-configuration"
    deadline = began + START_DEADLINE
    problem = "it did not answer"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_cert)), timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                problem = f"kc.sh exited with {process.returncode}"
                break
            try:
                if client.get(discovery).status_code == 200:
                    server.startup_seconds = time.monotonic() - began
                    return server
            except httpx.HTTPError as exc:
                problem = f"it did not answer ({type(exc).__name__})"
            time.sleep(0.5)
        else:
            problem = f"{problem} within {START_DEADLINE:.0f}s"
    server.stop()
    raise RuntimeError(
        f"Keycloak {server.version} did not start: {problem}; the end of its log "
        f"({log_path}):\n{server.log_tail()}"
    )
