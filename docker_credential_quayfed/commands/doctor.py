"""`doctor [HOST]`: run each step of the flow, timed, with a verdict and the next thing to do."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from docker_credential_quayfed import (
    broker,
    claims,
    config,
    config_files,
    log,
    oidc,
    paths,
    transport,
    urls,
)
from docker_credential_quayfed.cache import RobotToken
from docker_credential_quayfed.commands.help import describe, new_request
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import CheckFailed, QuayfedError
from docker_credential_quayfed.request import RequestContext
from docker_credential_quayfed.sources import BY_NAME
from docker_credential_quayfed.text import printable

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class Step:
    name: str
    verdict: str
    detail: str
    seconds: float
    fix: str = ""


@dataclass
class Report:
    host: str
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(step.verdict != FAIL for step in self.steps)


def _timed(report: Report, name: str, action: Callable[[], tuple[str, str]]) -> bool:
    """Run one step; ``action`` returns (verdict, detail) or raises. True if not failed."""
    started = time.monotonic()
    try:
        verdict, detail = action()
        fix = ""
    except QuayfedError as exc:  # CheckFailed included: one error base
        verdict, detail, fix = FAIL, exc.problem, exc.fix
    report.steps.append(Step(name, verdict, detail, time.monotonic() - started, fix))
    return verdict != FAIL


def _skip(report: Report, *names: str) -> None:
    for name in names:
        report.steps.append(Step(name, SKIP, "skipped: an earlier step failed", 0.0))


class _Checker:
    """The state carried from one step to the next for one registry."""

    def __init__(
        self, registry: RegistryConfig, session: httpx.Client, request: RequestContext
    ) -> None:
        self.registry = registry
        self.request = request
        self.session = session
        self.deadline = transport.Deadline(max(registry.timeout, 30.0))
        self.discovery: oidc.Discovery | None = None
        self.jwks: dict[str, Any] = {}
        self.oidc_token = ""
        self.minted: dict[str, Any] = {}
        self.robot: RobotToken | None = None
        self.robot_token = ""

    def discover(self) -> tuple[str, str]:
        self.discovery = oidc.discover(
            self.session,
            self.registry.issuer,
            self.deadline,
            endpoint_hosts=self.registry.endpoint_hosts,
            allow_http=self.registry.allow_insecure_http,
        )
        found = self.discovery
        if found.issuer != self.registry.issuer:
            return WARN, (
                f"the issuer calls itself {log.server_text(repr(found.issuer))}, the config says "
                f"{self.registry.issuer!r}; Quay compares exactly"
            )
        return OK, (
            f"issuer {log.server_text(found.issuer)}, token endpoint "
            f"{urls.shown(found.token_endpoint)}"
        )

    def login_state(self) -> tuple[str, str]:
        """source = "device": is someone logged in, since when, with which scopes."""
        from docker_credential_quayfed import logins

        registry, now = self.registry, time.time()
        login = logins.read(self.request.cache, registry)
        if login is None or login.expired(now):
            raise CheckFailed(
                "the login has expired" if login else "nobody is logged in",
                f"run: docker-credential-quayfed login {registry.key}",
            )
        until = (
            f"refresh token valid until {logins.when(login.expires_at)}"
            if login.expires_at is not None
            else "refresh token without a fixed end"
        )
        detail = (
            f"logged in as {login.shown} {logins.age(now - login.logged_in_at)} ago, "
            f"renewed {logins.age(now - login.refreshed_at)} ago, {until}, "
            f"scopes: {login.scope or '(not said)'}"
        )
        if self.discovery is not None and not self.discovery.device_authorization_endpoint:
            return WARN, detail + "; the issuer announces no device endpoint (login --browser)"
        if "offline_access" not in login.scope.split() and login.expires_at is not None:
            return OK, detail + "; add offline_access to scope for a login that outlives sessions"
        return OK, detail

    def fetch_jwks(self) -> tuple[str, str]:
        assert self.discovery is not None
        if not self.discovery.jwks_uri:
            raise CheckFailed("the discovery document has no jwks_uri", "Quay needs one")
        response = transport.request(
            self.session, "GET", self.discovery.jwks_uri, deadline=self.deadline, what="JWKS"
        )
        body = transport.json_object(response)
        keys = body.get("keys") if body else None
        if response.status_code != 200 or not isinstance(keys, list):
            raise CheckFailed(
                f"{urls.shown(self.discovery.jwks_uri)} answered HTTP {response.status_code} "
                "without keys",
                "check the issuer's JWKS endpoint",
            )
        self.jwks = {"keys": keys}
        rsa = [k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA"]
        # Keycloak also publishes an RSA key for encryption (use "enc", RSA-OAEP): no JWT it
        # signs can name that one
        signing = [str(k.get("kid", "?")) for k in rsa if k.get("use") != "enc"]
        left_out = len(rsa) - len(signing)
        if not signing:
            return WARN, f"{len(keys)} key(s), none RSA for signing: Quay accepts only RSA keys"
        detail = f"{len(keys)} key(s); RSA signing kids: {', '.join(signing)}"
        if left_out:
            detail += f" ({left_out} RSA encryption key(s) left out)"
        return OK, detail

    def mint(self) -> tuple[str, str]:
        self.oidc_token, minted = broker.fetch_oidc_token(
            self.registry, self.session, self.deadline, self.request, reuse=False
        )
        self.minted = minted
        header = claims.split(self.oidc_token)[0]
        detail = (
            f"iss={minted.get('iss')} sub={minted.get('sub')} aud={minted.get('aud')} "
            f"exp={minted.get('exp')} kid={header.get('kid')} alg={header.get('alg')} "
            "(paste iss and sub into the robot's federation in Quay)"
        )
        if self.jwks:
            kids = {k.get("kid") for k in self.jwks["keys"] if isinstance(k, dict)}
            if header.get("kid") not in kids:
                raise CheckFailed(
                    f"the token's kid {header.get('kid')!r} is not in the issuer's JWKS ({detail})",
                    "Quay would answer 500; check that the issuer publishes its signing key",
                )
        if header.get("alg") not in ("RS256", "RS384"):
            raise CheckFailed(
                f"the token is signed with {header.get('alg')} ({detail})",
                "Quay accepts RS256 and RS384 only; change the issuer's signing algorithm",
            )
        if minted.get("iss") != self.registry.issuer:
            return WARN, detail + "; note iss differs from the configured issuer"
        return OK, detail

    def federation_entry(self) -> tuple[str, str]:
        """With an admin token at hand ($QUAY_OAUTH_TOKEN): the robot's federation entry for
        the minted iss and sub, and whether it restricts the audience (Quay deprecates entries
        without ``audiences``)."""
        from docker_credential_quayfed import quay
        from docker_credential_quayfed.identity import audience_of

        admin_token = os.environ.get("QUAY_OAUTH_TOKEN", "").strip()
        registry = self.registry
        if not admin_token:
            return SKIP, "set QUAY_OAUTH_TOKEN (org:admin) to read the robot's federation entries"
        url = quay.federation_api_url(registry.quay_base_url, registry.robot, user_form=False)
        try:
            entries = quay.federation_call(
                self.session, "GET", url, admin_token, deadline=self.deadline
            )
        except QuayfedError as exc:  # the exchange may still work: it is what decides
            return WARN, f"could not read the robot's federation entries: {exc.problem}"
        issuer, subject = str(self.minted.get("iss", "")), str(self.minted.get("sub", ""))
        matching = [e for e in entries if (e["issuer"], e["subject"]) == (issuer, subject)]
        named = f"iss={issuer} sub={subject}"
        add = (
            f"docker-credential-quayfed federation add {registry.robot} "
            f"--from-config {registry.key}"
        )
        if not matching:  # the exchange, next, gives Quay's own verdict
            return WARN, (
                f"no federation entry of {registry.robot} names {named} ({len(entries)} "
                f"entries); run: {add}"
            )
        audiences = [a for e in matching for a in (e.get("audiences") or [])]
        carried = [a for a in audience_of(self.minted).split("\n") if a]
        if not audiences:
            carried_text = ",".join(carried) or "(none)"
            return WARN, (
                f"the entry for {named} lists no audiences, which Quay deprecates (it will "
                f"check aud); on a Quay that keeps them, {add} writes the JWT's aud={carried_text}"
            )
        if not set(audiences) & set(carried):
            return WARN, (
                f"the entry for {named} accepts audiences {','.join(map(str, audiences))}, the "
                f"JWT carries aud={','.join(carried) or '(none)'}: Quay 3.18+ refuses it; run: "
                f"{add}, or set audience or exchange_audience to one the entry accepts"
            )
        return OK, f"the entry for {named} accepts audiences {','.join(map(str, audiences))}"

    def exchange(self) -> tuple[str, str]:
        self.robot = broker.exchange(self.registry, self.session, self.oidc_token, self.deadline)
        self.robot_token = self.robot.token
        return OK, f"{self.registry.quay_base_url} issued a robot token for {self.registry.robot}"

    def robot_expiry(self) -> tuple[str, str]:
        assert self.robot is not None
        robot = self.robot
        now = time.time()
        sub = claims.unverified_claims(robot.token).get("sub")
        refresh_in = int(robot.refresh_at(self.registry.refresh_margin) - now)
        detail = (
            f"sub={sub} expires in {int(robot.expires_at - now)}s (lifetime "
            f"{int(robot.lifetime)}s); served from cache for {refresh_in}s, then refreshed "
            f"(refresh_margin {self.registry.refresh_margin}s, at most half the lifetime)"
        )
        return OK, detail

    def registry_login(self) -> tuple[str, str]:
        base = f"https://{self.registry.key}"
        first = transport.request(
            self.session, "GET", f"{base}/v2/", deadline=self.deadline, what="registry /v2/"
        )
        if first.status_code == 200:
            return OK, f"{base}/v2/ answered 200 without credentials"
        challenge = first.headers.get("www-authenticate", "")
        credentials = (self.registry.robot, self.robot_token)
        if first.status_code == 401 and challenge.lower().startswith("bearer"):
            params = _challenge_params(challenge)
            realm = params.pop("realm", "")
            if not realm:
                raise CheckFailed(f"{base}/v2/ sent a Bearer challenge without realm")
            answer = transport.request(
                self.session,
                "GET",
                realm,
                deadline=self.deadline,
                what="registry token",
                params={k: v for k, v in params.items() if k == "service"},
                auth=credentials,
            )
            body = transport.json_object(answer)
            bearer = body and (body.get("token") or body.get("access_token"))
            if answer.status_code != 200 or not isinstance(bearer, str):
                raise CheckFailed(
                    f"the registry's token service {urls.shown(realm)} answered HTTP "
                    f"{answer.status_code}",
                    "the robot token was refused: check the robot's permissions in Quay",
                )
            final = transport.request(
                self.session,
                "GET",
                f"{base}/v2/",
                deadline=self.deadline,
                what="registry /v2/ with token",
                headers={"Authorization": f"Bearer {bearer}"},
            )
        else:
            final = transport.request(
                self.session,
                "GET",
                f"{base}/v2/",
                deadline=self.deadline,
                what="registry /v2/ with basic auth",
                auth=credentials,
            )
        if final.status_code != 200:
            raise CheckFailed(
                f"{base}/v2/ answered HTTP {final.status_code} with the robot's credentials",
                "check that the registry is this Quay and the robot exists there",
            )
        return OK, f"{base}/v2/ accepted {self.registry.robot}"


def _challenge_params(challenge: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in challenge.split(" ", 1)[-1].split(","):
        name, _, value = part.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip().strip('"')
    return params


def _local_checks(report: Report, host: str) -> RegistryConfig | None:
    loaded: list[config.Config] = []

    def load() -> tuple[str, str]:
        settings = config.load(BY_NAME)
        loaded.append(settings)
        settings.registry(host)
        return (
            OK,
            f"{settings.path} is valid; {host} uses source {settings.registries[host].source}",
        )

    config_ok = _timed(report, "config", load)

    def on_path() -> tuple[str, str]:
        found = config_files.on_path()
        if found is None:
            raise CheckFailed(
                "docker-credential-quayfed is not on PATH, so clients cannot run it",
                "install it with pipx, or add its directory to PATH",
            )
        return OK, found

    _timed(report, "helper on PATH", on_path)
    _wiring(report, host)
    if not config_ok:
        return None
    registry = loaded[0].registries[host]

    def background_refresh() -> tuple[str, str]:
        from docker_credential_quayfed import background

        if not registry.refresh_ahead:
            return OK, "refresh_ahead = false: gets refresh at the refresh point"
        failed = background.last_failure(new_request().cache, host)
        if failed is not None:
            return WARN, f"{failed} (see {background.LOG_NAME} in the cache directory)"
        return OK, "no failed background refresh in the last day"

    _timed(report, "background refresh", background_refresh)
    return registry


def _wiring(report: Report, host: str) -> None:
    candidates = [
        ("docker config.json", config_files.docker_config_path()),
        ("containers auth.json", config_files.containers_auth_path()),
    ]
    home_docker = Path.home() / ".docker" / "config.json"
    if home_docker != candidates[0][1]:
        candidates.append(("~/.docker/config.json (read by podman)", home_docker))
    wired = 0
    started = time.monotonic()
    for label, path in candidates:
        try:
            state = config_files.cred_helper_wired(path, host)
        except QuayfedError as exc:
            report.steps.append(Step(f"credHelpers: {label}", WARN, exc.problem, 0.0, exc.fix))
            continue
        if state:
            wired += 1
            verdict, detail, fix = OK, f"{path}: {host} -> quayfed", ""
        else:
            verdict = WARN
            detail = f"{path}: {'no such file' if state is None else f'{host} is not wired'}"
            fix = f"run: docker-credential-quayfed configure {host}"
        report.steps.append(
            Step(f"credHelpers: {label}", verdict, detail, time.monotonic() - started, fix)
        )
    if not wired:
        report.steps.append(
            Step(
                "credHelpers",
                FAIL,
                f"no client file sends {host} to this helper (podman logout --all removes "
                "credHelpers)",
                0.0,
                f"run: docker-credential-quayfed configure {host}",
            )
        )


def diagnose(host: str) -> Report:
    report = Report(host)
    registry = _local_checks(report, host)
    remote = (
        "discovery",
        "JWKS",
        "token minted",
        "federation entry",
        "Quay exchange",
        "robot token",
        "registry /v2/",
    )
    if registry is None:
        _skip(report, *remote)
        return report
    with broker.registry_client(registry) as session:
        checker = _Checker(registry, session, new_request())
        steps: list[tuple[str, Callable[[], tuple[str, str]]]] = [
            ("discovery", checker.discover),
            ("JWKS", checker.fetch_jwks),
            *([("login", checker.login_state)] if registry.source == "device" else []),
            ("token minted", checker.mint),
            ("federation entry", checker.federation_entry),
            ("Quay exchange", checker.exchange),
            ("robot token", checker.robot_expiry),
            ("registry /v2/", checker.registry_login),
        ]
        for index, (name, action) in enumerate(steps):
            if not _timed(report, name, action):
                _skip(report, *(n for n, _ in steps[index + 1 :]))
                break
    return report


def _colour(verdict: str, text: str) -> str:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    code = {OK: "32", WARN: "33", FAIL: "31", SKIP: "2"}[verdict]
    return f"\033[{code}m{text}\033[0m"


def render(reports: list[Report]) -> str:
    lines = []
    for report in reports:
        lines.append(f"{printable(report.host)}:")
        for step in report.steps:
            tag = _colour(step.verdict, f"[{step.verdict:^4}]")
            detail = printable(step.detail)  # claims and server text: no raw control characters
            lines.append(f"  {tag} {step.name:<38} {step.seconds * 1000:7.0f} ms  {detail}")
            if step.fix and step.verdict in (FAIL, WARN):
                lines.append(f"         {'':<38}             -> {printable(step.fix)}")
        verdict = "all checks passed" if report.passed else "FAILED"
        lines.append(f"  {verdict}")
    return "\n".join(lines)


def run(hosts: list[str], as_json: bool) -> int:
    if not hosts:
        try:
            hosts = sorted(config.load(BY_NAME).registries)
        except QuayfedError as exc:
            report = Report("(no host)")
            report.steps.append(Step("config", FAIL, exc.problem, 0.0, exc.fix))
            reports = [report]
            hosts = []
        else:
            reports = []
        if not hosts and not reports:
            report = Report("(no host)")
            report.steps.append(
                Step(
                    "config",
                    FAIL,
                    f"{paths.config_file()} configures no registry",
                    0.0,
                    "run: docker-credential-quayfed configure HOST ...",
                )
            )
            reports = [report]
    else:
        reports = []
    reports += [diagnose(host) for host in hosts]
    if as_json:
        print(
            log.redact(
                json.dumps(
                    [
                        {"host": r.host, "passed": r.passed, "steps": [asdict(s) for s in r.steps]}
                        for r in reports
                    ],
                    indent=2,
                )
            )
        )
    else:
        print(log.redact(render(reports)))
    return 0 if all(r.passed for r in reports) else 1


def add_parser(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="Check every step for HOST (or every configured host), timed, with verdicts.",
        description=describe(
            "Run each step of the flow and print one line per step with its timing and a "
            "verdict: config, helper on PATH, credHelpers wiring in each client file, OIDC "
            "discovery, JWKS, a minted token (its iss, sub, aud and exp: exactly what Quay's "
            "federation dialog needs), the Quay exchange, the robot token's expiry, and a /v2/ "
            "login at the registry. A failing step says what to do next. Exit code 0 only "
            "when nothing failed."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed doctor quay.example.com\n"
            "  docker-credential-quayfed doctor --json\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("hosts", metavar="HOST", nargs="*", help="registry host(s) to check")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from docker_credential_quayfed.protocol import registry_key

    return run([registry_key(h) for h in args.hosts], args.json)
