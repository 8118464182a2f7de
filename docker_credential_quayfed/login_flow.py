"""The interactive logins: the device authorization grant (RFC 8628) and the authorization-code
flow with PKCE on a loopback redirect (RFC 7636, RFC 8252); revocation (RFC 7009) for logout.

Each flow ends with the issuer's token response; ``commands/login`` keeps its refresh token
and mints the first robot token with it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from docker_credential_quayfed import log, oidc, transport, urls
from docker_credential_quayfed.errors import GrantRefused, IssuerError, NetworkError

if TYPE_CHECKING:
    from docker_credential_quayfed.sources.base import SourceContext

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 3.5: slow_down adds five seconds to the polling interval
SLOW_DOWN_STEP = 5
#: a device code is never waited for longer than this, whatever the issuer says
MAX_WAIT = 1800
#: the loopback redirect waits this long for the browser
BROWSER_WAIT = 300
#: a verification URI longer than this is not shown (it is meant for people to open)
MAX_SHOWN_URI = 512


class Countdown:
    """One line on a terminal, rewritten in place while we wait; nothing when not a terminal."""

    def __init__(self, stream: TextIO, what: str) -> None:
        self.stream = stream
        self.what = what
        self.live = _isatty(stream)
        self.shown = False

    def show(self, seconds_left: float) -> None:
        if not self.live:
            return
        minutes, seconds = divmod(max(0, int(seconds_left)), 60)
        self.stream.write(f"\r{self.what}: {minutes}:{seconds:02d} left ")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _shown_uri(value: Any, context: SourceContext, name: str) -> str:
    """A URI the issuer asks the person to open: https (or loopback http when allowed)."""
    if not isinstance(value, str) or not value or len(value) > MAX_SHOWN_URI:
        raise IssuerError(
            f"the issuer's device authorization answer has no usable {name}",
            "check the client's device flow settings at the issuer",
        )
    refused = urls.refusal(value, allow_http=context.registry.allow_insecure_http)
    if refused is not None or any(c.isspace() or not c.isprintable() for c in value):
        raise IssuerError(
            f"the issuer's {name} is not an https URL", "check the issuer's frontend URL"
        )
    return value


def device_login(
    context: SourceContext,
    out: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run the device authorization grant; the issuer's token response once approved."""
    registry = context.registry
    found = oidc.discovery(context)
    endpoint = found.device_authorization_endpoint
    if not endpoint:
        raise IssuerError(
            f"the issuer {registry.issuer} offers no device authorization endpoint",
            "enable the device flow on the client (Keycloak: OAuth 2.0 Device Authorization "
            "Grant), or run login with --browser",
        )
    form = {"scope": registry.scope}
    if registry.audience:
        form["audience"] = registry.audience
    # Keycloak applies a client's PKCE requirement to the device grant as well ("Missing
    # parameter: code_challenge_method"); an issuer that offers S256 gets a challenge.
    verifier = None
    if "S256" in found.code_challenge_methods:
        verifier, form["code_challenge"] = pkce_pair()
        form["code_challenge_method"] = "S256"
        log.secret(verifier)
    started = clock()
    body = oidc.token_response(
        context.session,
        endpoint,
        form,
        deadline=context.deadline,
        client_auth=oidc.authenticate(context, form, found.token_endpoint),
        what="device authorization",
    )
    device_code = body.get("device_code")
    user_code = body.get("user_code")
    if not isinstance(device_code, str) or not device_code:
        raise IssuerError(
            "the issuer's device authorization answer has no device_code",
            "check the client's device flow settings at the issuer",
        )
    if not isinstance(user_code, str) or not user_code.isprintable() or len(user_code) > 64:
        raise IssuerError(
            "the issuer's device authorization answer has no usable user_code",
            "check the client's device flow settings at the issuer",
        )
    log.secret(device_code)
    uri = _shown_uri(body.get("verification_uri"), context, "verification_uri")
    complete = body.get("verification_uri_complete")
    lifetime = _number(body.get("expires_in"), default=600, low=1, high=MAX_WAIT)
    interval = _number(body.get("interval"), default=5, low=1, high=60)
    if isinstance(complete, str) and complete:
        complete = _shown_uri(complete, context, "verification_uri_complete")
        out.write(f"To log in to {registry.key}, open {complete} and check the code {user_code}\n")
    else:
        out.write(f"To log in to {registry.key}, open {uri} and enter the code {user_code}\n")
    out.flush()
    expires = started + lifetime
    countdown = Countdown(out, "waiting for approval")
    try:
        while True:
            _wait(interval, expires, countdown, sleep, clock)
            if clock() >= expires:
                raise _expired(registry.key)
            form = {"grant_type": DEVICE_GRANT, "device_code": device_code}
            if verifier is not None:
                form["code_verifier"] = verifier
            try:
                return _token_request(context, found.token_endpoint, form)
            except GrantRefused as exc:
                if exc.code == "authorization_pending":
                    continue
                if exc.code == "slow_down":
                    interval = min(interval + SLOW_DOWN_STEP, 60)
                    continue
                if exc.code == "access_denied":
                    raise IssuerError(
                        f"the login for {registry.key} was denied at the issuer",
                        f"run: docker-credential-quayfed login {registry.key} and approve it",
                    ) from None
                if exc.code == "expired_token":
                    raise _expired(registry.key) from None
                if exc.code == "invalid_grant":
                    # the code is spent or unknown (Keycloak: "Device code not valid", also
                    # after its own error on an earlier poll): only a new login can help
                    raise IssuerError(
                        f"the login code for {registry.key} is no longer valid: {exc.problem}",
                        f"run: docker-credential-quayfed login {registry.key} again",
                    ) from None
                raise
    finally:
        countdown.done()


def _expired(key: str) -> IssuerError:
    return IssuerError(
        f"the login code for {key} expired before it was approved",
        f"run: docker-credential-quayfed login {key} again and approve it sooner",
    )


def _wait(
    interval: float,
    expires: float,
    countdown: Countdown,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    """Sleep ``interval`` seconds (not past ``expires``), updating the countdown each second."""
    until = min(clock() + interval, expires)
    while True:
        left = until - clock()
        countdown.show(expires - clock())
        if left <= 0:
            return
        sleep(min(1.0, left))


def _number(value: Any, *, default: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return default
    return float(min(max(value, low), high))


# -- authorization code with PKCE on a loopback redirect ---------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def browser_login(
    context: SourceContext,
    out: TextIO = sys.stderr,
    open_browser: Callable[[str], bool] | None = None,
    wait: float = BROWSER_WAIT,
) -> dict[str, Any]:
    """Run the authorization-code flow with PKCE; the token response once the browser returns."""
    from docker_credential_quayfed import loopback

    registry = context.registry
    found = oidc.discovery(context)
    if not found.authorization_endpoint:
        raise IssuerError(
            f"the issuer {registry.issuer} announces no authorization endpoint",
            "log in with the device code instead (login without --browser)",
        )
    if found.code_challenge_methods and "S256" not in found.code_challenge_methods:
        raise IssuerError(
            f"the issuer {registry.issuer} does not offer PKCE with S256",
            "log in with the device code instead (login without --browser)",
        )
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    with loopback.Receiver(state) as receiver:
        query = {
            "response_type": "code",
            "client_id": registry.client_id,
            "redirect_uri": receiver.redirect_uri,
            "scope": registry.scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in found.authorization_endpoint else "?"
        url = found.authorization_endpoint + separator + urllib.parse.urlencode(query)
        opener = open_browser or _open_in_browser
        out.write(f"Opening a browser to log in to {registry.key}; if none opens, visit: {url}\n")
        out.flush()
        opener(url)
        countdown = Countdown(out, "waiting for the browser")
        try:
            code = receiver.wait(wait, countdown.show)
        finally:
            countdown.done()
    if code is None:
        raise NetworkError(
            f"the browser did not come back from the issuer within {wait:.0f}s",
            f"run: docker-credential-quayfed login {registry.key} again, or without --browser",
        )
    log.secret(code)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": receiver.redirect_uri,
        "code_verifier": verifier,
    }
    log.secret(verifier)
    return _token_request(context, found.token_endpoint, form)


def _token_request(context: SourceContext, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    """One token-endpoint request of a login, with a deadline of its own: a login waits on a
    person between its requests, so the command's deadline cannot bound them all."""
    return oidc.token_response(
        context.session,
        endpoint,
        form,
        deadline=transport.Deadline(context.registry.timeout),
        client_auth=oidc.authenticate(context, form, endpoint),
    )


def _open_in_browser(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


# -- revocation -----------------------------------------------------------------------------
