"""The one flow: cache -> lock -> token source -> Quay exchange -> cache.

One deadline (the registry's ``timeout``) bounds all of it: waiting for another process's
refresh, reading a secret, every request. While a still-valid token is in hand, nothing may
hold the pull up for long, nor outlive that token: it is served instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from docker_credential_quayfed import claims, log
from docker_credential_quayfed.cache import (
    LockTimeout,
    RobotToken,
    robot_token_from_jwt,
)
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import (
    GrantRefused,
    IssuerError,
    NetworkError,
    QuayError,
    QuayfedError,
    SecretError,
)
from docker_credential_quayfed.fastpath import DEFAULT_SKEW

if TYPE_CHECKING:
    import httpx

    from docker_credential_quayfed.config import Config
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.identity import CredentialKey, Principal
    from docker_credential_quayfed.request import RequestContext
    from docker_credential_quayfed.sources import SourceContext

#: how the answer was obtained, for callers that report it (demo, doctor, debug)
CACHED, MINTED, STALE = "cached", "minted", "stale"

#: while a still-valid token is at hand, a refresh may not hold the pull up for longer
STALE_REFRESH_BUDGET = 8.0
#: ... nor may waiting for another process's refresh
STALE_LOCK_WAIT = 1.0
#: a refresh shorter than this cannot succeed: serve the token in hand instead
MIN_REFRESH_BUDGET = 1.0
#: after a network-level failure, later gets answer at once for this long (erase clears it)
FAILURE_WINDOW = 30.0
#: an issuer's refusal with one of these (RFC 6749 5.2) is about the request, not the endpoint
OAUTH_ERRORS = frozenset(
    (
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
    )
)
#: a token is served only while more than this is left of it (clocks differ a little)
SKEW = DEFAULT_SKEW


@dataclass(frozen=True)
class Outcome:
    token: RobotToken
    how: str


def settings_digest(registry: RegistryConfig) -> str:
    """Changes whenever any of the registry's settings change (clears a remembered failure)."""
    return hashlib.sha256(repr(registry).encode("utf-8")).hexdigest()[:16]


def robot_token(
    registry: RegistryConfig,
    request: RequestContext,
    *,
    force: bool = False,
    oidc_token: str | None = None,
) -> Outcome:
    """A usable robot token for ``registry``: cached while fresh, else minted under a lock.

    ``timeout`` counts from the request's start. ``oidc_token``: the JWT to exchange, when the
    caller has it already (the kubelet hands over the pod's service-account token); otherwise
    the registry's source gives one. Every cache read and write is under :func:`identify`'s
    key: a token is served only to the principal it was minted for.
    """
    cache, clock = request.cache, request.clock
    deadline = request.deadline(registry.timeout)
    credential, carried_jwt = identify(registry, request, deadline, oidc_token)
    host = registry.key
    settings_stamp = settings_digest(registry)
    # A carried_jwt-over JWT Quay would refuse now (expired) may not unlock a cached answer either.
    servable = not carried_jwt or _unexpired(carried_jwt, clock())

    def fresh_in_cache() -> RobotToken | None:
        cached = cache.read(credential) if servable else None
        if force or cached is None or cached.refresh_due(registry.refresh_margin, clock()):
            return None
        return cached

    def valid_in_cache() -> RobotToken | None:
        cached = cache.read(credential) if servable else None
        return cached if cached is not None and cached.valid(clock(), SKEW) else None

    found = fresh_in_cache()
    if found is not None:
        log.debug(f"cache hit for {host}: robot token expires at {found.expires_at:.0f}")
        return Outcome(found, CACHED)
    fallback = valid_in_cache()

    def serve_fallback(reason: str) -> Outcome:
        assert fallback is not None
        remaining = int(fallback.expires_at - clock())
        log.warn(f"{host}: {reason}; serving the cached robot token, valid {remaining}s more")
        return Outcome(fallback, STALE)

    def failed_recently() -> Outcome | None:
        noted = None if force else cache.recent_failure(credential, settings_stamp, FAILURE_WINDOW)
        if noted is None:
            return None
        age, message = noted
        if fallback is not None:
            return serve_fallback(f"refreshing failed {age:.0f}s ago ({message})")
        raise NetworkError(
            f"{message} ({age:.0f}s ago; not retrying for {FAILURE_WINDOW - age:.0f}s)",
            f"fix the cause, or run: docker-credential-quayfed erase <<< {host}"
            if request.commands
            else "fix the cause; the next try comes once that time has passed",
        )

    remembered = failed_recently()
    if remembered is not None:
        return remembered
    wait = min(deadline.remaining(), STALE_LOCK_WAIT) if fallback else deadline.remaining()
    try:
        with cache.lock(credential, timeout=max(wait, 0.0)):
            found = fresh_in_cache()
            if found is not None:
                log.debug(f"another process refreshed {host} while we waited")
                return Outcome(found, CACHED)
            fallback = valid_in_cache()
            remembered = failed_recently()
            if remembered is not None:
                return remembered
            budget = deadline.remaining()
            if fallback is not None:
                # Never spend longer than the token in hand has left to live.
                life = fallback.expires_at - clock() - SKEW - 0.5
                budget = min(budget, STALE_REFRESH_BUDGET, life)
                if budget < MIN_REFRESH_BUDGET:
                    return serve_fallback("no time left to refresh before it expires")
            try:
                fresh = _mint_and_keep(registry, request, credential, carried_jwt, budget)
            except QuayfedError as exc:
                if fallback is not None and fallback.valid(clock(), SKEW):
                    return serve_fallback(f"refreshing the robot token failed ({exc.message})")
                raise
            return Outcome(fresh, MINTED)
    except LockTimeout:
        if fallback is not None and fallback.valid(clock(), SKEW):
            return serve_fallback("another process is still refreshing it")
        raise


def refresh_ahead(registry: RegistryConfig, request: RequestContext) -> RobotToken | None:
    """Mint the next token while the cached one is inside its refresh-ahead window; None when
    another process holds the lock (it is refreshing) or the token is no longer due."""
    cache, clock = request.cache, request.clock
    credential, carried_jwt = identify(registry, request, request.deadline(registry.timeout))
    if carried_jwt and not _unexpired(carried_jwt, clock()):
        return None
    try:
        with cache.lock(credential, timeout=0.0):
            cached = cache.read(credential)
            if cached is None or not cached.ahead_due(registry.refresh_margin, clock()):
                return None
            if cache.recent_failure(credential, settings_digest(registry), FAILURE_WINDOW):
                return None
            return _mint_and_keep(registry, request, credential, carried_jwt)
    except LockTimeout:
        return None


def _mint_and_keep(
    registry: RegistryConfig,
    request: RequestContext,
    credential: CredentialKey,
    carried_jwt: str,
    budget: float = 0.0,
) -> RobotToken:
    """The one locked mint (``credential``'s lock held): mint, check the credential still
    names whom it named, keep the token; a network failure is remembered."""
    cache = request.cache
    try:
        fresh = mint(
            registry, request, budget=budget, carried_jwt=carried_jwt, credential=credential
        )
    except NetworkError as exc:
        cache.note_failure(credential, settings_digest(registry), exc.message)
        raise
    _check_still_theirs(registry, request, credential)
    cache.write(credential, fresh)
    cache.clear_failure(credential)
    return fresh


def _check_still_theirs(
    registry: RegistryConfig, request: RequestContext, credential: CredentialKey
) -> None:
    """A credential minted from configured settings (a person's login above all) must still
    name the same principal once the token is in hand: a logout, or another person's login,
    while the request was out means the token is not this key's to keep."""
    from docker_credential_quayfed import identity, logins
    from docker_credential_quayfed.errors import LoginRequired
    from docker_credential_quayfed.sources import for_registry

    source = for_registry(registry)
    if source.carries_jwt or credential.principal.kind == identity.JWT:
        return  # the JWT that was exchanged named the principal itself
    deadline = request.deadline(registry.timeout)
    if source.principal(registry, request, deadline)[0] == credential.principal:
        return
    request.cache.remove(logins.jwt_name(credential.principal))
    raise LoginRequired(
        f"the login for {registry.key} changed hands (logout or another login) while its "
        "robot token was being minted; the token was discarded",
        f"run: docker-credential-quayfed login {registry.key}",
    )


def identify(
    registry: RegistryConfig,
    request: RequestContext,
    deadline: Deadline,
    oidc_token: str | None = None,
) -> tuple[CredentialKey, str]:
    """The one key of this request's credential, and the JWT that had to be read to learn it
    ("" when the source mints it later). ``oidc_token`` is a JWT handed over by the caller
    (the kubelet's service-account token): its own claims name the principal."""
    from docker_credential_quayfed import identity
    from docker_credential_quayfed.sources import for_registry

    if oidc_token is not None:
        try:
            principal = identity.principal_of_jwt(oidc_token, registry.exchange_audience)
        except identity.NoPrincipal as exc:
            raise SecretError(
                f"the JWT handed over for {registry.key} is unusable ({exc})",
                "hand over an OIDC JWT with iss and sub claims",
            ) from None
        carried_jwt = oidc_token
    else:
        principal, carried_jwt = for_registry(registry).principal(registry, request, deadline)
    credential = identity.credential_key(
        registry.key, registry.robot, registry.quay_base_url, principal
    )
    return credential, carried_jwt


def key_for(registry: RegistryConfig, request: RequestContext) -> CredentialKey:
    """The key of ``registry``'s credential now (a carried JWT is read to learn it)."""
    return identify(registry, request, request.deadline(registry.timeout))[0]


def _unexpired(token: str, now: float) -> bool:
    expires = claims.expiry(token)
    return expires is not None and expires - now > SKEW


def snapshot_config(loaded: Config, request: RequestContext) -> None:
    """Write the fast path's snapshot: for each registry key, the digest of its credential's
    key, or (a token file) what the fast path needs to compute it from the JWT there. A
    source whose identity lives in the process's environment is left to the full path."""
    from docker_credential_quayfed.cache import SnapshotEntry, write_snapshot
    from docker_credential_quayfed.sources import for_registry
    from docker_credential_quayfed.sources.file import FileTokenSource

    entries = {}
    for name, registry in loaded.registries.items():
        source = for_registry(registry)
        margin, robot = float(registry.refresh_margin), registry.robot
        ahead = registry.refresh_ahead
        if isinstance(source, FileTokenSource):
            jwt_file = (registry.quay_base_url, registry.exchange_audience, registry.token_file)
            entries[name] = SnapshotEntry("", margin, robot, ahead, jwt_file)
        elif not (source.ambient or source.carries_jwt):
            entries[name] = SnapshotEntry(key_for(registry, request).digest, margin, robot, ahead)
    write_snapshot(request.cache, str(loaded.path), loaded.stamp, entries)


def mint(
    registry: RegistryConfig,
    request: RequestContext,
    budget: float = 0.0,
    carried_jwt: str = "",
    credential: CredentialKey | None = None,
) -> RobotToken:
    """Get a JWT from the configured source (or use the one ``carried_jwt`` over) and exchange it
    at Quay (network; imports httpx).

    Everything inside ends within ``budget`` (default: the registry's timeout), whatever the
    servers or the secret command do. The two steps are :func:`fetch_oidc_token` and
    :func:`exchange`, which doctor runs one at a time to time and report them.
    """
    from docker_credential_quayfed import oidc, transport
    from docker_credential_quayfed.sources import SourceContext

    clock = request.clock
    deadline = transport.Deadline(budget or registry.timeout)
    with transport.hard_deadline(deadline), registry_client(registry) as session:
        if carried_jwt:
            log.secret(carried_jwt, user=registry.robot)
            token = _for_quay(SourceContext(registry, session, deadline, request), carried_jwt)
            carried_claims = oidc.check_jwt(token, registry.source, clock())
            log.debug(
                f"OIDC token handed over ({registry.source}): {claims.describe(carried_claims)}"
            )
            return exchange(registry, session, token, deadline, clock)
        principal = credential.principal if credential is not None else None
        minted, _ = fetch_oidc_token(registry, session, deadline, request, principal=principal)
        try:
            return exchange(registry, session, minted, deadline, clock)
        except QuayError:
            # Quay refused this JWT: a kept copy would only be refused again.
            forget_kept_jwt(registry, request, principal)
            raise


def forget_kept_jwt(
    registry: RegistryConfig, request: RequestContext, principal: Principal | None = None
) -> None:
    """Drop the JWT kept for reuse by the principal of ``registry``'s credential."""
    from docker_credential_quayfed import logins
    from docker_credential_quayfed.sources import for_registry

    if for_registry(registry).reusable:
        found = principal or key_for(registry, request).principal
        request.cache.remove(logins.jwt_name(found))


def fetch_oidc_token(
    registry: RegistryConfig,
    session: httpx.Client,
    deadline: Deadline,
    request: RequestContext,
    *,
    reuse: bool = True,
    principal: Principal | None = None,
) -> tuple[str, dict[str, Any]]:
    """The JWT from the registry's token source and its claims, refused where Quay would.

    With ``reuse``, a JWT that another robot's exchange minted for the same principal is
    used again while it stays valid (doctor asks for a fresh one)."""
    from docker_credential_quayfed import oidc

    oidc_token = source_token(
        registry, session, deadline, request, reuse=reuse, principal=principal
    )
    oidc_claims = oidc.check_jwt(oidc_token, registry.source, request.clock())
    log.debug(f"OIDC token from source {registry.source!r}: {claims.describe(oidc_claims)}")
    return oidc_token, oidc_claims


def source_token(
    registry: RegistryConfig,
    session: httpx.Client,
    deadline: Deadline,
    request: RequestContext,
    *,
    reuse: bool = True,
    principal: Principal | None = None,
) -> str:
    """The source's JWT, exchanged at the issuer for ``exchange_audience`` when that is set;
    a reusable source's JWT is kept under its principal (``principal``: already known)."""
    from docker_credential_quayfed import logins
    from docker_credential_quayfed.sources import SourceContext, for_registry

    source = for_registry(registry)
    cache = request.cache if source.reusable else None
    if cache is not None and principal is None:
        principal = source.principal(registry, request, deadline)[0]
    if cache is not None and principal is not None and reuse:
        reused = logins.reusable_jwt(cache, principal, request.clock())
        if reused is not None:
            log.debug(f"reusing the JWT minted earlier for {registry.issuer} ({registry.source})")
            return reused
    context = SourceContext(registry, session, deadline, request)
    try:
        oidc_token = _for_quay(context, source.fetch(context))
    except (IssuerError, NetworkError) as exc:
        refused = isinstance(exc, GrantRefused) and exc.code in OAUTH_ERRORS
        if not context.discovered_from_cache or refused:
            raise
        # The issuer may have moved its endpoints since the document was kept: ask again.
        log.debug(f"retrying with a fresh discovery document after: {exc.message}")
        context = SourceContext(registry, session, deadline, request, fresh_discovery=True)
        oidc_token = _for_quay(context, source.fetch(context))
    if cache is not None and principal is not None:
        logins.keep_jwt(cache, principal, oidc_token)
    return oidc_token


def _for_quay(context: SourceContext, oidc_token: str) -> str:
    """A source's or a carried_jwt-over JWT as Quay will see it: exchanged at the issuer for
    ``exchange_audience`` when that is set."""
    from docker_credential_quayfed import oidc

    registry = context.registry
    log.secret(oidc_token, user=registry.robot)
    if registry.exchange_audience:
        oidc_token = oidc.exchange_for_audience(context, oidc_token)
        log.secret(oidc_token, user=registry.robot)
    return oidc_token


def exchange(
    registry: RegistryConfig,
    session: httpx.Client,
    oidc_token: str,
    deadline: Deadline,
    clock: Callable[[], float] = time.time,
) -> RobotToken:
    """Trade the JWT for a robot token at Quay; refused when unusable or already expired."""
    from docker_credential_quayfed import quay

    robot = quay.exchange(
        session, registry.quay_base_url, registry.robot, oidc_token, deadline=deadline
    )
    return checked_robot_token(registry, robot, clock())


def registry_client(registry: RegistryConfig) -> httpx.Client:
    """The HTTP client for this registry's issuer and Quay, with its TLS and http settings."""
    from docker_credential_quayfed import transport

    return transport.client(registry.ca_bundle, allow_http=registry.allow_insecure_http)


def checked_robot_token(registry: RegistryConfig, robot: str, now: float) -> RobotToken:
    """Quay's answer as a cache entry; refused when unusable or already (nearly) expired."""
    log.secret(robot, user=registry.robot)
    try:
        minted = robot_token_from_jwt(registry.key, registry.robot, robot, now)
    except ValueError as exc:
        raise QuayError(
            f"Quay's robot token for {registry.robot} is unusable ({exc})",
            "check quay_url points at Quay",
        ) from None
    if not minted.valid(now, SKEW):
        left = minted.expires_at - now
        when = f"expired {int(-left)}s ago" if left <= 0 else f"expires in {left:.0f}s"
        raise QuayError(
            f"Quay returned a robot token for {registry.robot} that {when}: too late to use",
            "check the clocks of Quay and this machine (NTP)",
        )
    log.debug(f"robot token: {claims.describe(claims.unverified_claims(robot))}")
    return minted
