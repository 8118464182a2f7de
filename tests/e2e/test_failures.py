"""What clients see when the helper cannot mint a token."""

from __future__ import annotations

import pytest

from tests.e2e.clients import ClientRun
from tests.e2e.deployment import E2E
from tests.e2e.works_with import WorksWith

pytestmark = pytest.mark.e2e


def _pulls(e2e: E2E, ref: str, *, tls_verify: bool = True) -> list[ClientRun]:
    sandbox = e2e.sandbox
    return [
        sandbox.skopeo_inspect(ref, tls_verify=tls_verify),
        sandbox.podman_pull(ref, tls_verify=tls_verify),
        sandbox.buildah_pull(ref, tls_verify=tls_verify),
        sandbox.docker_manifest_inspect(ref, insecure=not tls_verify),
    ]


def test_public_and_other_registry_pull_while_the_issuer_is_down(
    e2e: E2E, works_with: WorksWith
) -> None:
    e2e.configure("password", issuer=e2e.unreachable_issuer())

    for run in _pulls(e2e, e2e.public()):
        assert run.ok, run.describe()
        works_with.verified(
            run.client,
            "public image on the same registry pulls while the issuer is down",
        )
    for run in _pulls(e2e, e2e.other(), tls_verify=False):
        assert run.ok, run.describe()
        works_with.verified(
            run.client,
            "unconfigured registry in credHelpers pulls while the issuer is down",
        )
    assert e2e.exchanges() == 0

    private = e2e.sandbox.skopeo_inspect(e2e.private(1))
    assert not private.ok, private.describe()


def test_bad_password_with_on_failure_error_shows_the_helpers_reason(
    e2e: E2E, works_with: WorksWith
) -> None:
    e2e.configure("password", on_failure="error")
    e2e.sandbox.env["OIDC_PASSWORD"] = "not-the-password"
    e2e.secrets.append("not-the-password")

    reason = e2e.helper_get()
    assert reason.returncode == 1
    line = reason.stdout.strip()
    assert line and "\n" not in line, reason.describe()
    assert e2e.registry.host in line

    for run in _pulls(e2e, e2e.private(1))[:3]:
        assert not run.ok, run.describe()
        assert line in run.stderr, f"the helper's reason {line!r} is missing:\n{run.describe()}"
        works_with.verified(run.client, "shows the helper's one-line reason on a bad password")
    # docker treats any helper error as "no credentials" and goes on anonymously.
    docker = e2e.sandbox.docker_manifest_inspect(e2e.private(1))
    assert not docker.ok, docker.describe()
    assert e2e.exchanges() == 0


def test_bad_password_with_on_failure_anonymous(e2e: E2E, works_with: WorksWith) -> None:
    e2e.configure("password", on_failure="anonymous")
    e2e.sandbox.env["OIDC_PASSWORD"] = "not-the-password"
    e2e.secrets.append("not-the-password")

    for run in _pulls(e2e, e2e.private(1)):
        assert not run.ok, run.describe()
        text = run.output.lower()
        assert "unauthorized" in text or "denied" in text or "authentication" in text, (
            run.describe()
        )
    for run in _pulls(e2e, e2e.public()):
        assert run.ok, run.describe()
        works_with.verified(
            run.client,
            "bad password + on_failure=anonymous: private denied, public pulls",
        )
    assert e2e.exchanges() == 0
