"""`demo`: the whole flow on this machine, against an embedded issuer and Quay on loopback TLS.

Needs the ``demo`` extra (cryptography and trustme, for keys and certificates); the helper
itself never does.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from docker_credential_quayfed import claims
from docker_credential_quayfed.commands.help import describe
from docker_credential_quayfed.errors import QuayfedError

ROBOT = "quay_federation+rhbk_user"
CLIENT_ID = "quay-access"
USERNAME = "jdoe"
PASSWORD_ENV = "QUAYFED_DEMO_PASSWORD"


class DemoServers:
    """An OIDC issuer in Keycloak's layout and a Quay emulator, both on loopback over TLS."""

    def __init__(
        self, directory: Path, *, federate: bool = True, ports: tuple[int, int] = (0, 0)
    ) -> None:
        try:
            from quay_sandbox.issuer import (
                IssuerClient,
                IssuerUser,
                KeycloakIssuer,
            )
            from quay_sandbox.quay import QuayEmulator
            from quay_sandbox.tls import make_test_pki
        except ImportError as exc:
            raise QuayfedError(
                f"the demo needs the embedded servers and the 'demo' extra ({exc.name} is "
                "missing; the single file, the RPM, the Debian package and the image leave "
                "them out)",
                "from a clone of the repository: pip install '.[demo]'",
            ) from None
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.pki = make_test_pki(directory / "pki")
        self.password = secrets.token_urlsafe(12)
        self.user = IssuerUser(USERNAME, self.password)
        self.issuer = KeycloakIssuer(users=[self.user], clients=[IssuerClient(CLIENT_ID)])
        self.quay = QuayEmulator(ca_bundle=self.pki.ca_cert)
        self.federate = federate
        self.ports = ports

    def __enter__(self) -> DemoServers:
        #: the running servers (their traffic() counts what a client costs)
        self.issuer_server = self.issuer.start(pki=self.pki, port=self.ports[0])
        self.quay_server = self.quay.start(pki=self.pki, port=self.ports[1])
        entries = [(self.issuer.issuer, self.user.sub)] if self.federate else []
        self.quay.add_robot(ROBOT, federation=entries, permissions={"quay_federation/*": {"pull"}})
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.quay.close()
        self.issuer.close()

    def config_toml(self, key: str) -> str:
        return (
            f"[registries.{json.dumps(key)}]\n"
            f"robot = {json.dumps(ROBOT)}\n"
            f"issuer = {json.dumps(self.issuer.issuer)}\n"
            f"client_id = {json.dumps(CLIENT_ID)}\n"
            'source = "password"\n'
            f"username = {json.dumps(USERNAME)}\n"
            f"password_env = {json.dumps(PASSWORD_ENV)}\n"
            f"quay_url = {json.dumps(self.quay.url)}\n"
            f"ca_bundle = {json.dumps(str(self.pki.ca_cert))}\n"
        )

    def environment(self) -> dict[str, str]:
        return {PASSWORD_ENV: self.password}


def _helper_command() -> list[str]:
    launched = Path(sys.argv[0])
    if launched.name == "docker-credential-quayfed" and launched.exists():
        return [str(launched.resolve())]
    found = shutil.which("docker-credential-quayfed")
    return [found] if found else [sys.executable, "-m", "docker_credential_quayfed"]


def _show_token(label: str, token: str) -> None:
    token_claims = claims.unverified_claims(token)
    exp = claims.numeric_claim(token_claims, "exp") or 0.0
    print(
        f"    {label}: iss={token_claims.get('iss')} sub={token_claims.get('sub')} "
        f"exp={int(exp)} (in {int(exp - time.time())}s)"
    )


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="quayfed-demo-") as temp:
        work = Path(temp)
        servers = DemoServers(work / "servers")  # says what is missing before any banner
        print("1. Starting an OIDC issuer (Keycloak layout) and Quay's federation endpoint")
        print("   on loopback, both over TLS with a throw-away CA.")
        with servers:
            registry = servers.quay.host
            print(f"   issuer: {servers.issuer.issuer}")
            print(f"   quay:   {servers.quay.url}")
            print(f"   robot {ROBOT} trusts issuer={servers.issuer.issuer}")
            print(f"                           subject={servers.user.sub}  (jdoe's id)")
            config_file = work / "config.toml"
            config_file.write_text(servers.config_toml(registry))
            print(f"\n2. The helper's config ({config_file}):")
            for line in config_file.read_text().splitlines():
                print(f"   {line}")
            env = {
                **os.environ,
                **servers.environment(),
                "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config_file),
                "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(work / "cache"),
            }
            command = [*_helper_command(), "get"]
            for attempt, expected in ((1, "minted"), (2, "cached")):
                print(
                    f"\n{attempt + 2}. A client runs: "
                    f"echo {registry} | docker-credential-quayfed get"
                )
                step_env = {**env, "DOCKER_CREDENTIAL_QUAYFED_DEBUG": "1"} if attempt == 1 else env
                started = time.perf_counter()
                done = subprocess.run(
                    command,
                    input=registry.encode(),
                    capture_output=True,
                    env=step_env,
                    timeout=60,
                    check=False,
                )
                elapsed = (time.perf_counter() - started) * 1000
                for line in done.stderr.decode(errors="replace").splitlines():
                    print(f"   | {line}")
                if done.returncode != 0:
                    print(f"   get failed ({done.returncode}): {done.stdout.decode().strip()}")
                    return 1
                answer = json.loads(done.stdout)
                shown = {**answer, "Secret": answer["Secret"][:16] + "...(robot token)"}
                print(f"   answer ({expected}, {elapsed:.0f} ms): {json.dumps(shown)}")
                _show_token("robot token", answer["Secret"])
            counters = servers.quay.counters_snapshot()
            print(
                f"\n5. Quay saw {counters.get('exchanges_succeeded', '?')} exchange(s) and the "
                f"issuer {servers.issuer.token_requests} token request(s): the second get came "
                "from the cache."
            )
            print(
                "\nDone. For a real registry: docker-credential-quayfed configure HOST --robot "
                "ORG+ROBOT --issuer URL --source ... (see --help), then: doctor HOST"
            )
    return 0


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="Run the whole flow against an embedded issuer and Quay on loopback.",
        description=describe(
            "Start an embedded OIDC issuer and Quay federation endpoint on loopback with TLS, "
            "then run 'get' twice (minted, then cached), printing each step. Needs the "
            "'demo' extra: pip install 'docker-credential-quayfed[demo]'."
        ),
        epilog="example:\n  docker-credential-quayfed demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(handler=lambda args: run_demo())
