"""Run the README's walkthrough against the embedded issuer and Quay emulator, or against a
real Keycloak; print Markdown.

Each command runs for real (the installed helper, in a throw-away HOME) and its output is
pasted as is, so the README shows what users will see. Usage:

    python docs/walkthrough.py > /tmp/walkthrough.md
    QUAYFED_KEYCLOAK_HOME=... python docs/walkthrough.py --keycloak > /tmp/walkthrough.md

With ``--keycloak`` the issuer is a real Keycloak (the distribution ``.ci/keycloak.sh``
prepares, started as the Keycloak tests start it, with tests/keycloak/realm-quay.json's realm
``quay``, client ``quay-access`` and user ``jdoe``) instead of the embedded one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docker_credential_quayfed.commands.demo import PASSWORD_ENV, ROBOT, DemoServers
from quay_sandbox.quay import QuayEmulator

ADMIN_TOKEN_ENV = "QUAY_OAUTH_TOKEN"


def helper() -> str:
    beside = Path(sys.executable).with_name("docker-credential-quayfed")
    return str(beside) if beside.exists() else shutil.which("docker-credential-quayfed") or ""


@dataclass
class Servers:
    """The issuer and the Quay emulator the walkthrough runs against."""

    issuer: str
    quay: QuayEmulator
    ca_cert: Path
    environment: dict[str, str]


@contextlib.contextmanager
def embedded(directory: Path) -> Iterator[Servers]:
    with DemoServers(directory, federate=False) as servers:
        yield Servers(
            servers.issuer.issuer, servers.quay, servers.pki.ca_cert, servers.environment()
        )


@contextlib.contextmanager
def keycloak(directory: Path) -> Iterator[Servers]:
    """A real Keycloak with the tests' realm, and the Quay emulator, on one test CA."""
    from quay_sandbox.tls import make_test_pki
    from tests.keycloak import server

    pki = make_test_pki(directory / "pki")
    key_directory = directory / "client-key"
    key_directory.mkdir()
    values = server.realm_values(server.make_client_key(key_directory))
    running = server.start(
        server.find_home(),
        directory,
        ca_cert=pki.ca_cert,
        server_cert=pki.server_cert,
        server_key=pki.server_key,
        values=values,
    )
    quay = QuayEmulator(ca_bundle=pki.ca_cert)
    try:
        quay.start(pki=pki)
        quay.add_robot(ROBOT, permissions={"quay_federation/*": {"pull"}})
        yield Servers(running.issuer, quay, pki.ca_cert, {PASSWORD_ENV: values["JDOE_PASSWORD"]})
    finally:
        quay.close()
        running.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keycloak",
        action="store_true",
        help="run against a real Keycloak ($QUAYFED_KEYCLOAK_HOME, .ci/keycloak.sh)",
    )
    use_keycloak = parser.parse_args(argv).keycloak
    if use_keycloak:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.keycloak import server

        try:
            server.find_home()
        except server.KeycloakMissing as exc:
            print(f"walkthrough.py: {exc}", file=sys.stderr)
            return 2
    servers_for = keycloak if use_keycloak else embedded
    with tempfile.TemporaryDirectory(prefix="quayfed-walkthrough-") as temp:
        home = Path(temp)
        # Free ports, shown as 9443 and 8443 so that the page does not change from run to run.
        with servers_for(home / "servers") as servers:
            shown_ports = {
                str(urllib.parse.urlsplit(servers.issuer).port): "9443",
                str(urllib.parse.urlsplit(servers.quay.url).port): "8443",
            }
            host = servers.quay.host
            servers.quay.add_admin_token("walkthrough-oauth-token", ["quay_federation"])
            env = {
                **os.environ,
                "HOME": str(home),
                "PATH": f"{Path(helper()).parent}:{os.environ['PATH']}",
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "NO_COLOR": "1",
                **servers.environment,
                ADMIN_TOKEN_ENV: "walkthrough-oauth-token",
            }
            for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR",
                         "DOCKER_CREDENTIAL_QUAYFED_CONFIG", "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR",
                         "DOCKER_CREDENTIAL_QUAYFED_DEBUG"):  # fmt: skip
                env.pop(name, None)
            steps = [
                (
                    "Point the helper at the realm, the client, the user and the robot, and wire "
                    "`credHelpers` for docker and podman (the password stays in an environment "
                    "variable):",
                    [
                        "configure",
                        host,
                        "--robot",
                        ROBOT,
                        "--issuer",
                        servers.issuer,
                        "--client-id",
                        "quay-access",
                        "--source",
                        "password",
                        "--username",
                        "jdoe",
                        "--password-env",
                        PASSWORD_ENV,
                        "--quay-url",
                        str(servers.quay.url),
                        "--ca-bundle",
                        str(servers.ca_cert),
                    ],
                    None,
                ),
                (
                    "Check every step. The token is minted, and the doctor prints its `iss` and "
                    "`sub`: exactly what the robot's federation needs. The exchange fails "
                    "because the robot does not trust them yet:",
                    ["doctor", host],
                    None,
                ),
                (
                    "Add that issuer and subject to the robot through Quay's API (an OAuth token "
                    f"with org:admin in `${ADMIN_TOKEN_ENV}`), taking them straight from the "
                    "configured source instead of decoding a JWT by hand:",
                    ["federation", "add", ROBOT, "--from-config", host],
                    None,
                ),
                ("Check again:", ["doctor", host], None),
                (
                    "What docker, podman, skopeo and buildah do on every pull and push (the "
                    "first call mints and caches, later ones answer from the cache):",
                    ["get"],
                    host,
                ),
                (
                    "For tools that cannot use credential helpers:",
                    ["token", host, "--json"],
                    None,
                ),
            ]
            helper_dir = str(Path(helper()).parent)

            def neutral(text: str) -> str:
                """No path or port of the machine the page was made on."""
                text = text.replace(str(home), "~").replace(helper_dir, "~/.local/bin")
                for actual, fixed in shown_ports.items():
                    text = text.replace(f"127.0.0.1:{actual}", f"127.0.0.1:{fixed}")
                return text

            for text, args, stdin in steps:
                shown = [neutral(a) for a in args]
                command = "docker-credential-quayfed " + " ".join(shlex.quote(a) for a in shown)
                if stdin is not None:
                    command = f"echo {neutral(stdin)} | {command}"
                done = subprocess.run(
                    [helper(), *args],
                    input=(stdin or "").encode(),
                    capture_output=True,
                    env=env,
                    timeout=120,
                    check=False,
                )
                output = neutral((done.stdout + done.stderr).decode())
                output = _shorten_tokens(output)
                print(text)
                print()
                print("```console")
                print(f"$ {command}")
                print(output.rstrip())
                if done.returncode:
                    print(f"$ echo $?\n{done.returncode}")
                print("```")
                print()
    return 0


def _shorten_tokens(text: str) -> str:
    import re

    return re.sub(r"(eyJ[A-Za-z0-9_-]{10})[A-Za-z0-9_.-]+", r"\1...", text)


if __name__ == "__main__":
    raise SystemExit(main())
