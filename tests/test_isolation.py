"""Isolation as a property: an answer is served for an identity only if Quay would issue that
robot's token to that identity now.

A hypothesis state machine runs the real helper (``cli.main`` and ``kubelet.answer`` in this
process, and now and then the installed executables, whose launcher answers a hit on its own)
against the nanoidp realm, the Kubernetes-like issuer and two Quay emulators. It draws who holds
each credential: token files (one named ``~/tok``, read from a home directory while the working
directory, holding a ``~/tok`` of its own, moves) and a variable that change hands between CI
jobs and service accounts, a second issuer that reuses a job's ``sub``, a person named by a
password source, people logging in and out (``login``, its device code approved at a
Keycloak-like realm, and ``logout``) of registries that share one login, a username given to
someone else (deleted and made again at the realm: the same preferred_username, another
``sub``) who then logs in, a logout while the refresh-ahead child is minting, JWTs that
expire, Quay issuing tokens already inside their refresh-ahead window or past their refresh
point, Quay down and the issuer refusing, the node's kubelet policy, and
kubelet requests with annotations, overrides, audiences and robot names beside the allowed
patterns. Draws lean towards answers that can be served and towards one robot at one Quay
asked for by one identity after another, where a crossover would show.

Every answer is checked against what the emulator recorded: the robot token served for identity
X was issued by the right Quay, for that robot, to X's ``iss`` and ``sub``; X's federation
allows it (audiences included); X's credential is usable now; the token has not expired; and for
the kubelet the node's tables allowed it. Where the model says Quay would issue (it is up, and
no failure is remembered for that credential), an answer must come, so the property cannot hold
by refusing everything. After a logout, no robot token of a registry sharing the login is left.

``$QUAYFED_ISOLATION_EXAMPLES`` sets the examples (default :data:`EXAMPLES`); the run is
derandomized (the same examples on every run, as CI needs) unless
``$QUAYFED_ISOLATION_RANDOM`` is 1. The run records ``isolation`` figures through
:mod:`tests.support.records`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from docker_credential_quayfed import (
    actions,
    background,
    claims,
    cli,
    fastpath,
    log,
    login_flow,
    transport,
)
from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.errors import QuayfedError
from docker_credential_quayfed.kubelet import answer as kubelet_answer
from docker_credential_quayfed.request import RequestContext
from quay_sandbox.issuer import IssuerClient, IssuerUser, KeycloakIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.support import leaks
from tests.support.oidc_provider import KubeIssuer, OIDCProvider
from tests.support.records import record

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("QUAYFED_ISOLATION_EXAMPLES", "300"))
#: "0": report the first failing example as found, without shrinking it (docs/mutation.py)
SHRINK = os.environ.get("QUAYFED_ISOLATION_SHRINK", "1") != "0"
#: "1": draw afresh on each run instead of the same examples every time (exploring)
RANDOM = os.environ.get("QUAYFED_ISOLATION_RANDOM", "") == "1"
STEPS = 10

ALPHA, ALPHAX, BETA = "org+alpha", "org+alphax", "org+beta"
QUAY_A, QUAY_B = "quay-a.test", "quay-b.test"
PEOPLE = ("jdoe", "alice")
#: the people who log in (``login``) have accounts at a Keycloak-like realm, whose ``sub`` is a
#: UUID and whose username (preferred_username) is only a name: a person deleted and made again
#: is generation 1, 2, ... of that username, another ``sub``
GENERATIONS = 3
LOGIN_CLIENT = "quayfed-login"
JOBS = ("job-1", "job-2", "job-3")
#: a job of the second issuer (the Kubernetes-like one) whose ``sub`` is job-1's
TWIN = "twin"
ACCOUNTS = ("sa1", "sa2", "sa3")
NAMESPACE = "apps"
#: who each robot's federation names, per Quay: (kind, name) with kind person, job or account
FEDERATION: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    (QUAY_A, ALPHA): (("person", "jdoe"), ("job", "job-1"), ("job", "job-2"), ("account", "sa1"),
                      ("account", "sa2")),
    (QUAY_A, BETA): (("person", "alice"), ("job", "job-2"), ("job", "job-3"), ("job", TWIN),
                     ("account", "sa2"), ("account", "sa3")),
    (QUAY_A, ALPHAX): (("job", "job-1"), ("account", "sa1"), ("account", "sa3")),
    (QUAY_B, ALPHA): (("person", "alice"), ("job", "job-1"), ("account", "sa1"),
                      ("account", "sa3")),
}  # fmt: skip
# Who logs in: the first jdoe and alice wherever the people are trusted; the second jdoe (the
# username given to someone else) only for org+beta at Quay A, the second alice nowhere.
FEDERATION = {
    place: (
        *names,
        *(("login", f"{name}#0") for kind, name in names if kind == "person"),
        *((("login", "jdoe#1"),) if place == (QUAY_A, BETA) else ()),
    )
    for place, names in FEDERATION.items()
}
#: federations whose entries for the second issuer list audiences (Quay 3.18 checks ``aud``)
RESTRICTED: dict[tuple[str, str], tuple[str, ...]] = {(QUAY_B, ALPHA): ("quay-b",)}
AUDIENCES = {QUAY_A: "quay-a", QUAY_B: "quay-b"}
#: the audiences a carried JWT is drawn with ("quay": the one most CI systems are told)
CARRIED_AUDIENCES = ("quay", "quay", "quay-b")

TOKEN_ENV = "QUAYFED_ISOLATION_JOB_JWT"
PASSWORD_ENV = "QUAYFED_ISOLATION_PASSWORD"
CONFIG_ENV = "DOCKER_CREDENTIAL_QUAYFED_CONFIG"
CACHE_ENV = "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"
#: the token files that change hands (the first also answers for the node's own identity);
#: HOME_FILE is named ``~/tok`` in the config
FILES = ("job.jwt", "other.jwt")
HOME_FILE = "~/tok"
#: ages (seconds) at which Quay's tokens are born: fresh, inside the refresh-ahead window
#: (from 3000 s of 3600), past the refresh point (3300 s) but still valid
AGES = (0, 0, 3100, 3400)
#: lifetimes Quay's tokens claim: Quay's hour, and ten hours (the helper believes at most
#: fastpath.MAX_ROBOT_TOKEN_LIFETIME of a token's life, and the kubelet no more either)
LIFETIMES = (3600, 3600, 36000)
#: cases whose product fix is not merged yet: their rules are left out while listed here
PENDING: frozenset[str] = frozenset()
CODE_LINE = re.compile(r"open (\S+) and (?:check|enter) the code (\S+)")


@dataclass(frozen=True)
class Registry:
    """A ``[registries."KEY"]`` table of the helper's config: its robot, Quay and source."""

    key: str
    robot: str
    quay: str
    source: str
    carrier: str = ""  # the token file a file or command source reads


REGISTRIES = (
    Registry("quay-a.test", ALPHA, QUAY_A, "file", FILES[0]),
    Registry("mirror-a.test", BETA, QUAY_A, "file", FILES[0]),
    Registry("cmd-a.test", BETA, QUAY_A, "command", FILES[1]),
    Registry("home-a.test", ALPHA, QUAY_A, "file", HOME_FILE),
    Registry("ci-b.test", ALPHA, QUAY_B, "env"),
    Registry("people-a.test", ALPHA, QUAY_A, "password"),
    Registry("login-a.test", ALPHA, QUAY_A, "device"),
    Registry("login-beta.test", BETA, QUAY_A, "device"),
    Registry("login-b.test", ALPHA, QUAY_B, "device"),
)
BY_KEY = {registry.key: registry for registry in REGISTRIES}
LOGIN_REGISTRIES = tuple(r.key for r in REGISTRIES if r.source == "device")
ROBOT_LISTS = ((), (), (ALPHA,), (ALPHA,), (BETA,), ("org+*",), ("other+*",), (ALPHA, BETA))
#: allow-lists whose patterns sit beside the robots' names (org+alpha is a prefix of org+alphax)
NEAR_LISTS = ((ALPHA,), (ALPHA,), (ALPHA, BETA), ("org+alpha?",), ("org+*",), ())
OVERRIDES = {QUAY_A: ((), (QUAY_B,), (QUAY_B,)), QUAY_B: ((), (), (QUAY_A,))}


@dataclass(frozen=True)
class Identity:
    """Whom a credential names: the Quay-visible ``iss`` and ``sub``, and the model's name."""

    kind: str
    name: str
    issuer: str
    subject: str
    second_issuer: bool = False

    def federated(self, quay: str, robot: str, audience: str = "") -> bool:
        """Quay's rule: the subject is in an entry for the issuer, and the last of the
        issuer's entries that lists audiences (here: all of the second issuer's) has ``aud``."""
        if (self.kind, self.name) not in FEDERATION.get((quay, robot), ()):
            return False
        restricted = RESTRICTED.get((quay, robot)) if self.second_issuer else None
        return restricted is None or audience in restricted


@dataclass(frozen=True)
class Carried:
    """A JWT in a file or a variable: whose it is, and whether it is still valid."""

    identity: Identity
    token: str
    expired: bool
    audience: str


@dataclass
class World:
    """The servers, started once for the module: a run cannot afford them per example."""

    provider: OIDCProvider
    kube: KubeIssuer
    quays: dict[str, QuayEmulator]
    ca_bundle: Path
    #: where people log in (``login``): a realm with UUID subjects and device codes
    realm: KeycloakIssuer
    identities: dict[tuple[str, str], Identity] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.figures[name] = self.figures.get(name, 0) + by


def login_user(person: str, generation: int) -> IssuerUser:
    """The realm's ``person`` of that generation: the same username, a ``sub`` of its own."""
    sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"quayfed-isolation:{person}#{generation}"))
    return IssuerUser(person, f"{person}-password-{generation}", sub)


@pytest.fixture(scope="module")
def world(
    oidc_provider: OIDCProvider, kube_issuer: KubeIssuer, test_pki: TestPKI
) -> Iterator[World]:
    quays: dict[str, QuayEmulator] = {}
    realm = KeycloakIssuer(
        users=[login_user(person, 0) for person in PEOPLE], clients=[IssuerClient(LOGIN_CLIENT)]
    )
    servers = [realm.start(pki=test_pki)]
    for host in (QUAY_A, QUAY_B):
        emulator = QuayEmulator(ca_bundle=test_pki.ca_cert)
        servers.append(emulator.start(pki=test_pki))
        quays[host] = emulator
    identities: dict[tuple[str, str], Identity] = {}
    for person in PEOPLE:
        identities["person", person] = Identity("person", person, oidc_provider.issuer, person)
    for job in JOBS:
        identities["job", job] = Identity("job", job, oidc_provider.issuer, job)
    identities["job", TWIN] = Identity("job", TWIN, kube_issuer.issuer, JOBS[0], True)
    for person in PEOPLE:
        for generation in range(GENERATIONS):
            login = f"{person}#{generation}"
            sub = login_user(person, generation).sub
            identities["login", login] = Identity("login", login, realm.issuer, sub)
    for account in ACCOUNTS:
        subject = f"system:serviceaccount:{NAMESPACE}:{account}"
        identities["account", account] = Identity(
            "account", account, kube_issuer.issuer, subject, True
        )
    for (host, robot), names in FEDERATION.items():
        entries = []
        for name in names:
            identity = identities[name]
            entry: dict[str, Any] = {"issuer": identity.issuer, "subject": identity.subject}
            if identity.second_issuer and (host, robot) in RESTRICTED:
                entry["audiences"] = list(RESTRICTED[host, robot])
            entries.append(entry)
        quays[host].add_robot(robot, federation=entries)
    try:
        yield World(oidc_provider, kube_issuer, quays, test_pki.ca_cert, realm, identities)
    finally:
        for server in servers:
            server.close()


# -- the helper, run as clients run it ------------------------------------------------------------
@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def _log_state() -> dict[str, Any]:
    return {
        name: value.copy()
        for name, value in vars(log).items()
        if isinstance(value, (set, dict, list)) and not name.startswith("__")
    }


@contextlib.contextmanager
def _streams(stdin: str) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    out, err = io.BytesIO(), io.BytesIO()
    replaced = (
        io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    )
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_log = _log_state()
    # A get's timeout counts from the process's start: here, from this run's.
    saved_started = actions.STARTED
    actions.STARTED = time.monotonic()
    try:
        sys.stdin, sys.stdout, sys.stderr = replaced
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        actions.STARTED = saved_started
        for name, value in saved_log.items():
            live = getattr(log, name)
            live.clear()
            live.update(value)
        for stream in replaced:
            stream.flush()
            stream.detach()


def run_in_process(argv: list[str], stdin: str) -> Ran:
    """``docker-credential-quayfed ARGV`` in this process, as a fresh process would run it."""
    with _streams(stdin) as (out, err):
        code = cli.main(argv)
    ran = Ran(code, out.getvalue().decode(), err.getvalue().decode())
    leaks.helper_output(argv[0], code, ran.stdout, ran.stderr, "in-process")
    return ran


def kubelet_in_process(request: str, config_path: Path, cache_dir: Path) -> Ran:
    """One CredentialProviderRequest through the provider's flow, in this process."""
    with _streams("") as (out, err):
        try:
            response = kubelet_answer(request, config_path, RequestContext(TokenCache(cache_dir)))
            code = 0
        except QuayfedError as exc:
            log.error(exc.message)
            response, code = "", exc.exit_code
    ran = Ran(code, response, err.getvalue().decode() + out.getvalue().decode())
    leaks.observe(ran.stderr, "in-process kubelet stderr")
    return ran


class Approver(io.StringIO):
    """What ``login`` writes its device code to: the person approves it at the issuer as soon
    as the code is shown (as in a browser), before the first poll."""

    def __init__(self, realm: KeycloakIssuer, person: str) -> None:
        super().__init__()
        self.realm, self.person = realm, person

    def write(self, text: str) -> int:
        found = CODE_LINE.search(text)
        if found:
            self.realm.approve_device(found.group(1), found.group(2), self.person)
        return super().write(text)


class StepClock:
    """The device flow's poll clock: a wait passes at once (the code is already approved)."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def born_aged(emulator: QuayEmulator, age: float) -> None:
    """Quay's robot tokens are issued ``age`` seconds in the past (0: now), as if the helper's
    clock had moved on since; Quay's own clock, which checks the JWT's ``iat``, stays."""
    emulator.__dict__.pop("issue_robot_token", None)
    if age:

        def issue(robot: str, **kwargs: Any) -> str:
            return QuayEmulator.issue_robot_token(emulator, robot, issued_at=time.time() - age)

        emulator.__dict__["issue_robot_token"] = issue
    emulator.__dict__["born_age"] = age


@contextlib.contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


# -- what a request was made as, and what Quay would do -------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """A request on behalf of ``identity`` (None: nobody usable) for ``robot`` at ``quay``.
    ``allowed``: Quay would issue it to that identity and the node's policy allows it;
    ``required``: and nothing stands in the way now (Quay up, no remembered failure)."""

    what: str
    robot: str
    quay: str
    identity: Identity | None
    allowed: bool
    required: bool


@dataclass(frozen=True)
class Served:
    expectation: Expectation
    username: str
    token: str


@dataclass(frozen=True)
class Pull:
    """The gets that follow a step: which of the registries concerned (None: none), and
    whether a second get follows (through the installed launcher when the first left a hit)."""

    which: int | None
    again: bool


pulls = st.builds(Pull, which=st.integers(0, 8), again=st.booleans())
HOLDERS = (
    *(("job", job) for job in JOBS),
    ("job", TWIN),
    *(("account", account) for account in ACCOUNTS),
)
holders = st.sampled_from((*HOLDERS, ("job", TWIN)))
mostly_false = st.sampled_from((False, False, False, True))


class Isolation(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        world.count("examples")
        for emulator in world.quays.values():
            emulator.reset()
            emulator.set_token_lifetime(LIFETIMES[0])
            born_aged(emulator, 0)
        # Each example is a process of its own: the secrets it registers for redaction go
        # with it (they would otherwise pile up, and every printed line is checked against all).
        self.saved_log = (set(log._raw), set(log._encoded), set(log._said))
        self.directory = Path(tempfile.mkdtemp(prefix="quayfed-isolation-"))
        self.cache_dir = self.directory / "cache"
        self.config_path = self.directory / "config.toml"
        self.home = self.directory / "home"
        self.home.mkdir()
        self.saved_cwd = os.getcwd()
        self.files: dict[str, Carried | None] = dict.fromkeys((*FILES, HOME_FILE))
        self.variable: Carried | None = None
        self.password_user = PEOPLE[0]
        self.password_wrong = False
        #: who the stored login names (None: nobody), and each username's generation now
        self.logged_in: Identity | None = None
        self.generation = dict.fromkeys(PEOPLE, 0)
        for person in PEOPLE:
            world.realm.replace_user(login_user(person, 0))
        self.kubelet_robots: dict[str, tuple[str, ...]] = {QUAY_A: (), QUAY_B: ()}
        self.overrides: dict[str, tuple[str, ...]] = {QUAY_A: (QUAY_B,), QUAY_B: ()}
        self.unannotated = "skip"
        self.down: dict[str, bool] = {QUAY_A: False, QUAY_B: False}
        #: (registry key, robot, identity, audience) asked for while its Quay was down: the
        #: helper remembers the failure for 30 s (erase forgets it)
        self.failed: set[tuple[str, str, str, str]] = set()
        self.served: list[Served] = []
        names = (CONFIG_ENV, CACHE_ENV, TOKEN_ENV, PASSWORD_ENV, "HOME")
        self.saved_env = {n: os.environ.get(n) for n in names}
        os.environ[CONFIG_ENV] = str(self.config_path)
        os.environ[CACHE_ENV] = str(self.cache_dir)
        os.environ["HOME"] = str(self.home)
        os.environ.pop(TOKEN_ENV, None)
        self.write_config()

    def teardown(self) -> None:
        os.chdir(self.saved_cwd)
        for emulator in self.world.quays.values():
            emulator.reset()
            emulator.set_token_lifetime(LIFETIMES[0])
            born_aged(emulator, 0)
        for live, kept in zip((log._raw, log._encoded, log._said), self.saved_log):
            live.clear()
            live.update(kept)
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the config -------------------------------------------------------------------------------
    def write_config(self) -> None:
        world = self.world
        ca = json.dumps(str(world.ca_bundle))
        lines = []
        for registry in REGISTRIES:
            table: dict[str, str] = {
                "robot": registry.robot,
                "issuer": world.provider.issuer,
                "quay_url": str(world.quays[registry.quay].url),
                "ca_bundle": str(world.ca_bundle),
            }
            if registry.source == "file":
                where = registry.carrier
                token_file = where if where == HOME_FILE else str(self.directory / where)
                table.update(source="file", token_file=token_file)
            elif registry.source == "command":
                command = f"cat {self.directory / registry.carrier}"
                table.update(source="command", token_command=command)
            elif registry.source == "env":
                table.update(source="env", token_env=TOKEN_ENV)
            else:
                table.update(source=registry.source, client_id=world.provider.public_client)
                if registry.source == "password":
                    table.update(username=self.password_user, password_env=PASSWORD_ENV)
                else:
                    table.update(
                        issuer=world.realm.issuer,
                        client_id=LOGIN_CLIENT,
                        scope="openid offline_access",
                    )
            lines.append(f"[registries.{json.dumps(registry.key)}]")
            lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
        for host, quay in world.quays.items():
            lines.append(f"[kubelet.{json.dumps(host)}]")
            lines.append(f"audience = {json.dumps(AUDIENCES[host])}")
            lines.append(f"quay_url = {json.dumps(str(quay.url))}")
            lines.append(f"ca_bundle = {ca}")
            lines.append(f"robots = {json.dumps(list(self.kubelet_robots[host]))}")
            lines.append(f"allow_override_to = {json.dumps(list(self.overrides[host]))}")
            if host == QUAY_A:
                lines.append(f"unannotated = {json.dumps(self.unannotated)}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.set_password()

    def set_password(self) -> None:
        password = self.world.provider.users[self.password_user]
        os.environ[PASSWORD_ENV] = password[::-1] if self.password_wrong else password

    # -- credentials changing hands ---------------------------------------------------------------
    def carried(self, kind: str, name: str, expired: bool, audience: str = "quay") -> Carried:
        world = self.world
        identity = world.identities[kind, name]
        now = int(time.time())
        # An expired JWT: issued two hours ago, gone an hour ago (past Quay's leeway too).
        times = {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600} if expired else {}
        if kind == "account":
            lifetime = -3600 if expired else 3600
            extra = {k: v for k, v in times.items() if k != "exp"}
            token = world.kube.mint(NAMESPACE, name, audience=audience, lifetime=lifetime, **extra)
        elif identity.second_issuer:
            key = world.kube.signing_key
            assert key is not None, "the second issuer has no signing key"
            token = key.sign(identity.subject, identity.issuer, [audience], times)
            leaks.known(token, "JWT of the second issuer")
        else:
            token = world.provider.mint(name, audience=audience, **times)
        return Carried(identity, token, expired, audience)

    def hand(self, where: str, carried: Carried | None) -> None:
        """Put ``carried`` in the token file ``where`` (None: remove it)."""
        path = self.home / "tok" if where == HOME_FILE else self.directory / where
        self.files[where] = carried
        if carried is None:
            path.unlink(missing_ok=True)
            return
        path.write_text(carried.token + "\n")
        path.chmod(0o600)

    # Each change of hands is followed by a pull that depends on it, as a new job's first pull.
    @rule(
        file=st.sampled_from((*FILES, *FILES, HOME_FILE)),
        holder=holders,
        expired=mostly_false,
        audience=st.sampled_from(CARRIED_AUDIENCES),
        pull=pulls,
    )
    def token_file_changes_hands(
        self, file: str, holder: tuple[str, str], expired: bool, audience: str, pull: Pull
    ) -> None:
        if file == HOME_FILE and "tilde" in PENDING:
            file = FILES[0]
        self.hand(file, self.carried(*holder, expired, audience))
        self.pull(pull, [r.key for r in REGISTRIES if r.carrier == file])

    @rule(
        file=st.sampled_from(FILES),
        turns=st.lists(holders, min_size=2, max_size=3),
        audience=st.sampled_from(CARRIED_AUDIENCES),
        which=st.integers(0, 3),
        down_before_last=st.booleans(),
    )
    def holders_take_turns(
        self,
        file: str,
        turns: list[tuple[str, str]],
        audience: str,
        which: int,
        down_before_last: bool,
    ) -> None:
        """One registry's robot asked for by one identity after another (the last, maybe,
        while its Quay is down): where a crossover between identities would show."""
        keys = [r.key for r in REGISTRIES if r.carrier == file]
        key = keys[which % len(keys)]
        for n, holder in enumerate(turns):
            if down_before_last and n == len(turns) - 1:
                self.set_down(BY_KEY[key].quay, True)
            self.hand(file, self.carried(*holder, False, audience))
            self.get_once(key, installed=False)

    @rule(
        file=st.sampled_from(FILES),
        holder=st.none() | holders,
        which=st.integers(0, 3),
        again=st.booleans(),
    )
    def token_expires(
        self, file: str, holder: tuple[str, str] | None, which: int, again: bool
    ) -> None:
        """The JWT in the file (``holder``'s, handed over first, or the one there) expires:
        time passes for the carrier between two pulls, the first of which cached its robot
        token. Where the fast path would still answer from the cache, the installed launcher
        (whose fast path answers without the package) is asked first."""
        keys = [r.key for r in REGISTRIES if r.carrier == file]
        key = keys[which % len(keys)]
        if holder is not None:
            self.hand(file, self.carried(*holder, False))
        held = self.files[file]
        if held is not None:
            self.get_once(key, installed=False)
            identity = held.identity
            self.hand(file, self.carried(identity.kind, identity.name, True, held.audience))
            hit = fastpath.cached_answer(key)
            if hit is not None and not hit[2]:
                self.get_once(key, installed=True)
        self.pull(Pull(which, again), [key])

    @rule(
        file=st.sampled_from(FILES),
        which=st.integers(0, 3),
        twin_first=st.booleans(),
        audience=st.sampled_from(CARRIED_AUDIENCES),
    )
    def same_sub_at_another_issuer(
        self, file: str, which: int, twin_first: bool, audience: str
    ) -> None:
        """job-1 of the realm and the second issuer's job with the same ``sub`` take turns."""
        keys = [r.key for r in REGISTRIES if r.carrier == file]
        key = keys[which % len(keys)]
        turns = [("job", TWIN), ("job", JOBS[0])]
        for holder in turns if twin_first else reversed(turns):
            self.hand(file, self.carried(*holder, False, audience))
            self.get_once(key, installed=False)

    @rule(file=st.sampled_from(FILES), pull=pulls)
    def token_file_removed(self, file: str, pull: Pull) -> None:
        self.hand(file, None)
        self.pull(pull, [r.key for r in REGISTRIES if r.carrier == file])

    @precondition(lambda self: "tilde" not in PENDING)
    @rule(
        number=st.integers(0, 2),
        previous=holders,
        following=holders,
        cwd_holds_previous=st.sampled_from((True, True, False)),
        pull=pulls,
    )
    def working_directory_moves(
        self,
        number: int,
        previous: tuple[str, str],
        following: tuple[str, str],
        cwd_holds_previous: bool,
        pull: Pull,
    ) -> None:
        """``$HOME/tok`` changes hands after a pull, while the helper runs from another
        directory, which holds a ``~/tok`` of its own (there ``~`` is a directory's name, not
        the home directory): the JWT of the previous holder, whose robot token is cached."""
        self.hand(HOME_FILE, self.carried(*previous, False))
        self.get_once("home-a.test", installed=False)
        where = self.directory / f"cwd-{number}"
        (where / "~").mkdir(parents=True, exist_ok=True)
        stranger = previous if cwd_holds_previous else following
        (where / "~" / "tok").write_text(self.carried(*stranger, False).token + "\n")
        os.chdir(where)
        self.hand(HOME_FILE, self.carried(*following, False))
        self.pull(pull, ["home-a.test"])

    @rule(holder=st.none() | holders, expired=mostly_false, pull=pulls)
    def variable_set(self, holder: tuple[str, str] | None, expired: bool, pull: Pull) -> None:
        if holder is None:
            os.environ.pop(TOKEN_ENV, None)
            self.variable = None
        else:
            audience = "quay-b" if holder[0] == "account" else "quay"
            self.variable = self.carried(*holder, expired, audience)
            os.environ[TOKEN_ENV] = self.variable.token
        self.pull(pull, [r.key for r in REGISTRIES if r.source == "env"])

    @rule(turns=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3), refusing=st.booleans())
    def password_source_names(self, turns: list[str], refusing: bool) -> None:
        """The password source names one person after another (the last, maybe, with a
        password the issuer refuses)."""
        for n, person in enumerate(turns):
            self.password_user = person
            self.password_wrong = refusing and n == len(turns) - 1
            self.write_config()
            self.get_once("people-a.test", installed=False)

    @rule(
        robots_a=st.sampled_from(ROBOT_LISTS),
        robots_b=st.sampled_from(ROBOT_LISTS),
        overrides_a=st.sampled_from(OVERRIDES[QUAY_A]),
        overrides_b=st.sampled_from(OVERRIDES[QUAY_B]),
        unannotated=st.sampled_from(("skip", "node", "refuse")),
    )
    def node_policy(
        self,
        robots_a: tuple[str, ...],
        robots_b: tuple[str, ...],
        overrides_a: tuple[str, ...],
        overrides_b: tuple[str, ...],
        unannotated: str,
    ) -> None:
        self.kubelet_robots = {QUAY_A: robots_a, QUAY_B: robots_b}
        self.overrides = {QUAY_A: overrides_a, QUAY_B: overrides_b}
        self.unannotated = unannotated
        self.write_config()

    # -- time and outages -------------------------------------------------------------------------
    @rule(quay=st.sampled_from((QUAY_A, QUAY_B)), age=st.sampled_from(AGES), pull=pulls)
    def quay_clock(self, quay: str, age: int, pull: Pull) -> None:
        """Quay's tokens are born ``age`` seconds old: the clock moves on for every token it
        issues, so the helper meets tokens inside their refresh-ahead window, or past their
        refresh point (which it mints again, and serves while Quay is down)."""
        born_aged(self.world.quays[quay], age)
        self.pull(pull, [r.key for r in REGISTRIES if r.quay == quay])

    @rule(quay=st.sampled_from((QUAY_A, QUAY_B)), lifetime=st.sampled_from(LIFETIMES), pull=pulls)
    def quay_token_lifetime(self, quay: str, lifetime: int, pull: Pull) -> None:
        """Quay issues tokens that claim to live ``lifetime`` seconds (Quay's own: an hour)."""
        self.world.quays[quay].set_token_lifetime(lifetime)
        self.pull(pull, [r.key for r in REGISTRIES if r.quay == quay])

    def set_down(self, quay: str, down: bool) -> None:
        self.world.quays[quay].set_down(down)
        self.down[quay] = down

    @rule(quay=st.sampled_from((QUAY_A, QUAY_B)), down=st.booleans(), pull=pulls)
    def quay_outage(self, quay: str, down: bool, pull: Pull) -> None:
        self.set_down(quay, down)
        self.pull(pull, [r.key for r in REGISTRIES if r.quay == quay])

    # -- people logging in and out ----------------------------------------------------------------
    @rule(person=st.sampled_from(PEOPLE), at=st.sampled_from(LOGIN_REGISTRIES), pull=pulls)
    def person_logs_in(self, person: str, at: str, pull: Pull) -> None:
        self.log_in(person, at)
        self.pull(pull, LOGIN_REGISTRIES)

    def log_in(self, person: str, at: str) -> None:
        """``login AT``: the device code shown is approved at the issuer by ``person``."""
        clock = StepClock()
        original = login_flow.device_login
        approver = Approver(self.world.realm, person)

        def device_login(context: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return original(context, approver, clock.sleep, clock)

        with patched(login_flow, "device_login", device_login):
            ran = run_in_process(["login", at], "")
        self.world.count("logins")
        assert "Traceback" not in ran.stderr + ran.stdout, ran
        registry = BY_KEY[at]
        identity = self.world.identities["login", f"{person}#{self.generation[person]}"]
        self.logged_in = identity
        if not self.down[registry.quay] and identity.federated(registry.quay, registry.robot):
            assert ran.code == 0, ran

    @rule(
        person=st.sampled_from(PEOPLE),
        first=st.sampled_from(LOGIN_REGISTRIES),
        at=st.sampled_from(LOGIN_REGISTRIES),
    )
    def username_given_to_another(self, person: str, first: str, at: str) -> None:
        """``person`` (logged in at ``first``, unless they are already) is deleted at the realm
        and someone else created with the username: another ``sub``, the same
        preferred_username. The newcomer logs in at ``at``; then every registry sharing the
        login is pulled, twice where the first left a hit (the second through the installed
        launcher), where the first person's tokens would show."""
        if self.logged_in is None or not self.logged_in.name.startswith(f"{person}#"):
            self.log_in(person, first)
        generation = min(self.generation[person] + 1, GENERATIONS - 1)
        self.generation[person] = generation
        self.world.realm.replace_user(login_user(person, generation))
        self.world.count("usernames_reused")
        self.log_in(person, at)
        for which in range(len(LOGIN_REGISTRIES)):
            self.pull(Pull(which, again=True), LOGIN_REGISTRIES)

    @rule(at=st.sampled_from(LOGIN_REGISTRIES), pull=pulls)
    def person_logs_out(self, at: str, pull: Pull) -> None:
        self.log_out(at)
        self.pull(pull, LOGIN_REGISTRIES)

    def log_out(self, at: str) -> None:
        ran = run_in_process(["logout", at], "")
        assert ran.code == 0, ran
        self.logged_in = None
        self.check_logged_out()

    def check_logged_out(self) -> None:
        """``logout`` erases the robot tokens of every registry sharing the login."""
        prefixes = [fastpath.key_file_prefix(key) for key in LOGIN_REGISTRIES]
        left = sorted(
            path.name
            for path in self.cache_dir.glob("*.token")
            if any(path.name.startswith(prefix) for prefix in prefixes)
        )
        assert not left, f"robot tokens of the login left after logout: {left}"

    @precondition(lambda self: "logout_race" not in PENDING)
    @rule(
        person=st.sampled_from(PEOPLE),
        refreshing=st.sampled_from(LOGIN_REGISTRIES),
        at=st.sampled_from(LOGIN_REGISTRIES),
    )
    def logout_while_refreshing_ahead(self, person: str, refreshing: str, at: str) -> None:
        """The refresh-ahead child of one registry is minting (Quay holds its exchange) while
        the person (logged in first if nobody is) logs out of another that shares the login."""
        registry = BY_KEY[refreshing]
        if self.logged_in is None:
            self.log_in(person, refreshing)
        emulator = self.world.quays[registry.quay]
        saved_age = getattr(emulator, "born_age", 0)
        born_aged(emulator, AGES[2])
        try:
            assert run_in_process(["erase"], refreshing).code == 0
            self.get_once(refreshing, installed=False)  # a token inside its ahead window
        finally:
            born_aged(emulator, saved_age)
        hit = fastpath.cached_answer(refreshing)
        if hit is None or not hit[2]:  # nobody's token to refresh ahead (Quay down, refused)
            self.log_out(at)
            return
        self.world.count("logout_races")
        attempted = emulator.counters_snapshot()["exchanges_attempted"]
        emulator.inject_fault("hang", seconds=0.25)
        request = RequestContext(TokenCache(self.cache_dir))
        child = threading.Thread(target=background.refresh, args=(refreshing, request), daemon=True)
        child.start()
        deadline = time.monotonic() + 10
        while emulator.counters_snapshot()["exchanges_attempted"] == attempted:
            assert time.monotonic() < deadline, "the refresh never reached Quay"
            time.sleep(0.01)
        self.log_out(at)
        child.join(timeout=15)
        assert not child.is_alive(), "the refresh-ahead child did not end"
        self.check_logged_out()

    @rule(key=st.sampled_from([r.key for r in REGISTRIES]), pull=pulls)
    def erase(self, key: str, pull: Pull) -> None:
        ran = run_in_process(["erase"], key)
        assert ran.code == 0, ran
        self.failed = {f for f in self.failed if f[0] != key}
        self.pull(pull, [key])

    # -- requests ---------------------------------------------------------------------------------
    def expect(
        self,
        what: str,
        key: str,
        robot: str,
        quay: str,
        identity: Identity | None,
        audience: str,
        usable: bool,
    ) -> Expectation:
        """What Quay would do for ``identity``'s credential (usable or not) at ``key``."""
        allowed = identity is not None and usable and identity.federated(quay, robot, audience)
        if identity is None:
            return Expectation(what, robot, quay, None, False, False)
        remembered = (key, robot, identity.name, audience)
        if self.down[quay]:
            self.failed.add(remembered)
        required = allowed and not self.down[quay] and remembered not in self.failed
        return Expectation(what, robot, quay, identity if usable else None, allowed, required)

    def expect_get(self, registry: Registry) -> Expectation:
        world = self.world
        identity: Identity | None = None
        usable = False
        audience = ""
        required = True
        if registry.source in ("file", "command", "env"):
            held = self.variable if registry.source == "env" else self.files[registry.carrier]
            if held is not None:
                identity, usable, audience = held.identity, not held.expired, held.audience
        elif registry.source == "password":
            identity, usable = world.identities["person", self.password_user], True
            # A JWT kept from an earlier grant may still serve; a refused grant is no answer.
            required = not self.password_wrong
        elif self.logged_in is not None:
            identity, usable = self.logged_in, True
            # a person deleted at the realm since has no session: only a kept token may serve
            person, _, generation = identity.name.partition("#")
            required = self.generation[person] == int(generation)
        found = self.expect(
            registry.key, registry.key, registry.robot, registry.quay, identity, audience, usable
        )
        if not required:
            return Expectation(found.what, found.robot, found.quay, found.identity, found.allowed,
                               False)  # fmt: skip
        return found

    @rule(pull=pulls)
    def get(self, pull: Pull) -> None:
        self.pull(pull, [r.key for r in REGISTRIES])

    def pull(self, pull: Pull, keys: Sequence[str]) -> None:
        """A client's get for one of ``keys`` (``pull.which`` picks it), and with
        ``pull.again`` a second one, as a pull of several layers asks again."""
        if pull.which is None or not keys:
            return
        key = keys[pull.which % len(keys)]
        self.get_once(key, installed=False)
        # The installed launcher answers a hit without the package: run it where one is on
        # disk (a miss there would only cost a process start to test what cli.main tests), but
        # not inside the refresh-ahead window, whose detached child would outlive the step.
        if pull.again:
            hit = fastpath.cached_answer(key)
            self.get_once(key, installed=hit is not None and not hit[2])

    def get_once(self, key: str, installed: bool) -> None:
        expectation = self.expect_get(BY_KEY[key])
        if installed:
            self.world.count("installed_runs")
            env = {CONFIG_ENV: str(self.config_path), CACHE_ENV: str(self.cache_dir)}
            if self.variable is not None:
                env[TOKEN_ENV] = self.variable.token
            result = run_helper("get", key, env=env)
            ran = Ran(result.returncode, result.stdout, result.stderr)
        else:
            ran = run_in_process(["get"], key)
        self.world.count("gets")
        if expectation.allowed:
            self.world.count("gets_servable")
        assert "Traceback" not in ran.stderr + ran.stdout, ran
        if ran.code == 0:
            answer = json.loads(ran.stdout)
            assert answer["ServerURL"] == key, ran
            self.served.append(Served(expectation, answer["Username"], answer["Secret"]))
        else:
            assert ran.code == 1 and "credentials not found" in ran.stdout, ran
            assert not expectation.required, f"no answer where Quay would issue: {expectation}"

    @rule(
        image_host=st.sampled_from((QUAY_A, QUAY_A, QUAY_B, QUAY_B, "other.test")),
        accounts=st.permutations(ACCOUNTS),
        pods=st.integers(1, 3),
        right_audience=st.sampled_from((True, True, True, False)),
        expired=mostly_false,
        robot=st.sampled_from(("", ALPHA, ALPHA, ALPHAX, ALPHAX, BETA)),
        override=st.sampled_from(("", "", "", QUAY_A, QUAY_B)),
        robots=st.none() | st.sampled_from(ROBOT_LISTS),
    )
    def kubelet_request(
        self,
        image_host: str,
        accounts: list[str],
        pods: int,
        right_audience: bool,
        expired: bool,
        robot: str,
        override: str,
        robots: tuple[str, ...] | None,
    ) -> None:
        """Pods of one or more service accounts pull one image, one after another; first,
        maybe, the node's allow-list for the image's host changes (robot names are drawn
        beside its patterns: org+alphax beside org+alpha)."""
        if robots is not None and image_host in self.kubelet_robots:
            self.kubelet_robots[image_host] = robots
            self.write_config()
        accounts = accounts[:pods]
        node = override if robot and override and override != image_host else image_host
        audience = AUDIENCES.get(node, AUDIENCES[QUAY_A])
        if not right_audience:
            audience = next(a for a in AUDIENCES.values() if a != audience)
        for account in accounts:
            self.kubelet_once(image_host, account, audience, expired, robot, override)

    @rule(
        image_host=st.sampled_from((QUAY_A, QUAY_A, QUAY_B)),
        accounts=st.permutations(ACCOUNTS),
        robots_asked=st.permutations((ALPHA, ALPHAX, BETA)),
        robots=st.sampled_from(NEAR_LISTS),
        lifetime=st.sampled_from((3600, 36000)),
        override=st.sampled_from(("", "", QUAY_A, QUAY_B)),
    )
    def pods_take_turns(
        self,
        image_host: str,
        accounts: list[str],
        robots_asked: list[str],
        robots: tuple[str, ...],
        lifetime: int,
        override: str,
    ) -> None:
        """Pods of every service account ask for each robot in turn (org+alpha, org+alphax and
        org+beta: names beside one another) at one Quay (maybe another through a host
        override), with tokens the node takes (that Quay's audience, unexpired): only the
        node's tables (the allow-list set first to patterns beside the robots' names) and Quay
        (issuing tokens of ``lifetime``) decide."""
        node = override or image_host
        self.world.quays[node].set_token_lifetime(lifetime)
        self.kubelet_robots[image_host] = robots
        self.write_config()
        for robot in robots_asked:
            for account in accounts:
                self.kubelet_once(image_host, account, AUDIENCES[node], False, robot, override)

    def kubelet_once(
        self, image_host: str, account: str, audience: str, expired: bool, robot: str,
        override: str,
    ) -> None:  # fmt: skip
        pod = self.carried("account", account, expired, audience)
        annotations = {}
        if robot:
            annotations["quay.io/federated-robot-account"] = robot
        if override:
            annotations["quay.io/host-override"] = override
        request = json.dumps(
            {
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "kind": "CredentialProviderRequest",
                "image": f"{image_host}/team/app:1",
                "serviceAccountToken": pod.token,
                "serviceAccountAnnotations": annotations,
            }
        )
        expectation = self.expect_kubelet(image_host, pod, robot, override)
        ran = kubelet_in_process(request, self.config_path, self.cache_dir)
        self.world.count("kubelet_requests")
        if expectation is not None and expectation.identity is not None:
            self.world.count("kubelet_past_filters")
        if expectation is not None and expectation.allowed:
            self.world.count("kubelet_servable")
        assert "Traceback" not in ran.stderr, ran
        if ran.code != 0:
            assert ran.stdout == "", ran
            assert expectation is None or not expectation.required, (
                f"no answer where Quay would issue: {expectation}: {ran.stderr}"
            )
            return
        response = json.loads(ran.stdout)
        auth = response.get("auth")
        if expectation is None or not auth:
            assert not auth, f"credentials where none may be given: {ran.stdout[:200]}"
            assert expectation is None or not expectation.required, expectation
            return
        credentials = auth[image_host]
        self.served.append(Served(expectation, credentials["username"], credentials["password"]))
        kept = go_seconds(response["cacheDuration"])
        assert kept <= fastpath.MAX_ROBOT_TOKEN_LIFETIME, (
            f"the kubelet keeps the credential {response['cacheDuration']}, longer than any "
            f"robot token may serve: {expectation}"
        )

    def expect_kubelet(
        self, image_host: str, pod: Carried, robot: str, override: str
    ) -> Expectation | None:
        """What the node's policy and Quay say; None: an answer without credentials is right."""
        refused = Expectation("kubelet", robot or "-", image_host, None, False, False)
        if image_host not in AUDIENCES:
            return refused
        if not robot:
            if pod.expired or pod.audience != AUDIENCES[image_host]:
                return refused
            policy = self.unannotated if image_host == QUAY_A else "skip"
            if policy == "skip":
                return None
            if policy == "node":
                return self.expect_get(BY_KEY[QUAY_A])
            return refused
        node = image_host
        if override and override != image_host:
            if override not in self.overrides[image_host]:
                return refused
            node = override
        for table in {image_host, node}:
            patterns = self.kubelet_robots[table]
            if patterns and not any(fnmatch.fnmatchcase(robot, p) for p in patterns):
                return refused
        usable = not pod.expired and pod.audience == AUDIENCES[node]
        return self.expect("kubelet", node, robot, node, pod.identity, pod.audience, usable)

    # -- the property -----------------------------------------------------------------------------
    @invariant()
    def served_only_to_whom_quay_issued(self) -> None:
        self.world.count("checks")
        served, self.served = self.served, []
        for answer in served:
            self.world.count("served_checked")
            expected = answer.expectation
            said = f"{expected}: served {answer.username}"
            assert expected.identity is not None, f"an answer for nobody usable: {said}"
            assert answer.username == expected.robot, said
            issued = self.world.quays[expected.quay].issued_to(answer.token)
            whom = {(f.robot, f.issuer, f.subject) for f in issued}
            identity = expected.identity
            assert (expected.robot, identity.issuer, identity.subject) in whom, (
                f"{said}, a token Quay {expected.quay} issued to {sorted(whom) or 'nobody'}"
            )
            assert expected.allowed, f"an answer Quay would not issue now: {said}"
            expires = claims.numeric_claim(claims.unverified_claims(answer.token), "exp")
            assert expires is not None and expires > time.time(), f"an expired token: {said}"


def go_seconds(duration: str) -> float:
    """A Go duration as the provider writes it (``1h2m3s``, ``55m0s``, ``0s``) in seconds."""
    found = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert found and duration, f"not a duration: {duration!r}"
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


def _quiet_retries() -> types.SimpleNamespace:
    """``transport``'s view of ``time`` with retries that do not wait (Quay down answers 503,
    which the helper retries with backoff; the run cannot afford the waits)."""
    return types.SimpleNamespace(**{**vars(time), "sleep": lambda seconds: None})


def _refresh_ahead_in_process(host: str, request: Callable[[], RequestContext]) -> None:
    """The detached refresh-ahead child, in this process: run to its end at once (a fork of
    the test process would carry its servers' threads)."""
    background.refresh(host, request())


def test_an_answer_goes_only_to_whom_quay_would_issue_it(world: World) -> None:
    Isolation.world = world
    world.figures.clear()
    started = time.monotonic()
    failures = 0
    run_settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        phases=[phase for phase in Phase if SHRINK or phase not in (Phase.shrink, Phase.explain)],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    try:
        with (
            patched(transport, "time", _quiet_retries()),
            patched(background, "start_refresh", _refresh_ahead_in_process),
        ):
            run_state_machine_as_test(Isolation, settings=run_settings)
    except AssertionError:
        failures = 1
        raise
    finally:
        figures = world.figures
        record(
            "isolation",
            examples=figures.get("examples", 0),
            # The invariant runs once after each example's start and once after each step.
            steps=figures.get("checks", 0) - figures.get("examples", 0),
            gets=figures.get("gets", 0),
            installed_runs=figures.get("installed_runs", 0),
            kubelet_requests=figures.get("kubelet_requests", 0),
            kubelet_past_filters=figures.get("kubelet_past_filters", 0),
            served_checked=figures.get("served_checked", 0),
            logins=figures.get("logins", 0),
            logout_races=figures.get("logout_races", 0),
            usernames_reused=figures.get("usernames_reused", 0),
            seconds=round(time.monotonic() - started, 1),
            failures=failures,
        )
    assert figures.get("served_checked", 0) > 0, "no answer was served: nothing was checked"
