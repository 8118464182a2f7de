"""The kubelet credential provider end to end: the provider is exec'd exactly as the kubelet
execs it (``<bin-dir>/<name> <args>``, the config's env added, the request on stdin, one
minute at most), and the credentials it returns are used by the real skopeo to pull a private
image from the real registry, which takes tokens only from the Quay emulator."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment import E2E, Deployment
from tests.support import leaks
from tests.support.oidc_provider import DEFAULT_AUDIENCE, KubeIssuer
from tests.test_kubelet_golden import FACTS, KUBELET_TIMEOUT, response_problems

pytestmark = pytest.mark.e2e

PROVIDER = "quay-credential-provider"
ROBOT = "quay_federation+kubelet_puller"
TRUSTED = ("apps", "puller-a")
UNTRUSTED = ("apps", "puller-b")


@dataclass(frozen=True)
class CredentialProvider:
    """One ``providers`` entry of the kubelet's CredentialProviderConfig, and its bin dir."""

    bin_dir: Path
    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    def exec(self, request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """What the kubelet does: exec bin_dir/name args, its environment plus env, stdin in."""
        done = subprocess.run(
            [str(self.bin_dir / self.name), *self.args],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env={**os.environ, **dict(self.env)},
            timeout=KUBELET_TIMEOUT,
            check=False,
        )
        leaks.observe(done.stderr, f"{self.name} stderr (exit {done.returncode})")
        if done.returncode == 0:
            for entry in (json.loads(done.stdout).get("auth") or {}).values():
                leaks.known(entry["password"], "robot token answered to the kubelet")
        return done


@pytest.fixture(scope="module")
def kubelet_bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubelet's --image-credential-provider-bin-dir: the installed provider, or, with
    $QUAYFED_E2E_HELPER (the single-file zipapp), that file installed under the provider's name."""
    directory = tmp_path_factory.mktemp("kubelet-bin")
    chosen = os.environ.get("QUAYFED_E2E_HELPER", "").strip()
    target = Path(chosen).resolve() if chosen else Path(sys.executable).with_name(PROVIDER)
    if not os.access(target, os.X_OK):
        pytest.fail(f"{target} is not installed; run 'pip install -e .'")
    (directory / PROVIDER).symlink_to(target)
    return directory


@pytest.fixture
def provider(
    e2e: E2E, deployment: Deployment, kube_issuer: KubeIssuer, kubelet_bin_dir: Path
) -> Iterator[CredentialProvider]:
    """The node: a [kubelet] table for the registry, a [registries] table for node identity,
    and a robot that trusts one service account."""
    deployment.quay.add_robot(
        ROBOT,
        federation=[(kube_issuer.issuer, "system:serviceaccount:{}:{}".format(*TRUSTED))],
        permissions={"quay_federation/*": ["pull"]},
    )
    host = deployment.registry.host
    node_settings = deployment.helper_settings("file")
    lines = [
        f"[kubelet.{json.dumps(host)}]",
        f"audience = {json.dumps(DEFAULT_AUDIENCE)}",
        f"quay_url = {json.dumps(deployment.quay.url)}",
        f"ca_bundle = {json.dumps(str(deployment.ca_cert))}",
        'robots = ["quay_federation+kubelet_*"]',
        f"[registries.{json.dumps(host)}]",
        *(f"{name} = {json.dumps(value)}" for name, value in node_settings.items()),
    ]
    e2e.helper_config.parent.mkdir(parents=True, exist_ok=True)
    e2e.helper_config.write_text("\n".join(lines) + "\n")
    yield CredentialProvider(
        bin_dir=kubelet_bin_dir,
        name=PROVIDER,
        args=("--config", str(e2e.helper_config)),
        env=(("DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR", str(e2e.cache_dir)),),
    )
    deployment.quay.remove_robot(ROBOT)


def kubelet_request(image: str, token: str = "", robot: str = ROBOT) -> dict[str, Any]:
    request: dict[str, Any] = {
        "apiVersion": FACTS["credentialprovider"]["apiVersion"],
        "kind": FACTS["credentialprovider"]["request"]["kind"],
        "image": image,
    }
    if token:
        request["serviceAccountToken"] = token
        request["serviceAccountAnnotations"] = {"quay.io/federated-robot-account": robot}
    return request


def use_credentials(e2e: E2E, response: dict[str, Any]) -> None:
    """Hand the returned auth to skopeo the way the kubelet hands it to the runtime."""
    auths = {
        key: {"auth": base64.b64encode(f"{a['username']}:{a['password']}".encode()).decode()}
        for key, a in response["auth"].items()
    }
    e2e.sandbox.auth_file.write_text(json.dumps({"auths": auths}))
    e2e.sandbox.auth_file.chmod(0o600)


def pull(e2e: E2E, tag: int, tmp_path: Path) -> Any:
    target = tmp_path / f"pulled-{tag}"
    return e2e.sandbox.run(
        "skopeo",
        ["copy", f"--src-cert-dir={e2e.sandbox.cert_dir}", f"docker://{e2e.private(tag)}",
         f"dir:{target}"],
    )  # fmt: skip


def test_pod_identity_pull(
    e2e: E2E, provider: CredentialProvider, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    denied = pull(e2e, 1, tmp_path)
    assert not denied.ok, "the registry must refuse an anonymous pull"
    assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower()

    request = kubelet_request(e2e.private(1), kube_issuer.mint(*TRUSTED))
    done = provider.exec(request)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response_problems(response, request) == []
    assert response["cacheKeyType"] == "Registry"
    assert list(response["auth"]) == [e2e.registry.host]
    assert response["auth"][e2e.registry.host]["username"] == ROBOT

    use_credentials(e2e, response)
    pulled = pull(e2e, 1, tmp_path)
    assert pulled.ok, pulled.describe()
    assert (tmp_path / "pulled-1" / "manifest.json").exists()
    assert e2e.exchanges() == 1


def test_another_service_account_gets_nothing(
    e2e: E2E, provider: CredentialProvider, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    trusted = provider.exec(kubelet_request(e2e.private(2), kube_issuer.mint(*TRUSTED)))
    assert trusted.returncode == 0, trusted.stderr

    untrusted_token = kube_issuer.mint(*UNTRUSTED)
    refused = provider.exec(kubelet_request(e2e.private(2), untrusted_token))
    assert refused.returncode != 0 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1
    assert "Quay refused the exchange" in refused.stderr
    assert untrusted_token not in refused.stderr
    assert e2e.exchanges() == 1


def test_node_identity_pull(e2e: E2E, provider: CredentialProvider, tmp_path: Path) -> None:
    """No service-account token (a static pod): the node's own [registries] table answers."""
    request = kubelet_request(e2e.private(3))
    done = provider.exec(request)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response_problems(response, request) == []
    assert response["auth"][e2e.registry.host]["username"] == e2e.deployment.robot

    use_credentials(e2e, response)
    pulled = pull(e2e, 3, tmp_path)
    assert pulled.ok, pulled.describe()
