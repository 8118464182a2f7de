"""The one flow: cache -> lock -> token source -> Quay exchange -> cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from docker_credential_quayfed import claims, log
from docker_credential_quayfed.cache import RobotToken, TokenCache, robot_token_from_jwt
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import QuayError, QuayfedError

#: how the answer was obtained, for callers that report it (demo, doctor, debug)
CACHED, MINTED, STALE = "cached", "minted", "stale"

#: while a still-valid token is at hand, a refresh may not hold the pull up for longer
STALE_REFRESH_BUDGET = 8.0


@dataclass(frozen=True)
class Outcome:
    token: RobotToken
    how: str


def robot_token(
    registry: RegistryConfig,
    cache: TokenCache,
    *,
    clock: Callable[[], float] = time.time,
    force: bool = False,
) -> Outcome:
    """A usable robot token for ``registry``: cached while fresh, else minted under a lock."""
    identity = registry.identity

    def fresh_in_cache() -> RobotToken | None:
        cached = cache.read(registry.key, identity)
        if force or cached is None or cached.refresh_due(registry.refresh_margin, clock()):
            return None
        return cached

    found = fresh_in_cache()
    if found is not None:
        log.debug(f"cache hit for {registry.key}: robot token expires at {found.expires_at:.0f}")
        return Outcome(found, CACHED)
    with cache.lock(registry.key, identity, timeout=registry.timeout):
        found = fresh_in_cache()
        if found is not None:
            log.debug(f"another process refreshed {registry.key} while we waited")
            return Outcome(found, CACHED)
        cached = cache.read(registry.key, identity)
        fallback = cached if cached is not None and cached.valid(clock()) else None
        budget = min(registry.timeout, STALE_REFRESH_BUDGET) if fallback else registry.timeout
        try:
            fresh = mint(registry, clock, budget=budget)
        except QuayfedError as exc:
            if fallback is not None and fallback.valid(clock()):
                remaining = int(fallback.expires_at - clock())
                log.warn(
                    f"{registry.key}: refreshing the robot token failed ({exc.message}); "
                    f"serving the cached one, valid {remaining}s more"
                )
                return Outcome(fallback, STALE)
            raise
        cache.write(identity, fresh)
        return Outcome(fresh, MINTED)


def mint(
    registry: RegistryConfig, clock: Callable[[], float] = time.time, budget: float = 0.0
) -> RobotToken:
    """Get a JWT from the configured source and exchange it at Quay (network; imports httpx)."""
    from docker_credential_quayfed import oidc, quay, transport
    from docker_credential_quayfed.sources import SourceContext, for_registry

    deadline = transport.Deadline(budget or registry.timeout)
    source = for_registry(registry)
    with transport.client(registry.ca_bundle) as session:
        context = SourceContext(registry=registry, session=session, deadline=deadline)
        oidc_token = source.fetch(context)
        oidc_claims = oidc.check_jwt(oidc_token, registry.source, clock())
        log.debug(f"OIDC token from source {registry.source!r}: {claims.describe(oidc_claims)}")
        robot = quay.exchange(
            session, registry.quay_base_url, registry.robot, oidc_token, deadline=deadline
        )
    try:
        minted = robot_token_from_jwt(registry.key, registry.robot, robot, clock())
    except ValueError as exc:
        raise QuayError(
            f"Quay's robot token for {registry.robot} is unusable ({exc})",
            "check quay_url points at Quay",
        ) from None
    log.debug(f"robot token: {claims.describe(claims.unverified_claims(robot))}")
    return minted
