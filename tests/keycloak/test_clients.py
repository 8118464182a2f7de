"""Client credentials at a real Keycloak, with each way a confidential client authenticates,
and the RFC 8693 exchange of Keycloak's standard token exchange (26.2+)."""

from __future__ import annotations

import re

import pytest

from quay_sandbox.quay import Federated, QuayEmulator
from tests.keycloak.conftest import (
    CLIENT_SECRET_ENV,
    EXCHANGER_SECRET_ENV,
    ROBOT,
    SUBJECTS,
    Helper,
    answer,
)
from tests.keycloak.server import CLIENT_KEY_ID, ClientKey, Keycloak

pytestmark = pytest.mark.keycloak


@pytest.mark.parametrize("client_auth", ["client_secret_basic", "client_secret_post"])
def test_client_secret(
    helper: Helper, keycloak: Keycloak, kc_quay: QuayEmulator, client_auth: str
) -> None:
    helper.configure(
        {
            "source": "client_credentials",
            "client_id": "quay-ci",
            "client_secret_env": CLIENT_SECRET_ENV,
            "client_auth": client_auth,
            "on_failure": "error",
        }
    )
    got = helper.get()
    assert got.returncode == 0, got.stdout + got.stderr
    credentials = answer(got.stdout)
    assert credentials["Username"] == ROBOT
    # the service account's id is the sub, in the ID token Keycloak gives for scope openid
    assert kc_quay.issued_to(credentials["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS["quay-ci"])
    }


def test_wrong_client_secret_is_refused(helper: Helper) -> None:
    helper.configure(
        {
            "source": "client_credentials",
            "client_id": "quay-ci",
            "client_secret_env": CLIENT_SECRET_ENV,
            "on_failure": "error",
        }
    )
    helper.env[CLIENT_SECRET_ENV] = "not-the-client-secret"
    refused = helper.get()
    assert refused.returncode == 1
    # Keycloak 26 says unauthorized_client here; the fix is still the secret
    assert "Invalid client credentials" in refused.stdout, refused.stdout
    assert "check client_id and the client secret" in refused.stdout


def test_private_key_jwt(
    helper: Helper, keycloak: Keycloak, kc_quay: QuayEmulator, client_key: ClientKey
) -> None:
    helper.configure(
        {
            "source": "client_credentials",
            "client_id": "quay-ci-jwt",
            "client_auth": "private_key_jwt",
            "client_key_file": str(client_key.path),
            "client_key_id": CLIENT_KEY_ID,
            "on_failure": "error",
        }
    )
    got = helper.get()
    assert got.returncode == 0, got.stdout + got.stderr
    assert kc_quay.issued_to(answer(got.stdout)["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS["quay-ci-jwt"])
    }


def test_standard_token_exchange(helper: Helper, keycloak: Keycloak, quay: QuayEmulator) -> None:
    """The robot trusts only tokens for the audience quay-federation (Quay 3.18's audiences):
    the client's token is exchanged at Keycloak for one with that audience alone."""
    quay.add_robot(
        ROBOT,
        federation=[
            {
                "issuer": keycloak.issuer,
                "subject": SUBJECTS["quay-exchanger"],
                "audiences": ["quay-federation"],
            }
        ],
    )
    helper.configure(
        {
            "source": "client_credentials",
            "client_id": "quay-exchanger",
            "client_secret_env": EXCHANGER_SECRET_ENV,
            "token_type": "access_token",
            "exchange_audience": "quay-federation",
            "on_failure": "error",
        }
    )
    doctor = helper.run("doctor", helper.host)
    minted = re.search(r"\[ ok \] token minted .* sub=(\S+) aud=(\S+)", doctor.stdout)
    assert minted, doctor.stdout
    # Keycloak's exchanged token names the requested audience and nothing else
    assert minted.groups() == (SUBJECTS["quay-exchanger"], "quay-federation"), doctor.stdout
    assert "[ ok ] Quay exchange" in doctor.stdout, doctor.stdout
    got = helper.get()
    assert got.returncode == 0, got.stdout + got.stderr
    assert quay.issued_to(answer(got.stdout)["Secret"]) == {
        Federated(ROBOT, keycloak.issuer, SUBJECTS["quay-exchanger"])
    }


def test_token_exchange_to_an_audience_keycloak_refuses(helper: Helper) -> None:
    helper.configure(
        {
            "source": "client_credentials",
            "client_id": "quay-exchanger",
            "client_secret_env": EXCHANGER_SECRET_ENV,
            "token_type": "access_token",
            "exchange_audience": "quay-access",
            "on_failure": "error",
        }
    )
    refused = helper.get()
    assert refused.returncode == 1
    assert "Requested audience not available: quay-access" in refused.stdout, refused.stdout
    assert "enable standard token exchange" in refused.stdout
