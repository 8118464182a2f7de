"""Token expiry during a session, and many pulls at once on a cold cache."""

from __future__ import annotations

import time

import pytest

from docker_credential_quayfed import claims
from tests.e2e.deployment import E2E, PRIVATE_TAGS
from tests.e2e.works_with import WorksWith

pytestmark = pytest.mark.e2e

ROBOT_LIFETIME = 20


def test_pull_after_the_refresh_point_gets_a_fresh_token(e2e: E2E, works_with: WorksWith) -> None:
    e2e.quay.set_token_lifetime(ROBOT_LIFETIME)
    e2e.configure("password")
    sandbox = e2e.sandbox

    first = sandbox.podman_pull(e2e.private(1))
    assert first.ok, first.describe()
    assert e2e.exchanges() == 1
    first_token = e2e.cached_robot_token()

    again = sandbox.skopeo_inspect(e2e.private(2))
    assert again.ok, again.describe()
    assert e2e.exchanges() == 1, "the cached token is served before its refresh point"

    # The helper serves a cached token while more than min(margin, lifetime / 2) remains;
    # counted from the token's own iat, so a slow first pull cannot shift the refresh point.
    issued_at = float(claims.unverified_claims(first_token)["iat"])
    time.sleep(max(0.0, issued_at + ROBOT_LIFETIME / 2 + 1.5 - time.time()))
    later = sandbox.podman_pull(e2e.private(7))
    assert later.ok, later.describe()
    assert e2e.exchanges() == 2, "a pull after the refresh point mints a new token"
    assert e2e.cached_robot_token() != first_token
    works_with.verified(
        "podman", "pull after robot-token refresh point (no manual step)", "auth.json"
    )


def test_eight_parallel_pulls_on_a_cold_cache_make_one_exchange(
    e2e: E2E, works_with: WorksWith
) -> None:
    e2e.configure("password")
    sandbox = e2e.sandbox
    # Touch the storage once so that the pulls race in the helper, not in storage setup.
    assert sandbox.podman("images").ok

    running = [
        sandbox.start("podman", sandbox.podman_pull_args(e2e.private(tag))) for tag in PRIVATE_TAGS
    ]
    results = [sandbox.wait(process) for process in running]

    for result in results:
        assert result.ok, result.describe()
    assert e2e.exchanges() == 1
    assert sorted(sandbox.local_images("podman")) == sorted(
        e2e.private(tag) for tag in PRIVATE_TAGS
    )
    works_with.verified("podman", "8 parallel pulls on a cold cache, one exchange", "auth.json")
