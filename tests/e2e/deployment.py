"""The servers the suite runs once (Quay emulator, two registries, issuers), and each
test's view of them (`E2E`): a fresh client sandbox and helper cache."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from quay_sandbox.quay import QuayEmulator
from tests.e2e import helper_config
from tests.e2e.clients import HELPER_NAME, ClientRun, ClientSandbox
from tests.e2e.images import write_oci_image
from tests.e2e.registry import DistributionRegistry, free_port

HELPER_EXECUTABLE = f"docker-credential-{HELPER_NAME}"
ROBOT = "quay_federation+rhbk_user"
PRIVATE_REPO = "quay_federation/app"
PRIVATE_TAGS = tuple(str(number) for number in range(1, 9))
PUBLIC_IMAGE = "public/hello:1"
OTHER_IMAGE = "library/other:1"

Setting = Union[str, int]

# A JWT anywhere in client output means a token leaked.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


@dataclass
class Deployment:
    """Everything shared by the whole session."""

    quay: QuayEmulator
    registry: DistributionRegistry
    other: DistributionRegistry
    ca_cert: Path
    # Per source: the helper settings that make it work (issuer, client, secrets by env name).
    sources: dict[str, dict[str, Setting]]
    # Environment the helper needs (passwords, client secrets), and the secret values.
    secret_env: dict[str, str] = field(default_factory=dict)

    @property
    def robot(self) -> str:
        return ROBOT

    @property
    def secrets(self) -> list[str]:
        return [value for value in self.secret_env.values() if len(value) >= 6]

    def helper_settings(self, source: str) -> dict[str, Setting]:
        return {
            "robot": ROBOT,
            "quay_url": self.quay.url or "",
            "ca_bundle": str(self.ca_cert),
            **self.sources[source],
            "source": source,
        }

    def exchanges(self) -> int:
        count: int = self.quay.counters_snapshot()["exchanges_succeeded"]
        return count


def seed(sandbox: ClientSandbox, registry: DistributionRegistry, refs: Mapping[str, str]) -> None:
    """Push `{repo:tag: text}` images into an open (auth-less) registry with skopeo."""
    layout = sandbox.root / "oci-layout"
    for number, (ref, text) in enumerate(refs.items()):
        name = f"seed{number}"
        write_oci_image(layout, name, {"hello.txt": text.encode()})
        result = sandbox.skopeo_copy(
            f"oci:{layout}:{name}",
            f"docker://{registry.host}/{ref}",
            dest_tls_verify=registry.tls is not None,
        )
        assert result.ok, result.describe()


class E2E:
    """One test's view: a fresh client sandbox and helper cache against the shared servers."""

    def __init__(self, deployment: Deployment, sandbox: ClientSandbox, helper_dir: Path) -> None:
        self.deployment = deployment
        self.sandbox = sandbox
        self.registry = deployment.registry
        self.quay = deployment.quay
        self.helper_config = helper_dir / "config.toml"
        self.cache_dir = helper_dir / "cache"
        self.secrets: list[str] = deployment.secrets
        sandbox.env.update(
            {
                "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(self.helper_config),
                "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(self.cache_dir),
                **deployment.secret_env,
            }
        )

    def exchanges(self) -> int:
        """Successful federation exchanges at the emulator since this test began."""
        return self.deployment.exchanges()

    # References

    def private(self, tag: int | str) -> str:
        return f"{self.registry.host}/{PRIVATE_REPO}:{tag}"

    def pushed(self, client: str, source: str) -> str:
        return f"{self.registry.host}/{PRIVATE_REPO}:pushed-{client}-{source}"

    def public(self) -> str:
        return f"{self.registry.host}/{PUBLIC_IMAGE}"

    def other(self) -> str:
        return f"{self.deployment.other.host}/{OTHER_IMAGE}"

    def manifest_digest(self, ref: str) -> str | None:
        """The digest a tag points at, read from the registry's own storage."""
        return self.registry.tag_digest(ref.split("/", 1)[1])

    def registry_has(self, ref: str) -> bool:
        return self.manifest_digest(ref) is not None

    # Configuration

    def configure(
        self, source: str, *, client_config: Path | None = None, **overrides: Setting
    ) -> None:
        """Write the helper's TOML for the Quay-like registry, and credHelpers entries for
        both registries (the second one is deliberately absent from the helper's TOML)."""
        settings = {**self.deployment.helper_settings(source), **overrides}
        helper_config.write(self.helper_config, {self.registry.host: settings})
        self.sandbox.use_helper_for([self.registry.host, self.deployment.other.host], client_config)

    @staticmethod
    def unreachable_issuer() -> str:
        return f"https://127.0.0.1:{free_port()}/realms/quay"

    # The helper itself

    def helper_get(self) -> ClientRun:
        """What the installed helper answers clients for the registry (stdout is the reason)."""
        return self.sandbox.run(HELPER_EXECUTABLE, ["get"], stdin=self.registry.host)

    def cached_robot_token(self) -> str:
        answer = self.helper_get()
        assert answer.ok, answer.describe()
        token: str = json.loads(answer.stdout)["Secret"]
        return token

    def cached_token_files(self) -> list[Path]:
        if not self.cache_dir.exists():
            return []
        return sorted(self.cache_dir.glob("*.token"))

    def clear_cache(self) -> None:
        for path in self.cached_token_files():
            path.unlink()

    def check_no_secrets(self) -> None:
        """No client printed a password, client secret or token (the helper's own answers,
        which carry the token by design, are not client output)."""
        for run in self.sandbox.runs:
            if run.client == HELPER_EXECUTABLE:
                continue
            for secret in self.secrets:
                assert secret not in run.output, (
                    f"a secret in {run.client} output:\n{run.describe()}"
                )
            leaked = _JWT.search(run.output)
            assert leaked is None, f"a JWT in {run.client} output:\n{run.describe()}"
