"""login, logout and status: a person's login at the issuer, for ``source = "device"``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from docker_credential_quayfed.commands.help import describe, new_request
from docker_credential_quayfed.text import printable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from docker_credential_quayfed.config import Config, RegistryConfig
    from docker_credential_quayfed.request import RequestContext


def add_parser(commands: Any) -> None:
    login = commands.add_parser(
        "login",
        help='Log in at HOST\'s issuer (device code, or --browser) for source = "device".',
        description=describe(
            'Log in at the OIDC issuer of HOST\'s table (source = "device"): show a code to '
            "confirm in any browser (the device authorization grant), or with --browser open "
            "one here (authorization code with PKCE on a loopback redirect). The refresh token "
            "is kept in the cache directory (0600) and later gets renew the login silently; "
            "the first robot token is minted at once."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed login quay.example.com\n"
            "  docker-credential-quayfed login --browser quay.example.com\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    login.add_argument("host", metavar="HOST")
    login.add_argument(
        "--browser", action="store_true", help="open a browser here instead of showing a code"
    )
    login.set_defaults(handler=_run_login)

    logout = commands.add_parser(
        "logout",
        help="Revoke and forget HOST's login; erase its cached robot token.",
        description=describe(
            "Revoke the refresh token at the issuer (when it has a revocation endpoint), "
            "forget it, and erase HOST's cached robot token."
        ),
        epilog="example:\n  docker-credential-quayfed logout quay.example.com\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logout.add_argument("host", metavar="HOST")
    logout.set_defaults(handler=_run_logout)

    status = commands.add_parser(
        "status",
        help="Say who is logged in where, and until when.",
        description=describe(
            "For HOST, or every configured registry: the source, who is logged in (device "
            "source), until when the refresh token and the cached robot token are valid. "
            "Exits 1 when a device-source registry has no usable login."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed status\n"
            "  docker-credential-quayfed status quay.example.com\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("host", metavar="HOST", nargs="?")
    status.set_defaults(handler=_run_status)


def _device_registry(host: str) -> tuple[Config, RegistryConfig]:
    from docker_credential_quayfed import config
    from docker_credential_quayfed.errors import UsageError
    from docker_credential_quayfed.protocol import registry_key
    from docker_credential_quayfed.sources import BY_NAME

    key = registry_key(host)
    settings = config.load(BY_NAME)
    registry = settings.registry(key)
    if registry.source != "device":
        raise UsageError(
            f'{key} uses source = {registry.source!r}; login is for source = "device"',
            f'set source = "device" in {registry.config_file}, or use its own credentials',
        )
    return settings, registry


@contextlib.contextmanager
def _holding_the_login(
    request: RequestContext, sharing: list[RegistryConfig], timeout: float
) -> Iterator[None]:
    """Hold the lock of every credential minted from the login (as its person stands now),
    then the login's own lock: in the order a get takes them (its credential's, then the
    login's while it renews), so no refresh is under way while the login changes hands,
    and none can write after it."""
    from docker_credential_quayfed import broker, logins

    cache = request.cache
    keys = sorted({broker.key_for(r, request) for r in sharing}, key=lambda key: key.digest)
    with contextlib.ExitStack() as held:
        for key in keys:
            held.enter_context(cache.lock(key, timeout=timeout))
        held.enter_context(cache.lock_file(logins.lock_name(sharing[0]), timeout=timeout))
        yield


def _forget_what_the_login_minted(request: RequestContext, sharing: list[RegistryConfig]) -> int:
    """Drop the JWTs kept for the login's person and every robot token of the registries
    sharing it; returns how many robot tokens went."""
    from docker_credential_quayfed import broker, logins

    cache = request.cache
    for name in {logins.jwt_name(broker.key_for(r, request).principal) for r in sharing}:
        cache.remove(name)
    return sum(cache.erase(other.key) for other in sharing)


def _run_login(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import actions, broker, login_flow, logins, oidc, transport
    from docker_credential_quayfed.errors import IssuerError
    from docker_credential_quayfed.sources import SourceContext

    settings, registry = _device_registry(args.host)
    request = new_request()
    cache = request.cache
    with broker.registry_client(registry) as session:
        context = SourceContext(registry, session, transport.Deadline(registry.timeout), request)
        if args.browser:
            body = login_flow.browser_login(context)
            grant = "authorization_code"
        else:
            body = login_flow.device_login(context)
            grant = "device_code"
    token = oidc.pick_token(body, registry.token_type, grant)
    if not isinstance(body.get("refresh_token"), str) or not body.get("refresh_token"):
        raise IssuerError(
            f"the issuer gave no refresh token for {registry.key}, so the login cannot last",
            "add offline_access to scope, or allow refresh tokens for the client at the issuer",
        )
    login = logins.from_token_response(registry, body, token, time.time())
    if login is None:
        raise IssuerError(
            f"the issuer's {registry.token_type} for {registry.key} names nobody (no iss or sub)",
            'set token_type = "id_token" with scope "openid", or fix the client at the issuer',
        )
    sharing = logins.sharing(settings, registry)
    with _holding_the_login(request, sharing, registry.timeout):
        # What an earlier login minted (whoever it named) must not outlive it.
        _forget_what_the_login_minted(request, sharing)
        logins.write(cache, registry, login)
        logins.keep_jwt(cache, broker.key_for(registry, request).principal, token)
    outcome = broker.robot_token(registry, request, force=True)
    actions.keep_snapshot(settings, request)
    who = f" as {printable(login.shown)}"
    print(
        f"Logged in to {registry.key}{who}; robot {outcome.token.robot} token valid until "
        f"{logins.when(outcome.token.expires_at)}"
        + (f", login until {logins.when(login.expires_at)}" if login.expires_at else "")
    )
    return 0


def _run_logout(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import broker, log, logins, oidc, transport
    from docker_credential_quayfed.errors import QuayfedError
    from docker_credential_quayfed.sources import SourceContext

    settings, registry = _device_registry(args.host)
    request = new_request()
    cache = request.cache
    sharing = logins.sharing(settings, registry)
    revoked = False
    with _holding_the_login(request, sharing, registry.timeout):
        login = logins.read(cache, registry)
        if login is not None:
            try:
                with broker.registry_client(registry) as session:
                    deadline = transport.Deadline(registry.timeout)
                    context = SourceContext(registry, session, deadline, request)
                    revoked = oidc.revoke(context, login.refresh_token)
            except QuayfedError as exc:
                log.warn(exc.message)
        # What the login minted, for every registry that shares it: kept JWTs, robot tokens.
        erased = _forget_what_the_login_minted(request, sharing)
        logins.forget(cache, registry)
    hosts = ", ".join(other.key for other in sharing)
    if login is None:
        print(f"Not logged in to {hosts}; erased {erased} cached robot token(s)")
        return 0
    what = "revoked at the issuer and forgotten" if revoked else "forgotten"
    print(f"Logged out of {hosts}: refresh token {what}, {erased} robot token(s) erased")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import config
    from docker_credential_quayfed.protocol import registry_key
    from docker_credential_quayfed.sources import BY_NAME

    settings = config.load(BY_NAME)
    if args.host:
        registries = [settings.registry(registry_key(args.host))]
    else:
        registries = list(settings.registries.values())
    if not registries:
        print(f"no registries configured in {settings.path}")
        return 0
    request = new_request()
    healthy = True
    for registry in registries:
        line, ok = describe_registry(registry, request, time.time())
        healthy = healthy and ok
        print(printable(line))
    sys.stdout.flush()
    return 0 if healthy else 1


def describe_registry(
    registry: RegistryConfig, request: RequestContext, now: float
) -> tuple[str, bool]:
    """One line on a registry's login and robot token; False when it needs a login."""
    from docker_credential_quayfed import broker, logins
    from docker_credential_quayfed.errors import QuayfedError

    try:
        robot = request.cache.read(broker.key_for(registry, request))
    except QuayfedError:  # a carried JWT that cannot be read: nothing can be served either
        robot = None
    if robot is not None and robot.expires_at > now:
        robot_part = (
            f"robot {registry.robot} token valid until {logins.when(robot.expires_at)} "
            f"({logins.age(robot.expires_at - now)} left)"
        )
    else:
        robot_part = f"robot {registry.robot}: no cached token"
    if registry.source != "device":
        return f"{registry.key}: source {registry.source}; {robot_part}", True
    login = logins.read(request.cache, registry)
    if login is None or login.expired(now):
        state = "login expired" if login else "not logged in"
        return (
            f"{registry.key}: {state} at {registry.issuer}; "
            f"run: docker-credential-quayfed login {registry.key}",
            False,
        )
    until = (
        f"login valid until {logins.when(login.expires_at)}"
        if login.expires_at is not None
        else "login without a fixed end"
    )
    who = login.shown
    return (
        f"{registry.key}: logged in as {who} at {registry.issuer} "
        f"{logins.age(now - login.logged_in_at)} ago, {until}; {robot_part}",
        True,
    )
