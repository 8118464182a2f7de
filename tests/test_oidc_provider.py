"""The nanoidp wrapper: Keycloak's layout, grants and errors, and the Kubernetes-like issuer."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import jwt

from quay_sandbox.tls import TestPKI
from tests.support import trusting
from tests.support.oidc_provider import (
    CONFIDENTIAL_SECRET,
    USERS,
    KubeIssuer,
    NanoidpServers,
    OIDCProvider,
    nanoidp_python,
    start_nanoidp,
)

_ROOT = Path(__file__).resolve().parents[1]


def _verify(
    token: str, jwks_uri: str, ca: ssl.SSLContext, issuer: str, audience: str
) -> dict[str, object]:
    keys = httpx.get(jwks_uri, verify=ca).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(entry) for entry in keys if entry["kid"] == kid)
    claims: dict[str, object] = jwt.decode(
        token, key.key, algorithms=["RS256"], issuer=issuer, audience=audience
    )
    return claims


def test_discovery_is_keycloak_shaped(oidc_provider: OIDCProvider) -> None:
    ca = trusting(oidc_provider.ca_cert)
    document = httpx.get(oidc_provider.discovery_url, verify=ca).json()
    assert oidc_provider.issuer.endswith("/realms/quay")
    assert document["issuer"] == oidc_provider.issuer
    assert document["token_endpoint"] == f"{oidc_provider.issuer}/protocol/openid-connect/token"
    assert document["jwks_uri"] == f"{oidc_provider.issuer}/protocol/openid-connect/certs"
    assert "password" in document["grant_types_supported"]
    assert "client_credentials" in document["grant_types_supported"]
    certs = httpx.get(document["jwks_uri"], verify=ca).json()
    assert certs["keys"] and certs["keys"][0]["kty"] == "RSA"


def _password_grant(oidc_provider: OIDCProvider, password: str) -> httpx.Response:
    return httpx.post(
        oidc_provider.token_endpoint,
        data={
            "grant_type": "password",
            "client_id": oidc_provider.public_client,
            "username": "jdoe",
            "password": password,
            "scope": "openid",
        },
        verify=trusting(oidc_provider.ca_cert),
    )


def test_password_grant_returns_a_verifiable_id_token(oidc_provider: OIDCProvider) -> None:
    answer = _password_grant(oidc_provider, oidc_provider.users["jdoe"])
    assert answer.status_code == 200
    body = answer.json()
    assert {"access_token", "id_token", "expires_in"} <= set(body)
    claims = _verify(
        body["id_token"],
        oidc_provider.jwks_uri,
        trusting(oidc_provider.ca_cert),
        oidc_provider.issuer,
        oidc_provider.public_client,
    )
    assert claims["sub"] == "jdoe"
    assert isinstance(claims["exp"], int) and claims["exp"] > time.time()


def test_bad_password_is_invalid_grant_with_nanoidps_400(oidc_provider: OIDCProvider) -> None:
    answer = _password_grant(oidc_provider, "wrong")
    assert answer.status_code == 400  # Keycloak says 401; a client must accept both
    assert answer.json()["error"] == "invalid_grant"


def test_client_credentials_with_basic_auth(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.client_credentials_token()
    claims = _verify(
        token, oidc_provider.jwks_uri, trusting(oidc_provider.ca_cert), oidc_provider.issuer, "quay"
    )
    assert claims["sub"] == oidc_provider.confidential_client


def test_client_credentials_refused_for_the_public_client(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": oidc_provider.public_client},
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] == "unauthorized_client"


def test_client_credentials_bad_secret(oidc_provider: OIDCProvider) -> None:
    answer = httpx.post(
        oidc_provider.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(oidc_provider.confidential_client, "not-the-secret"),
        verify=trusting(oidc_provider.ca_cert),
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_resource_parameter_sets_the_audience(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.password_token("alice", kind="access_token", resource="https://quay.test")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://quay.test"


def test_mint_signs_with_the_published_key(oidc_provider: OIDCProvider) -> None:
    token = oidc_provider.mint("someone", audience="aud-x", exp=int(time.time()) + 60)
    claims = _verify(
        token,
        oidc_provider.jwks_uri,
        trusting(oidc_provider.ca_cert),
        oidc_provider.issuer,
        "aud-x",
    )
    assert claims["sub"] == "someone"


def test_kube_issuer_discovery_and_token(kube_issuer: KubeIssuer) -> None:
    ca = trusting(kube_issuer.ca_cert)
    document = httpx.get(f"{kube_issuer.issuer}/.well-known/openid-configuration", verify=ca)
    assert document.json()["issuer"] == kube_issuer.issuer
    assert document.json()["jwks_uri"] == f"{kube_issuer.issuer}/openid/v1/jwks"
    token = kube_issuer.mint("ci", "builder", audience="quay.test")
    claims = _verify(token, document.json()["jwks_uri"], ca, kube_issuer.issuer, "quay.test")
    assert claims["sub"] == "system:serviceaccount:ci:builder"
    assert claims["aud"] == ["quay.test"]


# --- the server process ------------------------------------------------------------------------


def _assert_no_secrets(text: str) -> None:
    for secret in (CONFIDENTIAL_SECRET, *USERS.values(), "PRIVATE KEY"):
        assert secret not in text


def _gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` (not necessarily a child) has exited, or becomes a zombie, in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        except OSError:
            stat = ""
        if stat and stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_provider_runs_in_a_separate_process(_nanoidp: NanoidpServers) -> None:
    """Run by $QUAYFED_NANOIDP_PYTHON (else this interpreter); never imported here."""
    process = _nanoidp.process
    assert process.pid != os.getpid()
    assert process.poll() is None
    assert "nanoidp" not in sys.modules
    executable = Path(f"/proc/{process.pid}/exe")
    if executable.exists():
        assert executable.resolve() == Path(nanoidp_python()).resolve()


def test_server_process_stops_on_sigterm_and_keeps_secrets_out_of_its_log(
    tmp_path: Path, test_pki: TestPKI
) -> None:
    started = time.monotonic()
    servers = start_nanoidp(tmp_path, test_pki)
    try:
        assert time.monotonic() - started < 15
        issued = jwt.get_unverified_header(servers.provider.client_credentials_token())["kid"]
        assert jwt.get_unverified_header(servers.provider.mint())["kid"] == issued
        assert jwt.get_unverified_header(servers.kube.mint())["kid"] == issued
    finally:
        servers.close()
    assert servers.process.returncode == 0
    servers.close()  # idempotent
    _assert_no_secrets(servers.log_path.read_text())


def test_server_process_exits_when_its_parent_dies(tmp_path: Path, test_pki: TestPKI) -> None:
    parent_script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from quay_sandbox.tls import TestPKI
        from tests.support.oidc_provider import start_nanoidp
        pki = TestPKI(Path({str(test_pki.ca_cert)!r}), Path({str(test_pki.server_cert)!r}),
                      Path({str(test_pki.server_key)!r}))
        servers = start_nanoidp(Path({str(tmp_path)!r}), pki)
        print(json.dumps({{"pid": servers.process.pid}}), flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script], cwd=_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "the parent did not start nanoidp"
        server_pid = json.loads(line)["pid"]
        assert not _gone(server_pid, 0.2)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    if not _gone(server_pid, 10):
        os.kill(server_pid, signal.SIGKILL)
        raise AssertionError("nanoidp's server process outlived its parent")
