"""Isolation as a property: an answer is served for an identity only if Quay would issue that
robot's token to that identity now.

A hypothesis state machine runs the real helper (``cli.main`` and ``kubelet.answer`` in this
process, and now and then the installed executables, whose launcher answers a hit on its own)
against the nanoidp realm, the Kubernetes-like issuer and two Quay emulators. It draws who holds
each credential: token files and a variable that change hands between CI jobs and service
accounts, a person named by a password source, people logging in and out of registries that
share one login, JWTs that have expired, the node's kubelet policy, and kubelet requests with
annotations, overrides and audiences. Every answer is checked against what the emulator
recorded: the robot token served for identity X was issued by the right Quay, for that robot,
to X's ``iss`` and ``sub``; X's federation allows it; X's credential is usable now; and for the
kubelet the node's tables allowed it. Where the model says Quay would issue, an answer must
come (so the property cannot hold by refusing everything).

``$QUAYFED_ISOLATION_EXAMPLES`` sets the examples (default 300); the run records
``isolation`` figures through :mod:`tests.support.records`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from docker_credential_quayfed import actions, cli, config, fastpath, log, logins
from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.errors import QuayfedError
from docker_credential_quayfed.kubelet import answer as kubelet_answer
from docker_credential_quayfed.request import RequestContext
from docker_credential_quayfed.sources import BY_NAME
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.helper_process import run_helper
from tests.support import leaks, trusting
from tests.support.oidc_provider import KubeIssuer, OIDCProvider
from tests.support.records import record

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("QUAYFED_ISOLATION_EXAMPLES", "300"))
STEPS = 8

ALPHA, BETA = "org+alpha", "org+beta"
QUAY_A, QUAY_B = "quay-a.test", "quay-b.test"
PEOPLE = ("jdoe", "alice")
JOBS = ("job-1", "job-2", "job-3")
ACCOUNTS = ("sa1", "sa2", "sa3")
NAMESPACE = "apps"
#: who each robot's federation names, per Quay: (kind, name) with kind person, job or account
FEDERATION: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    (QUAY_A, ALPHA): (("person", "jdoe"), ("job", "job-1"), ("job", "job-2"), ("account", "sa1"),
                      ("account", "sa2")),
    (QUAY_A, BETA): (("person", "alice"), ("job", "job-2"), ("job", "job-3"), ("account", "sa2"),
                     ("account", "sa3")),
    (QUAY_B, ALPHA): (("person", "alice"), ("job", "job-1"), ("account", "sa1"),
                      ("account", "sa3")),
}  # fmt: skip
AUDIENCES = {QUAY_A: "quay-a", QUAY_B: "quay-b"}

TOKEN_ENV = "QUAYFED_ISOLATION_JOB_JWT"
PASSWORD_ENV = "QUAYFED_ISOLATION_PASSWORD"
CONFIG_ENV = "DOCKER_CREDENTIAL_QUAYFED_CONFIG"
CACHE_ENV = "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"
#: the token files that change hands (the first also answers for the node's own identity)
FILES = ("job.jwt", "other.jwt")


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
    Registry("ci-b.test", ALPHA, QUAY_B, "env"),
    Registry("people-a.test", ALPHA, QUAY_A, "password"),
    Registry("login-a.test", ALPHA, QUAY_A, "device"),
    Registry("login-beta.test", BETA, QUAY_A, "device"),
    Registry("login-b.test", ALPHA, QUAY_B, "device"),
)
BY_KEY = {registry.key: registry for registry in REGISTRIES}
LOGIN_REGISTRIES = tuple(r.key for r in REGISTRIES if r.source == "device")
ROBOT_LISTS = ((), (ALPHA,), (BETA,), ("org+*",), ("other+*",))


@dataclass(frozen=True)
class Identity:
    """Whom a credential names: the Quay-visible ``iss`` and ``sub``, and the model's name."""

    kind: str
    name: str
    issuer: str
    subject: str

    def federated(self, quay: str, robot: str) -> bool:
        return (self.kind, self.name) in FEDERATION.get((quay, robot), ())


@dataclass(frozen=True)
class Carried:
    """A JWT in a file or a variable: whose it is, and whether it is still valid."""

    identity: Identity
    token: str
    expired: bool
    audience: str = ""


@dataclass
class World:
    """The servers, started once for the module: a run cannot afford them per example."""

    provider: OIDCProvider
    kube: KubeIssuer
    quays: dict[str, QuayEmulator]
    ca_bundle: Path
    identities: dict[tuple[str, str], Identity] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.figures[name] = self.figures.get(name, 0) + by


@pytest.fixture(scope="module")
def world(
    oidc_provider: OIDCProvider, kube_issuer: KubeIssuer, test_pki: TestPKI
) -> Iterator[World]:
    quays: dict[str, QuayEmulator] = {}
    servers = []
    for host in (QUAY_A, QUAY_B):
        emulator = QuayEmulator(ca_bundle=test_pki.ca_cert)
        servers.append(emulator.start(pki=test_pki))
        quays[host] = emulator
    identities: dict[tuple[str, str], Identity] = {}
    for person in PEOPLE:
        identities["person", person] = Identity("person", person, oidc_provider.issuer, person)
    for job in JOBS:
        identities["job", job] = Identity("job", job, oidc_provider.issuer, job)
    for account in ACCOUNTS:
        subject = f"system:serviceaccount:{NAMESPACE}:{account}"
        identities["account", account] = Identity("account", account, kube_issuer.issuer, subject)
    for (host, robot), names in FEDERATION.items():
        entries = [(identities[n].issuer, identities[n].subject) for n in names]
        quays[host].add_robot(robot, federation=entries)
    try:
        yield World(oidc_provider, kube_issuer, quays, test_pki.ca_cert, identities)
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


# -- what a request was made as, and what Quay would do -------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """A request on behalf of ``identity`` (None: nobody usable) for ``robot`` at ``quay``;
    ``issuable``: Quay would issue it now and the node's policy allows it."""

    what: str
    robot: str
    quay: str
    identity: Identity | None
    issuable: bool


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


pulls = st.builds(Pull, which=st.none() | st.integers(0, len(REGISTRIES) - 1), again=st.booleans())


class Isolation(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        world.count("examples")
        # Each example is a process of its own: the secrets it registers for redaction go
        # with it (they would otherwise pile up, and every printed line is checked against all).
        self.saved_log = (set(log._raw), set(log._encoded), set(log._said))
        self.directory = Path(tempfile.mkdtemp(prefix="quayfed-isolation-"))
        self.cache_dir = self.directory / "cache"
        self.config_path = self.directory / "config.toml"
        self.files: dict[str, Carried | None] = dict.fromkeys(FILES)
        self.variable: Carried | None = None
        self.password_user = PEOPLE[0]
        self.logged_in: str | None = None
        self.kubelet_robots: dict[str, tuple[str, ...]] = {QUAY_A: (), QUAY_B: ()}
        self.overrides: tuple[str, ...] = (QUAY_B,)
        self.unannotated = "skip"
        self.served: list[Served] = []
        self.saved_env = {n: os.environ.get(n) for n in (CONFIG_ENV, CACHE_ENV, TOKEN_ENV)}
        self.saved_env[PASSWORD_ENV] = os.environ.get(PASSWORD_ENV)
        os.environ[CONFIG_ENV] = str(self.config_path)
        os.environ[CACHE_ENV] = str(self.cache_dir)
        os.environ.pop(TOKEN_ENV, None)
        self.write_config()

    def teardown(self) -> None:
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
                table.update(source="file", token_file=str(self.directory / registry.carrier))
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
                    table.update(scope="openid offline_access")
            lines.append(f"[registries.{json.dumps(registry.key)}]")
            lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
        for host, quay in world.quays.items():
            lines.append(f"[kubelet.{json.dumps(host)}]")
            lines.append(f"audience = {json.dumps(AUDIENCES[host])}")
            lines.append(f"quay_url = {json.dumps(str(quay.url))}")
            lines.append(f"ca_bundle = {ca}")
            lines.append(f"robots = {json.dumps(list(self.kubelet_robots[host]))}")
            if host == QUAY_A:
                lines.append(f"allow_override_to = {json.dumps(list(self.overrides))}")
                lines.append(f"unannotated = {json.dumps(self.unannotated)}")
        self.config_path.write_text("\n".join(lines) + "\n")
        os.environ[PASSWORD_ENV] = self.world.provider.users[self.password_user]

    # -- credentials changing hands ---------------------------------------------------------------
    def carried(self, kind: str, name: str, expired: bool, audience: str = "") -> Carried:
        world = self.world
        identity = world.identities[kind, name]
        now = int(time.time())
        # An expired JWT: issued two hours ago, gone an hour ago (past Quay's leeway too).
        times = {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600} if expired else {}
        if kind == "account":
            lifetime = -3600 if expired else 3600
            extra = {k: v for k, v in times.items() if k != "exp"}
            token = world.kube.mint(
                NAMESPACE, name, audience=audience or "quay", lifetime=lifetime, **extra
            )
        else:
            token = world.provider.mint(name, audience=audience or "quay", **times)
        return Carried(identity, token, expired, audience)

    carriers = st.one_of(
        st.tuples(st.just("job"), st.sampled_from(JOBS)),
        st.tuples(st.just("account"), st.sampled_from(ACCOUNTS)),
    )

    # Each change of hands is followed by a pull that depends on it, as a new job's first pull.
    @rule(file=st.sampled_from(FILES), holder=carriers, expired=st.booleans(), pull=pulls)
    def token_file_changes_hands(
        self, file: str, holder: tuple[str, str], expired: bool, pull: Pull
    ) -> None:
        carried = self.carried(*holder, expired)
        path = self.directory / file
        path.write_text(carried.token + "\n")
        path.chmod(0o600)
        self.files[file] = carried
        self.pull(pull, [r.key for r in REGISTRIES if r.carrier == file])

    @rule(file=st.sampled_from(FILES), pull=pulls)
    def token_file_removed(self, file: str, pull: Pull) -> None:
        (self.directory / file).unlink(missing_ok=True)
        self.files[file] = None
        self.pull(pull, [r.key for r in REGISTRIES if r.carrier == file])

    @rule(holder=st.none() | carriers, expired=st.booleans(), pull=pulls)
    def variable_set(self, holder: tuple[str, str] | None, expired: bool, pull: Pull) -> None:
        if holder is None:
            os.environ.pop(TOKEN_ENV, None)
            self.variable = None
        else:
            self.variable = self.carried(*holder, expired)
            os.environ[TOKEN_ENV] = self.variable.token
        self.pull(pull, [r.key for r in REGISTRIES if r.source == "env"])

    @rule(person=st.sampled_from(PEOPLE), pull=pulls)
    def password_source_names(self, person: str, pull: Pull) -> None:
        self.password_user = person
        self.write_config()
        self.pull(pull, [r.key for r in REGISTRIES if r.source == "password"])

    @rule(
        robots_a=st.sampled_from(ROBOT_LISTS),
        robots_b=st.sampled_from(ROBOT_LISTS),
        overrides=st.sampled_from(((), (QUAY_B,))),
        unannotated=st.sampled_from(("skip", "node", "refuse")),
    )
    def node_policy(
        self,
        robots_a: tuple[str, ...],
        robots_b: tuple[str, ...],
        overrides: tuple[str, ...],
        unannotated: str,
    ) -> None:
        self.kubelet_robots = {QUAY_A: robots_a, QUAY_B: robots_b}
        self.overrides = overrides
        self.unannotated = unannotated
        self.write_config()

    @rule(person=st.sampled_from(PEOPLE), at=st.sampled_from(LOGIN_REGISTRIES), pull=pulls)
    def person_logs_in(self, person: str, at: str, pull: Pull) -> None:
        """What ``login`` leaves on disk: the person's refresh token, for the shared login."""
        world = self.world
        response = httpx.post(
            world.provider.token_endpoint,
            data={
                "grant_type": "password",
                "client_id": world.provider.public_client,
                "username": person,
                "password": world.provider.users[person],
                "scope": "openid offline_access",
            },
            verify=trusting(world.ca_bundle),
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        leaks.known(body["refresh_token"], "refresh token of a login")
        registry = config.load(BY_NAME, self.config_path).registries[at]
        login = logins.from_token_response(registry, body, body["id_token"], time.time())
        assert login is not None, "nanoidp gave no refresh token"
        logins.write(TokenCache(self.cache_dir), registry, login)
        self.logged_in = person
        self.pull(pull, LOGIN_REGISTRIES)

    @rule(at=st.sampled_from(LOGIN_REGISTRIES), pull=pulls)
    def person_logs_out(self, at: str, pull: Pull) -> None:
        ran = run_in_process(["logout", at], "")
        assert ran.code == 0, ran
        self.logged_in = None
        self.pull(pull, LOGIN_REGISTRIES)

    @rule(key=st.sampled_from([r.key for r in REGISTRIES]), pull=pulls)
    def erase(self, key: str, pull: Pull) -> None:
        ran = run_in_process(["erase"], key)
        assert ran.code == 0, ran
        self.pull(pull, [key])

    # -- requests ---------------------------------------------------------------------------------
    def expect_get(self, registry: Registry) -> Expectation:
        world = self.world
        identity: Identity | None = None
        usable = False
        if registry.source in ("file", "command", "env"):
            held = self.variable if registry.source == "env" else self.files[registry.carrier]
            if held is not None:
                identity, usable = held.identity, not held.expired
        elif registry.source == "password":
            identity, usable = world.identities["person", self.password_user], True
        elif self.logged_in is not None:
            identity, usable = world.identities["person", self.logged_in], True
        issuable = identity is not None and usable
        issuable = (
            issuable and identity is not None and identity.federated(registry.quay, registry.robot)
        )
        return Expectation(registry.key, registry.robot, registry.quay, identity, issuable)

    @rule(pull=pulls)
    def get(self, pull: Pull) -> None:
        self.pull(pull, [r.key for r in REGISTRIES])

    def pull(self, pull: Pull, keys: Sequence[str]) -> None:
        """A client's get for one of ``keys`` (``pull.which`` picks it; None: no pull), and
        with ``pull.again`` a second one, as a pull of several layers asks again."""
        if pull.which is None:
            return
        key = keys[pull.which % len(keys)]
        self.get_once(key, installed=False)
        # The installed launcher answers a hit without the package: run it where one is on
        # disk (a miss there would only cost a process start to test what cli.main tests).
        if pull.again:
            self.get_once(key, installed=fastpath.cached_answer(key) is not None)

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
        assert "Traceback" not in ran.stderr + ran.stdout, ran
        if ran.code == 0:
            answer = json.loads(ran.stdout)
            assert answer["ServerURL"] == key, ran
            self.served.append(Served(expectation, answer["Username"], answer["Secret"]))
        else:
            assert ran.code == 1 and "credentials not found" in ran.stdout, ran
            assert not expectation.issuable, f"no answer where Quay would issue: {expectation}"

    @rule(
        image_host=st.sampled_from((QUAY_A, QUAY_B, "other.test")),
        account=st.sampled_from(ACCOUNTS),
        audience=st.sampled_from(tuple(AUDIENCES.values())),
        expired=st.booleans(),
        robot=st.sampled_from(("", ALPHA, BETA)),
        override=st.sampled_from(("", QUAY_A, QUAY_B)),
    )
    def kubelet_request(
        self,
        image_host: str,
        account: str,
        audience: str,
        expired: bool,
        robot: str,
        override: str,
    ) -> None:
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
        assert "Traceback" not in ran.stderr, ran
        if ran.code != 0:
            assert ran.stdout == "", ran
            assert expectation is None or not expectation.issuable, (
                f"no answer where Quay would issue: {expectation}: {ran.stderr}"
            )
            return
        response = json.loads(ran.stdout)
        auth = response.get("auth")
        if expectation is None or not auth:
            assert not auth, f"credentials where none may be given: {ran.stdout[:200]}"
            assert expectation is None or not expectation.issuable, expectation
            return
        credentials = auth[image_host]
        self.served.append(Served(expectation, credentials["username"], credentials["password"]))

    def expect_kubelet(
        self, image_host: str, pod: Carried, robot: str, override: str
    ) -> Expectation | None:
        """What the node's policy and Quay say; None: an answer without credentials is right."""
        refused = Expectation("kubelet", robot or "-", image_host, None, False)
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
            if image_host != QUAY_A or override not in self.overrides:
                return refused
            node = override
        for table in {image_host, node}:
            patterns = self.kubelet_robots[table]
            if patterns and not any(fnmatch.fnmatchcase(robot, p) for p in patterns):
                return refused
        usable = not pod.expired and pod.audience == AUDIENCES[node]
        issuable = usable and pod.identity.federated(node, robot)
        return Expectation("kubelet", robot, node, pod.identity if usable else None, issuable)

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
            assert expected.issuable, f"an answer Quay would not issue now: {said}"


def test_an_answer_goes_only_to_whom_quay_would_issue_it(world: World) -> None:
    Isolation.world = world
    for emulator in world.quays.values():
        emulator.reset()
    started = time.monotonic()
    failures = 0
    try:
        run_state_machine_as_test(
            Isolation,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
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
            served_checked=figures.get("served_checked", 0),
            seconds=round(time.monotonic() - started, 1),
            failures=failures,
        )
    assert figures.get("served_checked", 0) > 0, "no answer was served: nothing was checked"
