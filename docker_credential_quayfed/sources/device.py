"""A person's login (``docker-credential-quayfed login HOST``), renewed with its refresh token.

``login`` runs the device authorization grant (RFC 8628) or, with ``--browser``, the
authorization-code flow with PKCE, and keeps the refresh token; each ``get`` that needs a new
JWT uses the refresh-token grant silently. With no login, or one the issuer no longer
accepts, the answer is "not found" and one line saying to log in again.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from docker_credential_quayfed import log, logins
from docker_credential_quayfed.config import CLIENT_AUTH_KEYS, CLIENT_SECRET_KEYS, GRANT_OPTIONS
from docker_credential_quayfed.errors import GrantRefused, LoginRequired, QuayfedError
from docker_credential_quayfed.sources.base import SourceContext, TokenSource

if TYPE_CHECKING:
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.request import RequestContext

#: waiting for another process that is renewing the same login
LOGIN_LOCK_WAIT = 5.0


class DeviceLoginSource(TokenSource):
    name = "device"
    summary = "a person's login (login HOST: device code, or --browser), renewed silently"
    required = ("client_id",)
    optional = (
        *CLIENT_SECRET_KEYS,
        *CLIENT_AUTH_KEYS,
        *GRANT_OPTIONS,
    )
    secret_keys = CLIENT_SECRET_KEYS
    reusable = True

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        """The logged-in person (the ``iss`` and ``sub`` of the login's token): a robot token
        minted from one person's login is never served after another logs in, even one who
        shares the first one's username."""
        login = logins.read(request.cache, registry)
        return f"login {login.person}" if login is not None else "no login"

    def fetch(self, context: SourceContext) -> str:
        registry = context.registry
        cache = context.request.cache
        wait = min(LOGIN_LOCK_WAIT, context.deadline.remaining())
        # One renewal at a time: a rotated refresh token is good for one use only.
        with cache.lock_file(logins.lock_name(registry), timeout=max(wait, 0.0)):
            login = logins.read(cache, registry)
            now = time.time()
            if login is None or login.expired(now):
                state = "the login has expired" if login else "nobody is logged in"
                raise LoginRequired(
                    f"{state} at {registry.issuer} for {registry.key}",
                    f"run: docker-credential-quayfed login {registry.key}",
                )
            return renew(context, cache, login)


def renew(context: SourceContext, cache: TokenCache, login: logins.Login) -> str:
    """The refresh-token grant; stores the rotated refresh token before anything else."""
    from docker_credential_quayfed import oidc

    registry = context.registry
    found = oidc.discovery(context)
    form = {"grant_type": "refresh_token", "refresh_token": login.refresh_token}
    client_auth = oidc.authenticate(context, form, found.token_endpoint)

    def keep_refresh_token(body: dict[str, Any]) -> None:
        # The old refresh token is spent once the issuer answers: store the new one first,
        # even when the answer lacks the token Quay needs (OIDC allows that on refresh).
        token = body.get(registry.token_type)
        shown = token if isinstance(token, str) else ""
        renewed = logins.from_token_response(registry, body, shown, time.time(), previous=login)
        if logins.read(cache, registry) != login:
            # Logged out (or in as another) while this request was out: what it got is not
            # ours to keep, and the rotated refresh token must not outlive the logout.
            if renewed is not None and renewed.refresh_token != login.refresh_token:
                with contextlib.suppress(QuayfedError):
                    oidc.revoke(context, renewed.refresh_token)
            raise LoginRequired(
                f"{registry.key} was logged out while its login was being renewed",
                f"run: docker-credential-quayfed login {registry.key}",
            )
        if renewed is not None:
            if renewed.refresh_token != login.refresh_token:
                log.debug(f"the issuer rotated the refresh token for {registry.key}")
            logins.write(cache, registry, renewed)

    try:
        body = oidc.token_response(
            context.session,
            found.token_endpoint,
            form,
            deadline=context.deadline,
            client_auth=client_auth,
            on_success=keep_refresh_token,
        )
    except GrantRefused as exc:
        if exc.code != "invalid_grant":
            raise
        logins.forget(cache, registry)
        raise LoginRequired(
            f"the issuer no longer accepts the login for {registry.key} ({exc.code})",
            f"run: docker-credential-quayfed login {registry.key}",
        ) from None
    return oidc.pick_token(body, registry.token_type, "refresh_token")
