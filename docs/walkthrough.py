"""Run the README's walkthrough against the embedded issuer and Quay emulator; print Markdown.

Each command runs for real (the installed helper, in a throw-away HOME) and its output is
pasted as is, so the README shows what users will see. Usage:

    python docs/walkthrough.py > /tmp/walkthrough.md
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

from docker_credential_quayfed.commands.demo import PASSWORD_ENV, ROBOT, DemoServers

ADMIN_TOKEN_ENV = "QUAY_OAUTH_TOKEN"


def helper() -> str:
    beside = Path(sys.executable).with_name("docker-credential-quayfed")
    return str(beside) if beside.exists() else shutil.which("docker-credential-quayfed") or ""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="quayfed-walkthrough-") as temp:
        home = Path(temp)
        # Free ports, shown as 9443 and 8443 so that the page does not change from run to run.
        with DemoServers(home / "servers", federate=False) as servers:
            shown_ports = {
                str(urllib.parse.urlsplit(servers.issuer.issuer).port): "9443",
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
                **servers.environment(),
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
                        servers.issuer.issuer,
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
                        str(servers.pki.ca_cert),
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
