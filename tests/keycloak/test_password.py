"""The walkthrough against a real Keycloak: realm quay, client quay-access, user jdoe, the
password grant, and the robot quay_federation+rhbk_user trusting Keycloak's iss and sub."""

from __future__ import annotations

import re

import pytest

from quay_sandbox.quay import Federated, QuayEmulator
from tests.keycloak.conftest import PASSWORD_ENV, ROBOT, SUBJECTS, USERNAME, Helper, answer
from tests.keycloak.server import Keycloak
from tests.support import leaks

pytestmark = pytest.mark.keycloak

WALKTHROUGH = {
    "source": "password",
    "client_id": "quay-access",
    "username": USERNAME,
    "password_env": PASSWORD_ENV,
}


def test_password_grant_get(helper: Helper, keycloak: Keycloak, kc_quay: QuayEmulator) -> None:
    helper.configure(WALKTHROUGH)
    first = helper.get()
    assert first.returncode == 0, first.stdout + first.stderr
    credentials = answer(first.stdout)
    assert credentials["Username"] == ROBOT
    # Keycloak's sub is the user's id (a UUID), not the username.
    assert kc_quay.issued_to(credentials["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS[USERNAME])
    }
    again = helper.get()
    assert again.returncode == 0, again.stderr
    assert answer(again.stdout) == credentials, "the second get is served from the cache"
    assert kc_quay.counters_snapshot()["exchanges_succeeded"] == 1


def test_wrong_password_is_refused_by_keycloak(helper: Helper) -> None:
    helper.configure({**WALKTHROUGH, "on_failure": "error"})
    helper.env[PASSWORD_ENV] = "not-jdoes-password"
    refused = helper.get()
    assert refused.returncode == 1
    assert "Invalid user credentials" in refused.stdout, refused.stdout
    assert "invalid_grant" in refused.stdout


def test_walkthrough_doctor_then_federation(
    helper: Helper, keycloak: Keycloak, quay: QuayEmulator
) -> None:
    """The README's walkthrough: configure, doctor names iss and sub, federation add, get."""
    quay.add_robot(ROBOT, permissions={"quay_federation/*": ["pull"]})
    admin_token = "keycloak-walkthrough-admin-token"
    quay.add_admin_token(admin_token, ["quay_federation"])
    helper.env["QUAY_OAUTH_TOKEN"] = admin_token
    configured = helper.run(
        "configure",
        helper.host,
        "--robot",
        ROBOT,
        "--issuer",
        keycloak.issuer,
        "--client-id",
        "quay-access",
        "--source",
        "password",
        "--username",
        USERNAME,
        "--password-env",
        PASSWORD_ENV,
        "--quay-url",
        quay.url or "",
        "--ca-bundle",
        str(helper.keycloak_ca),
    )
    assert configured.returncode == 0, configured.stdout + configured.stderr

    before = helper.run("doctor", helper.host)
    assert before.returncode == 1, before.stdout
    minted = re.search(
        r"\[ ok \] token minted .* iss=(\S+) sub=(\S+) aud=(\S+) exp=\d+ kid=(\S+)", before.stdout
    )
    assert minted, before.stdout
    # exactly what the robot's federation entry needs
    assert minted.groups()[:3] == (keycloak.issuer, SUBJECTS[USERNAME], "quay-access")
    # Keycloak's JWKS also holds its RSA-OAEP encryption key: the signing key alone is named
    assert (
        f"2 key(s); RSA signing kids: {minted.group(4)} (1 RSA encryption key(s) left out)"
        in before.stdout
    ), before.stdout
    assert f"with issuer '{keycloak.issuer}' and subject '{SUBJECTS[USERNAME]}'" in before.stdout, (
        before.stdout
    )

    added = helper.run("federation", "add", ROBOT, "--from-config", helper.host)
    assert added.returncode == 0, added.stdout + added.stderr
    assert quay.get_federation(ROBOT) == [
        {"issuer": keycloak.issuer, "subject": SUBJECTS[USERNAME]}
    ]

    after = helper.run("doctor", helper.host)
    assert after.returncode == 0, after.stdout
    assert "all checks passed" in after.stdout
    got = helper.get()
    assert got.returncode == 0, got.stderr
    secret = answer(got.stdout)["Secret"]
    leaks.known(secret, "robot token")
    assert quay.issued_to(secret) == {Federated(ROBOT, keycloak.issuer, SUBJECTS[USERNAME])}
