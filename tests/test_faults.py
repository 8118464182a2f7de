"""The installed helper against hostile servers (``tests/support/hostile.py``): each fault on the
issuer, on Quay and on both, with nothing cached (``cold``), with ``on_failure = "error"``
(``cold-error``) and with a still-valid, refresh-due robot token cached (``warm``).

The contract every case keeps, with ``timeout = 3``:

- outcome: warm serves the cached token (exit 0, same Secret, at most one stderr line); cold
  answers exit 1 with exactly ``credentials not found in native keychain`` on stdout and exactly
  one stderr line; cold-error answers exit 1 with one line on stdout. Faults after which Quay's
  answer is still a usable token (a robot token stamped by a skewed clock) serve that token
  instead, cached no longer than the lifetime Quay gave it;
- time: at most timeout + 1 s, plus the helper's own start-up (``version``) as a baseline;
- no ``Traceback`` anywhere, and no secret (password, client secret, minted JWTs, their Basic
  and form encodings, or any 16-character run of them) outside a successful answer's Secret;
- memory: peak RSS of the helper itself (``ru_maxrss`` from a tiny parent) under 200 MiB.

The default run covers every fault on one target, cold and warm, plus cold-error on a few;
``QUAYFED_FAULTS_FULL=1`` runs every fault x target x state. Cases run six at a time, each with
its own config and cache directory; the 3 GiB bodies run one at a time after the others.

Also here: a connection-level failure is remembered (the next get answers at once without the
network) while a refusal of the credentials is not, and controls proving the harness is sound.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed import broker
from docker_credential_quayfed import config as product_config
from docker_credential_quayfed.cache import TokenCache, robot_token_from_jwt
from docker_credential_quayfed.identity import CredentialKey
from docker_credential_quayfed.protocol import NOT_FOUND
from docker_credential_quayfed.sources import BY_NAME
from tests.helper_process import helper_command
from tests.support.hostile import FAULTS, ISSUER, QUAY, ROBOT_LIFETIME, Case, HostileServer
from tests.support.records import record
from tests.support.requests import request_here

# Heavy: run by the README's test command and docs/reliability.py, not on every Python.
pytestmark = pytest.mark.reliability

REGISTRY = "quay.faults.example"
PASSWORD_ENV = "QUAYFED_FAULTS_PASSWORD"
CLIENT_SECRET_ENV = "QUAYFED_FAULTS_CLIENT_SECRET"
TIMEOUT = 3
#: seconds of life left in the warm state's cached token: valid, but inside the refresh margin
WARM_LEFT = 120
MEMORY_CEILING_MIB = 200.0
# Keeps a helper that reads a 3 GiB body into memory from taking the machine down with it.
ADDRESS_SPACE_GUARD = 2 << 30
#: a helper still running this long after start is killed and the case reported as stuck
HARD_CAP = 20.0
POOL = 6
#: seconds between helper launches: a get costs ~0.3 s of CPU, so two cores stay unsaturated
LAUNCH_GAP = 0.25
SECRET_RUN = 16
TARGETS = (ISSUER, QUAY, "both")
STATES = ("cold", "cold-error", "warm")
FULL = os.environ.get("QUAYFED_FAULTS_FULL", "").strip() == "1"
SLOW_FAULTS = ("hang", "drip_headers", "drip_body", "trickle_body", "http_429_retry_after")

#: the default run's target for each fault, alternating sides (echo differs per side: both)
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "refused": (ISSUER,),
    "dns": (QUAY,),
    "tls_unknown_ca": (ISSUER,),
    "tls_wrong_name": (QUAY,),
    "tls_expired": (ISSUER,),
    "http_500": (QUAY,),
    "http_502": (QUAY,),
    "http_503": (ISSUER,),
    "http_429": (ISSUER,),
    "http_429_retry_after": (QUAY,),
    "hang": (QUAY,),
    "drip_headers": (ISSUER,),
    "drip_body": (QUAY,),
    "trickle_body": (ISSUER,),
    "junk": (ISSUER,),
    "truncated": (QUAY,),
    "html_200": (QUAY,),
    "html_500": (ISSUER,),
    "redirect": (ISSUER,),
    "huge": (QUAY,),
    "no_exp": (QUAY,),
    "expired": (QUAY,),
    "skew_ahead": (QUAY,),
    "skew_behind": (ISSUER,),
    "echo": (ISSUER, QUAY),
}
#: faults whose cold-error shape the default run checks too
DEFAULT_ERROR_STATE = ("refused", "tls_wrong_name", "http_503", "hang", "junk", "echo", "expired")
#: (fault, target) after which Quay's answer is a token Quay itself honours: it must be served
USABLE = frozenset({("skew_ahead", QUAY), ("skew_behind", QUAY)})

PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})

# A tiny parent (python -I -S): fork/exec the helper and report the child's own peak RSS.
WRAPPER = f"""\
import os, resource, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_GUARD}, {ADDRESS_SPACE_GUARD}))
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


@dataclass(frozen=True)
class Spec:
    fault: str
    target: str
    state: str

    def __str__(self) -> str:
        return f"{self.fault}-{self.target}-{self.state}"

    @property
    def expected(self) -> str:
        if (self.fault, self.target) in USABLE:
            return "served-fresh"
        return {"warm": "served-cached", "cold": "not-found", "cold-error": "error-line"}[
            self.state
        ]


def all_specs() -> list[Spec]:
    return [Spec(f, t, s) for f in FAULTS for t in TARGETS for s in STATES]


def default_specs() -> list[Spec]:
    chosen = []
    for fault, targets in DEFAULT_TARGETS.items():
        for target in targets:
            chosen += [Spec(fault, target, "cold"), Spec(fault, target, "warm")]
            if fault in DEFAULT_ERROR_STATE:
                chosen.append(Spec(fault, target, "cold-error"))
    return chosen


SPECS = all_specs() if FULL else default_specs()


# -- running the helper --------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    maxrss_mib: float | None
    killed: bool


def helper_env(directory: Path, case: Case | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in PROXY_VARIABLES and not name.startswith("DOCKER_CREDENTIAL_QUAYFED")
    }
    env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"] = str(directory / "config.toml")
    env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"] = str(directory / "cache")
    if case is not None:
        env[PASSWORD_ENV] = case.password
        env[CLIENT_SECRET_ENV] = case.client_secret
    return env


class LaunchSpacing:
    """Launches at least ``gap`` seconds apart, so that parallel cases do not all pay their
    interpreter start-up on the two cores at the same instant."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self._lock = threading.Lock()
        self._last = 0.0

    def wait(self) -> None:
        with self._lock:
            delay = self._last + self.gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._last = time.monotonic()


LAUNCHES = LaunchSpacing(LAUNCH_GAP)


def run_helper_measured(action: str, stdin: str, env: dict[str, str], report: Path) -> Run:
    """Run the installed helper under the tiny parent; kill its process group at HARD_CAP."""
    command = [sys.executable, "-I", "-S", "-c", WRAPPER, str(report), *helper_command(), action]
    report.unlink(missing_ok=True)
    LAUNCHES.wait()
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    killed = False
    try:
        out, err = process.communicate(stdin.encode(), timeout=HARD_CAP)
    except subprocess.TimeoutExpired:
        killed = True
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    seconds = time.monotonic() - started
    maxrss = None
    if not killed and report.exists() and report.read_text().strip():
        maxrss = int(report.read_text()) / 1024
    return Run(
        None if killed else process.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        seconds,
        maxrss,
        killed,
    )


def write_config(directory: Path, case: Case, on_failure: str) -> Path:
    settings = {
        "robot": case.robot,
        "issuer": case.issuer_url,
        "source": "password",
        "client_id": case.client_id,
        "username": case.username,
        "password_env": PASSWORD_ENV,
        "client_secret_env": CLIENT_SECRET_ENV,
        "quay_url": case.quay_url,
        "ca_bundle": str(case.server.ca_bundle),
        "timeout": TIMEOUT,
        "on_failure": on_failure,
    }
    lines = [f"[registries.{json.dumps(REGISTRY)}]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def identity(config_path: Path) -> CredentialKey:
    return broker.key_for(
        product_config.load(BY_NAME, config_path).registry(REGISTRY), request_here()
    )


def cache_refresh_due_token(directory: Path, case: Case) -> str:
    """Cache a robot token from the case's Quay with WARM_LEFT seconds left; return it."""
    issued_at = time.time() - ROBOT_LIFETIME + WARM_LEFT
    token = case.mint_robot_token(issued_at=issued_at, registry=REGISTRY)
    entry = robot_token_from_jwt(REGISTRY, case.robot, token, time.time())
    TokenCache(directory / "cache").write(identity(directory / "config.toml"), entry)
    return token


# -- judging -------------------------------------------------------------------------------
def secret_hits(text: str, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets found in ``text`` whole or as a run of SECRET_RUN characters."""
    found = []
    for name, value in secrets.items():
        runs = (value[i : i + SECRET_RUN] for i in range(max(len(value) - SECRET_RUN + 1, 1)))
        if value in text or any(run in text for run in runs):
            found.append(name)
    return found


@dataclass(frozen=True)
class Observation:
    spec: Spec
    run: Run
    outcome: str
    secret_hits: list[str]
    violations: list[str]

    def report(self) -> str:
        return (
            f"{self.spec}: {'; '.join(self.violations)}\n"
            f"  exit {self.run.returncode}, {self.run.seconds:.2f}s, "
            f"maxrss {self.run.maxrss_mib} MiB\n"
            f"  stdout: {self.run.stdout[:600]!r}\n  stderr: {self.run.stderr[:600]!r}"
        )


def served_secret(run: Run) -> str | None:
    if run.returncode != 0:
        return None
    try:
        answer = json.loads(run.stdout)
    except ValueError:
        return None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    return secret if isinstance(secret, str) else None


def classify(run: Run, cached: str | None, case: Case) -> str:
    if run.killed:
        return "killed"
    secret = served_secret(run)
    if secret is not None:
        if secret == cached:
            return "served-cached"
        fresh = {m.token for m in case.minted_of("robot_token")} - {cached}
        return "served-fresh" if secret in fresh else "served-unknown"
    lines = run.stdout.strip().splitlines()
    if run.returncode == 1 and run.stdout.strip() == NOT_FOUND:
        return "not-found"
    if run.returncode == 1 and len(lines) == 1:
        return "error-line"
    return f"exit {run.returncode} with {len(lines)} stdout lines"


def judge(
    spec: Spec, case: Case, directory: Path, run: Run, cached: str | None, limit: float
) -> Observation:
    outcome = classify(run, cached, case)
    secret = served_secret(run)
    stdout = run.stdout.replace(secret, "") if secret else run.stdout
    hits = secret_hits(stdout + "\n" + run.stderr, case.secrets())
    violations = []
    if run.killed:
        violations.append(f"still running after {run.seconds:.1f}s, killed")
    elif run.seconds > limit:
        violations.append(f"took {run.seconds:.3f}s, limit {limit:.3f}s")
    if "Traceback" in run.stdout + run.stderr:
        violations.append("a traceback in the output")
    if hits:
        violations.append("secrets in the output: " + ", ".join(hits))
    if run.maxrss_mib is not None and run.maxrss_mib > MEMORY_CEILING_MIB:
        violations.append(f"peak RSS {run.maxrss_mib:.0f} MiB, ceiling {MEMORY_CEILING_MIB:.0f}")
    if outcome != spec.expected:
        violations.append(f"answered {outcome}, expected {spec.expected}")
    stderr_lines = len(run.stderr.strip().splitlines())
    if spec.expected == "not-found" and stderr_lines != 1:
        violations.append(f"{stderr_lines} stderr lines, expected exactly 1")
    elif spec.expected != "not-found" and stderr_lines > 1:
        violations.append(f"{stderr_lines} stderr lines, expected at most 1")
    if secret is not None:
        answer = json.loads(run.stdout)
        if answer.get("Username") != case.robot or answer.get("ServerURL") != REGISTRY:
            violations.append(
                f"answer names {answer.get('Username')!r} at {answer.get('ServerURL')!r}"
            )
    if outcome == "served-fresh":
        violations += honest_expiry(case, directory, secret)
    return Observation(spec, run, outcome, hits, violations)


def honest_expiry(case: Case, directory: Path, served: str | None) -> list[str]:
    """The cached copy may not outlive the lifetime Quay gave it, counted from receipt."""
    minted = next((m for m in case.minted_of("robot_token") if m.token == served), None)
    cached = TokenCache(directory / "cache").read(identity(directory / "config.toml"))
    if minted is None or minted.iat is None or minted.exp is None or cached is None:
        return ["the served token is not in the cache"]
    allowed = minted.minted_at + (minted.exp - minted.iat)
    if cached.expires_at > allowed + 5:
        return [f"cached until {cached.expires_at - allowed:.0f}s past Quay's own expiry"]
    return []


def run_spec(spec: Spec, server: HostileServer, root: Path, limit: float) -> Observation:
    on_issuer = spec.target in (ISSUER, "both")
    on_quay = spec.target in (QUAY, "both")
    case = server.case(
        issuer=spec.fault if on_issuer else None, quay=spec.fault if on_quay else None
    )
    directory = root / str(spec)
    directory.mkdir(parents=True)
    write_config(directory, case, "error" if spec.state == "cold-error" else "anonymous")
    cached = cache_refresh_due_token(directory, case) if spec.state == "warm" else None
    run = run_helper_measured("get", REGISTRY, helper_env(directory, case), directory / "rss")
    observed = judge(spec, case, directory, run, cached, limit)
    record(
        "faults",
        fault=spec.fault,
        target=spec.target,
        state=spec.state,
        outcome=observed.outcome,
        expected=spec.expected,
        seconds=round(run.seconds, 3),
        limit=round(limit, 3),
        traceback="Traceback" in run.stdout + run.stderr,
        secret_hits=len(observed.secret_hits),
        maxrss_mib=None if run.maxrss_mib is None else round(run.maxrss_mib, 1),
        violations=observed.violations,
    )
    return observed


def startup_baseline(root: Path) -> float:
    """The helper's own start-up under the same parent: the slowest of three ``version`` runs."""
    root.mkdir(parents=True, exist_ok=True)
    env = helper_env(root, None)
    return max(run_helper_measured("version", "", env, root / "rss").seconds for _ in range(3))


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileServer]:
    with HostileServer(tmp_path_factory.mktemp("hostile")) as server:
        yield server


@pytest.fixture(scope="module")
def limit(tmp_path_factory: pytest.TempPathFactory) -> float:
    return TIMEOUT + 1 + startup_baseline(tmp_path_factory.mktemp("baseline"))


@pytest.fixture(scope="module")
def observations(
    request: pytest.FixtureRequest,
    hostile: HostileServer,
    limit: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[Spec, Observation]:
    """Every selected case of this module, run once: six at a time, then the huge bodies."""
    selected = _selected_specs(request)
    root = tmp_path_factory.mktemp("faults")
    heavy = [spec for spec in selected if spec.fault == "huge"]
    light = sorted(
        (spec for spec in selected if spec.fault != "huge"),
        key=lambda spec: spec.fault not in SLOW_FAULTS,
    )
    with ThreadPoolExecutor(POOL) as pool:
        results = list(pool.map(lambda spec: run_spec(spec, hostile, root, limit), light))
    results += [run_spec(spec, hostile, root, limit) for spec in heavy]
    return {observed.spec: observed for observed in results}


def _selected_specs(request: pytest.FixtureRequest) -> list[Spec]:
    chosen = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is sys.modules[__name__] and "spec" in params:
            chosen.append(params["spec"])
    return chosen


# -- the matrix ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_helper_keeps_the_contract_under_fault(
    spec: Spec, observations: dict[Spec, Observation]
) -> None:
    observed = observations[spec]
    assert not observed.violations, observed.report()


# -- what a failure leaves behind ----------------------------------------------------------
#: Quay-side faults, so that a second get that went to the network would reach the issuer first
REMEMBERED = ("refused", "dns", "tls_unknown_ca", "hang", "http_503", "http_429")
#: refusals of the credentials themselves, which must be asked again every time
NOT_REMEMBERED = ((ISSUER, "echo"), (QUAY, "echo"), (ISSUER, "skew_behind"))
#: a get answered from the negative cache does no network and no TLS: start-up and a file read
AT_ONCE = 1.0


def fail_once(hostile: HostileServer, directory: Path, **faults: str) -> Case:
    """A case with ``faults``, after a first get against it failed cleanly."""
    case = hostile.case(**faults)
    write_config(directory, case, "anonymous")
    first = run_helper_measured("get", REGISTRY, helper_env(directory, case), directory / "rss")
    assert_went_anonymous(first, case)
    return case


def get_again(case: Case, directory: Path) -> Run:
    again = run_helper_measured("get", REGISTRY, helper_env(directory, case), directory / "rss")
    assert_went_anonymous(again, case)
    return again


def assert_went_anonymous(run: Run, case: Case) -> None:
    assert classify(run, None, case) == "not-found", run
    assert len(run.stderr.strip().splitlines()) == 1, run
    assert "Traceback" not in run.stderr, run
    assert not secret_hits(run.stderr, case.secrets()), run


@pytest.mark.parametrize("fault", REMEMBERED)
def test_connection_failures_are_remembered(
    hostile: HostileServer, fault: str, tmp_path: Path
) -> None:
    """Within the negative-cache window the next get answers at once, without the network."""
    case = fail_once(hostile, tmp_path, quay=fault)
    reached = case.request_count()
    assert reached > 0  # the failing get did fetch its JWT from the issuer
    again = get_again(case, tmp_path)
    assert case.request_count() == reached, "a remembered failure went back to the network"
    assert again.seconds <= AT_ONCE, again


@pytest.mark.parametrize(("target", "fault"), NOT_REMEMBERED)
def test_credential_refusals_are_not_remembered(
    hostile: HostileServer, target: str, fault: str, tmp_path: Path
) -> None:
    case = fail_once(hostile, tmp_path, **{target: fault})
    reached = case.requests[ISSUER]
    get_again(case, tmp_path)
    assert case.requests[ISSUER] > reached, "a refusal of the credentials was remembered"


# -- the harness itself --------------------------------------------------------------------
def test_healthy_servers_mint_refresh_and_cache(
    hostile: HostileServer, limit: float, tmp_path: Path
) -> None:
    """Control: without a fault the helper mints; the warm state's token is refresh-due (so
    the fault cases really try the network); the token minted then is served from the cache."""
    case = hostile.case()
    write_config(tmp_path, case, "anonymous")
    env = helper_env(tmp_path, case)
    cold = run_helper_measured("get", REGISTRY, env, tmp_path / "rss")
    assert classify(cold, None, case) == "served-fresh", cold
    assert cold.seconds <= limit
    warm_token = cache_refresh_due_token(tmp_path, case)
    refreshed = run_helper_measured("get", REGISTRY, env, tmp_path / "rss")
    assert classify(refreshed, warm_token, case) == "served-fresh", refreshed
    again = run_helper_measured("get", REGISTRY, env, tmp_path / "rss")
    assert served_secret(again) == served_secret(refreshed)
    assert len(case.minted_of("robot_token")) == 3  # the cold one, the warm one, the refresh
    for run in (cold, refreshed, again):
        assert run.stderr == ""
        secret = served_secret(run) or ""
        assert secret_hits(run.stdout.replace(secret, ""), case.secrets()) == []


@pytest.mark.parametrize("target", [ISSUER, QUAY])
def test_echoing_servers_really_echo_the_credentials(hostile: HostileServer, target: str) -> None:
    """The echo cases are not vacuous: what the server answers holds the secrets."""
    case = hostile.case(**{target: "echo"})
    verify = ssl.create_default_context(cafile=str(hostile.ca_bundle))
    with httpx.Client(verify=verify) as client:
        if target == ISSUER:
            answer = client.post(
                case.issuer_url + "/protocol/openid-connect/token",
                data={"grant_type": "password", "username": "jdoe", "password": case.password},
                auth=(case.client_id, case.client_secret),
            )
            assert answer.status_code == 400
            assert "password (form-encoded)" in secret_hits(answer.text, case.secrets())
        else:
            id_token = case.mint_oidc("id_token", None)
            answer = client.get(
                case.quay_url + "/oauth2/federation/robot/token", auth=(case.robot, id_token)
            )
            assert answer.status_code == 401
            assert any("(base64)" in hit for hit in secret_hits(answer.text, case.secrets()))


def test_secret_scan_finds_partial_runs() -> None:
    secrets = {"token": "abcdefghijklmnopqrstuvwxyz0123456789"}
    assert secret_hits("... ghijklmnopqrstuv ...", secrets) == ["token"]
    assert secret_hits("... ghijklmnopqrstu ...", secrets) == []
    assert secret_hits("short", {"tiny": "short"}) == ["tiny"]
