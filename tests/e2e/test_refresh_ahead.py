"""podman pulls inside the token's refresh-ahead window: it gets the cached token at once and is
not held by the detached refresh (which holds none of its pipes), then the next pull uses the
new token."""

from __future__ import annotations

import time

import pytest

from docker_credential_quayfed import claims
from tests.e2e.deployment import E2E
from tests.e2e.works_with import WorksWith

pytestmark = pytest.mark.e2e

LIFETIME = 18
MARGIN = 6
QUAY_DELAY = 8.0  # podman, even on a busy machine, returns well before the refresh ends


def test_podman_is_not_held_by_the_background_refresh(e2e: E2E, works_with: WorksWith) -> None:
    e2e.quay.set_token_lifetime(LIFETIME)
    e2e.configure("password", refresh_margin=MARGIN, timeout=15)
    first = e2e.sandbox.pull("podman", e2e.private(7))
    assert first.ok, first.describe()
    assert e2e.exchanges() == 1
    token = e2e.cached_robot_token()
    issued = claims.numeric_claim(claims.unverified_claims(token), "iat")
    assert issued is not None
    time.sleep(max(0.0, issued + (LIFETIME - 2 * MARGIN) + 1 - time.time()))

    e2e.quay.inject_fault("hang", seconds=QUAY_DELAY)
    second = e2e.sandbox.pull("podman", e2e.private(8))
    assert second.ok, second.describe()
    assert e2e.exchanges() == 1, "podman returned while the refresh was still waiting on Quay"
    ends = time.monotonic() + QUAY_DELAY + 10
    while e2e.exchanges() < 2:
        assert time.monotonic() < ends, "the background refresh never reached Quay"
        time.sleep(0.1)
    # Quay counts the exchange before its answer reaches the detached refresh, which then
    # writes the new token: wait for that too.
    while e2e.cached_robot_token() == token:
        assert time.monotonic() < ends, "the refreshed token never reached the cache"
        time.sleep(0.1)
    works_with.verified("podman", "pull inside the refresh-ahead window", "auth.json")
