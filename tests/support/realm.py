"""A Keycloak-like realm and a Quay emulator over TLS, and a helper config for one robot whose
JWT comes from the password grant: the world of tests that count what a get costs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from quay_sandbox.issuer import IssuerClient, IssuerUser, KeycloakIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.server import RunningServer
from quay_sandbox.tls import TestPKI

PASSWORD_ENV = "REALM_TEST_PASSWORD"


@dataclass
class PasswordRealm:
    issuer: KeycloakIssuer
    issuer_server: RunningServer
    quay: QuayEmulator
    quay_server: RunningServer
    config: Path
    env: dict[str, str]

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])

    def exchanges(self) -> int:
        return int(self.quay.counters_snapshot()["exchanges_succeeded"])

    def close(self) -> None:
        self.issuer_server.close()
        self.quay_server.close()


def start_password_realm(
    pki: TestPKI,
    directory: Path,
    robot: str,
    password: str,
    *,
    token_lifetime: int | None = None,
    settings: str = "",
) -> PasswordRealm:
    """Serve both, federate ``robot`` to user jdoe, and write the helper's config (plus
    ``settings``, TOML lines of the registry's table)."""
    issuer = KeycloakIssuer(users=[IssuerUser("jdoe", password)], clients=[IssuerClient("cli")])
    issuer_server = issuer.start(pki=pki)
    quay = QuayEmulator(ca_bundle=pki.ca_cert)
    if token_lifetime is not None:
        quay.set_token_lifetime(token_lifetime)
    quay_server = quay.start(pki=pki)
    quay.add_robot(robot, federation=[(issuer.issuer, issuer.users["jdoe"].sub)])
    config = directory / "config.toml"
    config.write_text(
        f'[registries."{quay.host}"]\n'
        f'robot = "{robot}"\nissuer = "{issuer.issuer}"\nsource = "password"\n'
        f'client_id = "cli"\nusername = "jdoe"\npassword_env = "{PASSWORD_ENV}"\n'
        f'quay_url = "{quay.url}"\nca_bundle = "{pki.ca_cert}"\n{settings}'
    )
    env = {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(directory / "cache"),
        PASSWORD_ENV: password,
        "PATH": os.environ.get("PATH", ""),
    }
    return PasswordRealm(issuer, issuer_server, quay, quay_server, config, env)
