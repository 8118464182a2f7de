"""What a person's ``login`` leaves on disk: the refresh token, and the JWTs sources mint.

A login belongs to an issuer and a client, not to a registry: two registries that trust the
same realm share one login. Its file (``@login-<digest>.json``, 0600, in the token cache's
private directory) holds the refresh token, replaced whenever the issuer rotates it. A JWT a
source minted (``@jwt-<digest>.jwt``) is reused by other robots of the same principal
(``identity``: issuer, client and identity, the login's person included) while it stays
valid, instead of asking the issuer again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from docker_credential_quayfed import claims, log

if TYPE_CHECKING:
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.config import Config, RegistryConfig
    from docker_credential_quayfed.identity import Principal

#: a reused JWT must have at least this long left when Quay checks it
JWT_REUSE_MARGIN = 60.0
#: 2: the person is the token's iss and sub (1 named them by preferred_username, which OIDC
#: does not make unique: such a login is not read, and the person logs in again)
LOGIN_MAGIC = "quayfed-login 2"


@dataclass(frozen=True)
class Login:
    """One person's login at one issuer and client."""

    issuer: str
    client_id: str
    refresh_token: str
    #: who logged in: the token's ``iss`` and ``sub``, which name the person (and are what
    #: Quay's federation matches); ``username`` (preferred_username) is only shown
    token_issuer: str
    subject: str
    username: str
    scope: str
    logged_in_at: float
    refreshed_at: float
    #: when the refresh token stops working, when the issuer says (None: not said)
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def person(self) -> str:
        """Who logged in, as the cache keys know them: the token's ``iss`` and ``sub``."""
        return f"{self.token_issuer}\n{self.subject}"

    @property
    def shown(self) -> str:
        """Who logged in, as people say it."""
        return self.username or self.subject


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def login_name(registry: RegistryConfig) -> str:
    return f"@login-{_digest(registry.issuer, registry.client_id)}.json"


def sharing(settings: Config, registry: RegistryConfig) -> list[RegistryConfig]:
    """Every registry whose person's login is ``registry``'s (same issuer and client), itself
    first: logging in or out at one is logging in or out at all of them."""
    others = [
        other
        for other in settings.registries.values()
        if other.source == registry.source
        and login_name(other) == login_name(registry)
        and other.key != registry.key
    ]
    return [registry, *sorted(others, key=lambda other: other.key)]


def lock_name(registry: RegistryConfig) -> str:
    return f"@login-{_digest(registry.issuer, registry.client_id)}.lock"


def read(cache: TokenCache, registry: RegistryConfig) -> Login | None:
    """The stored login for the registry's issuer and client; None when absent or unusable."""
    text = cache.read_private(login_name(registry))
    if text is None:
        return None
    try:
        document = json.loads(text)
        if document.pop("format") != LOGIN_MAGIC:
            return None
        login = Login(**document)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        log.debug(f"the login file {login_name(registry)} is not intact; ignoring it")
        return None
    if not _well_typed(login) or not login.refresh_token or not login.subject:
        log.debug(f"the login file {login_name(registry)} is not intact; ignoring it")
        return None
    if login.issuer != registry.issuer or login.client_id != registry.client_id:
        return None
    log.secret(login.refresh_token)
    return login


def _well_typed(login: Login) -> bool:
    texts = (
        login.issuer,
        login.client_id,
        login.refresh_token,
        login.token_issuer,
        login.subject,
        login.username,
        login.scope,
    )
    times = (login.logged_in_at, login.refreshed_at)
    number = (int, float)
    return (
        all(isinstance(value, str) for value in texts)
        and all(isinstance(value, number) and not isinstance(value, bool) for value in times)
        and (login.expires_at is None or isinstance(login.expires_at, number))
        and not isinstance(login.expires_at, bool)
    )


def write(cache: TokenCache, registry: RegistryConfig, login: Login) -> None:
    """Store the login; when it names another person than the stored one, the fast path's
    snapshot is dropped (the person is part of every key minted from the login)."""
    from docker_credential_quayfed.cache import forget_snapshot

    log.secret(login.refresh_token)
    previous = read(cache, registry)
    document = {"format": LOGIN_MAGIC, **asdict(login)}
    cache.write_private(login_name(registry), json.dumps(document, ensure_ascii=True) + "\n")
    if previous is None or previous.person != login.person:
        forget_snapshot(cache)


def forget(cache: TokenCache, registry: RegistryConfig) -> bool:
    """Remove the login; True if there was one. The fast path's snapshot goes with it, so no
    robot token keyed by this login's person is served from there again."""
    from docker_credential_quayfed.cache import forget_snapshot

    forget_snapshot(cache)
    return cache.remove(login_name(registry))


def from_token_response(
    registry: RegistryConfig,
    body: dict[str, Any],
    token: str,
    now: float,
    previous: Login | None = None,
) -> Login | None:
    """The login a token response gives (None when it carries no refresh token, or names
    nobody). A refresh answer without a new refresh token keeps the previous one (no
    rotation); one whose token names nobody keeps the previous person."""
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        if previous is None:
            return None
        return Login(**{**asdict(previous), "refreshed_at": now})
    try:
        token_claims = claims.unverified_claims(token)
    except claims.NotAJWT:
        token_claims = {}
    issuer, subject = token_claims.get("iss"), token_claims.get("sub")
    username = token_claims.get("preferred_username")
    if isinstance(subject, str) and subject and isinstance(issuer, str) and issuer:
        person = (issuer, subject, username if isinstance(username, str) else "")
    elif previous is not None:
        person = (previous.token_issuer, previous.subject, previous.username)
    else:
        return None
    scope = body.get("scope")
    return Login(
        issuer=registry.issuer,
        client_id=registry.client_id,
        refresh_token=refresh,
        token_issuer=person[0],
        subject=person[1],
        username=person[2],
        scope=scope if isinstance(scope, str) else (previous.scope if previous else ""),
        logged_in_at=previous.logged_in_at if previous else now,
        refreshed_at=now,
        expires_at=_refresh_expiry(body, refresh, now),
    )


def _refresh_expiry(body: dict[str, Any], refresh: str, now: float) -> float | None:
    """Keycloak says ``refresh_expires_in`` (0: an offline token, no fixed end); others put an
    ``exp`` in a JWT refresh token; otherwise nobody says."""
    seconds = body.get("refresh_expires_in")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return now + float(seconds) if seconds > 0 else None
    return claims.expiry(refresh)


# -- JWT reuse across robots ------------------------------------------------------------------


def jwt_name(principal: Principal) -> str:
    """One name per principal (issuer, client, identity, token request): the robot, the
    registry and Quay are deliberately not part of it."""
    from docker_credential_quayfed.identity import principal_digest

    return f"@jwt-{principal_digest(principal)}.jwt"


def reusable_jwt(cache: TokenCache, principal: Principal, now: float) -> str | None:
    """A JWT minted earlier for the same principal, still valid long enough."""
    token = (cache.read_private(jwt_name(principal)) or "").strip()
    if not token:
        return None
    expires = claims.expiry(token)
    if expires is None or expires - now < JWT_REUSE_MARGIN:
        return None
    log.secret(token)
    return token


def keep_jwt(cache: TokenCache, principal: Principal, token: str) -> None:
    """Remember a freshly minted JWT for other robots (best effort)."""
    from docker_credential_quayfed.errors import QuayfedError

    try:
        cache.write_private(jwt_name(principal), token + "\n")
    except (OSError, QuayfedError, UnicodeEncodeError) as exc:
        log.debug(f"could not keep the JWT for reuse: {exc}")


def age(seconds: float) -> str:
    """A duration as people say it: 45s, 12m, 3h, 6d."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))
