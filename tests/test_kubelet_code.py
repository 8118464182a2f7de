"""The kubelet's own Go code runs this package's provider: pkg/credentialprovider/plugin of
k8s.io/kubernetes, at each release pinned in tests/kubelet_code/ (go.mod and k8s-*.mod), loads
the shipped packaging/kubernetes/*/credential-providers.yaml with its own strict decoding and
validation, execs the provider from a bin directory and looks images up as the kubelet does
before a pull (tests/kubelet_code/main.go). This test plays the API server: it answers the
kubelet's service-account and token requests, minting tokens with the test's Kubernetes issuer
for the audience the kubelet asks for; Quay is the emulator.

The Kubernetes 1.33 release (k8s-1.33.mod) runs only the cases of the 1.33
CredentialProviderConfig (one-quay/credential-providers-1.33.yaml, with the alpha feature gate
on); every other case runs for every later pinned release and every form of the provider: the
installed launcher, the single-file zipapp and, when $QUAYFED_FROZEN_PROVIDER names it (CI
builds it), the self-contained executable. The Go program is built with the go command
(cached by Go, or taken from $QUAYFED_KUBELET_CODE_DIR, where .ci/kubelet-code.sh builds it);
without Go, or when the module proxy cannot be reached, the tests skip, and under CI=true they
fail.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from docker_credential_quayfed import claims, kubelet
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.support import go_command, leaks, unavailable
from tests.support.oidc_provider import KubeIssuer
from tests.support.scripts import load_script

pytestmark = [pytest.mark.kubelet_code, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "kubelet_code"
MANIFESTS = ROOT / "packaging" / "kubernetes"
PROVIDER = kubelet.PROGRAM
PARTNER = f"{PROVIDER}-partner"
QUAY = "quay.example.com"
PARTNER_QUAY = "quay.partner.example"
MIRROR = "mirror.example.com"
BUILD_DIR_ENV = "QUAYFED_KUBELET_CODE_DIR"
FROZEN_ENV = "QUAYFED_FROZEN_PROVIDER"
#: one answer from the Go program; the kubelet itself gives a provider one minute
ANSWER_SECONDS = 90.0
BUILD_SECONDS = 1800.0
SHIPPED_CONFIG = "/etc/docker-credential-quayfed/config.toml"
SHIPPED_CACHE = "/var/cache/quay-credential-provider"
SHIPPED_CA = "/etc/pki/tls/certs/quay-ca.pem"


# -- the Go program, one per pinned release -------------------------------------------------------
def releases() -> dict[str, Path]:
    """Each pinned k8s.io/kubernetes release and the go.mod file that pins it."""
    pinned = {}
    for modfile in sorted(PROGRAM.glob("*.mod")):
        match = re.search(r"^\s*k8s\.io/kubernetes (v[0-9.]+)$", modfile.read_text(), re.M)
        assert match, f"{modfile.name} pins no k8s.io/kubernetes"
        pinned[match.group(1)] = modfile
    return pinned


RELEASES = releases()
#: releases where service-account tokens for providers are alpha (feature gate off by default)
#: and tokenAttributes has no cacheType: only the 1.33 CredentialProviderConfig runs there
ALPHA_RELEASES = sorted(r for r in RELEASES if r.startswith("v1.33."))
FULL_RELEASES = sorted(set(RELEASES) - set(ALPHA_RELEASES))
ALPHA_GATE = "KubeletServiceAccountTokenForCredentialProviders=true"


def build(release: str, output: Path) -> None:
    """go build the program against ``release`` (GOFLAGS=-mod=mod: go.sum files are committed,
    and a module missing from them is fetched rather than refused)."""
    go = go_command()
    if go is None:
        unavailable("no go command (Go 1.24+ builds the kubelet's code for these tests)")
    assert go is not None
    modfile = RELEASES[release]
    command = [go, "build", "-buildvcs=false", "-o", str(output)]
    if modfile.name != "go.mod":
        command.append(f"-modfile={modfile.name}")
    done = subprocess.run(
        [*command, "."],
        cwd=PROGRAM,
        capture_output=True,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        timeout=BUILD_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        unavailable(f"go build of the kubelet's code at {release} failed: {last}")


@pytest.fixture(scope="session", params=FULL_RELEASES)
def kubelet_code(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go program built against one pinned release of k8s.io/kubernetes (1.34 and later)."""
    return program(str(request.param), tmp_path_factory)


@pytest.fixture(scope="session", params=ALPHA_RELEASES)
def alpha_kubelet_code(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The Go program built against the pinned Kubernetes 1.33 release."""
    return program(str(request.param), tmp_path_factory)


def program(release: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get(BUILD_DIR_ENV, "").strip()
    if prebuilt and (Path(prebuilt) / f"kubelet-code-{release}").exists():
        return Path(prebuilt) / f"kubelet-code-{release}"
    output = tmp_path_factory.mktemp("kubelet-code") / f"kubelet-code-{release}"
    build(release, output)
    return output


# -- the provider, in each of its forms -----------------------------------------------------------
@dataclass(frozen=True)
class Executable:
    """A form of quay-credential-provider; ``link_args`` go first in the args of an entry whose
    name is a link (the single file decides what to run by its own name)."""

    form: str
    path: Path
    link_args: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = load_script(ROOT / "packaging" / "build_zipapp.py")
    try:
        resolver = builder.find_oldest_python()
    except builder.BuildError as exc:
        unavailable(f"the zipapp cannot be built: {exc}")
    output = tmp_path_factory.mktemp("zipapp") / "docker-credential-quayfed"
    assert builder.main(["--output", str(output), "--resolve-with", resolver]) == 0
    return output


@pytest.fixture(scope="session", params=["launcher", "zipapp", "frozen"])
def executable(request: pytest.FixtureRequest) -> Executable:
    form = str(request.param)
    if form == "launcher":
        path = Path(sys.executable).with_name(PROVIDER)
        if not path.exists():
            pytest.fail(f"{PROVIDER} is not installed next to {sys.executable}")
        return Executable(form, path)
    if form == "zipapp":
        return Executable(form, request.getfixturevalue("zipapp"))
    chosen = os.environ.get(FROZEN_ENV, "").strip()
    if not chosen:
        unavailable(f"${FROZEN_ENV} names no self-contained provider (packaging/build_frozen.py)")
    path = Path(chosen).resolve()
    assert os.access(path, os.X_OK), f"${FROZEN_ENV}={chosen} is not an executable"
    return Executable(form, path)


def install(bin_dir: Path, executable: Executable, *links: str) -> Path:
    """The kubelet's --image-credential-provider-bin-dir: the provider under its name, and each
    further name a link to it (docs/kubelet.md, "Two or more Quays")."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / PROVIDER).symlink_to(executable.path)
    for name in links:
        if "/" not in name and name not in (".", ".."):  # the kubelet refuses such names
            (bin_dir / name).symlink_to(PROVIDER)
    return bin_dir


# -- the API server's part: service accounts and their tokens -------------------------------------
@dataclass
class ServiceAccount:
    namespace: str
    name: str
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass(frozen=True)
class TokenRequest:
    """What the kubelet asked the API server for."""

    account: str
    audiences: tuple[str, ...]
    bound_pod: str


class APIServer:
    """Answers the kubelet's questions: a service account's UID and annotations, and a token
    for it, minted by the test's Kubernetes issuer for the audiences the kubelet asks for."""

    def __init__(self, issuer: KubeIssuer) -> None:
        self.issuer = issuer
        self.accounts: dict[tuple[str, str], ServiceAccount] = {}
        self.token_requests: list[TokenRequest] = []
        #: 1.34 and later name the service account's UID in a token request; 1.33 does not
        self.uid_in_token_requests = True

    def add(self, namespace: str, name: str, robot: str | None = None) -> ServiceAccount:
        annotations = {kubelet.ROBOT_ANNOTATION: robot} if robot else {}
        account = ServiceAccount(namespace, name, annotations)
        self.accounts[(namespace, name)] = account
        return account

    def answer(self, question: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts.get((question["namespace"], question["name"]))
        if account is None:
            return {"error": f"serviceaccount {question['namespace']}/{question['name']}"}
        if question["ask"] == "serviceAccount":
            return {"serviceAccount": {"uid": account.uid, "annotations": account.annotations}}
        assert question["ask"] == "token", question
        expected_uid = account.uid if self.uid_in_token_requests else ""
        assert question["uid"] == expected_uid, "the kubelet asks for the account it was given"
        bound = question["boundObject"]
        assert bound["kind"] == "Pod", bound
        audiences = tuple(question["audiences"])
        self.token_requests.append(
            TokenRequest(f"{account.namespace}/{account.name}", audiences, bound["name"])
        )
        token = self.issuer.mint(account.namespace, account.name, audience=list(audiences))
        return {"token": token}


# -- the kubelet ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credential:
    username: str
    password: str


@dataclass(frozen=True)
class Lookup:
    """What the kubelet's keyring returned for one image, and its provider metrics after it."""

    repository: str
    credentials: list[Credential]
    runs: dict[str, int]
    errors: dict[str, int]
    log: list[str]

    @property
    def usernames(self) -> list[str]:
        return [c.username for c in self.credentials]


class Kubelet:
    """The Go program at one release: registered with a CredentialProviderConfig and a bin dir,
    then asked for the credentials of one image after another (its cache lives as long as it)."""

    def __init__(
        self,
        program: Path,
        config: Path,
        bin_dir: Path,
        api: APIServer,
        env: dict[str, str],
        feature_gates: str = "",
    ) -> None:
        self.api = api
        gates = ["--feature-gates", feature_gates] if feature_gates else []
        self.process = subprocess.Popen(
            [str(program), "--config", str(config), "--bin-dir", str(bin_dir), *gates],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )
        self._buffer = b""
        self.closed = False
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        first = self._receive()
        self.refused: str | None = first.get("refused")
        assert self.refused is not None or first == {"registered": True}, first

    def lookup(
        self, image: str, account: ServiceAccount | None = None, pod: str = "app-0"
    ) -> Lookup:
        """The kubelet pulling ``image`` for pod ``pod`` of ``account`` (None: no service
        account, as a static pod)."""
        self._send(
            {
                "lookup": {
                    "image": image,
                    "namespace": account.namespace if account else "kube-system",
                    "pod": pod,
                    "podUID": str(uuid.uuid5(uuid.NAMESPACE_URL, pod)),
                    "serviceAccount": account.name if account else "",
                }
            }
        )
        while True:
            message = self._receive()
            if "ask" in message:
                self._send(self.api.answer(message))
                continue
            found = message["result"]
            for line in found["log"]:
                leaks.observe(line, "the kubelet's log")
            credentials = [Credential(c["username"], c["password"]) for c in found["credentials"]]
            for credential in credentials:
                leaks.known(credential.password, "robot token the kubelet's keyring returned")
            return Lookup(
                found["repository"],
                credentials,
                found["runs"] or {},
                found["errors"] or {},
                found["log"],
            )

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + ANSWER_SECONDS
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise AssertionError(f"the kubelet's code did not answer in {ANSWER_SECONDS}s")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the kubelet's code ended: {self._stderr()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def _stderr(self) -> str:
        self.process.wait(timeout=ANSWER_SECONDS)
        assert self.process.stderr is not None
        text = self.process.stderr.read().decode(errors="replace")
        leaks.observe(text, "the kubelet's code stderr")
        return text

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=ANSWER_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr()
        self._selector.close()
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            stream.close()


# -- a node: the shipped files, pointed at the servers of this test -------------------------------
def shipped(layout: str, name: str) -> str:
    return (MANIFESTS / layout / name).read_text()


@dataclass
class Node:
    """One node's files: the kubelet's CredentialProviderConfig and bin dir, and the
    provider's config.toml and cache directory."""

    directory: Path
    kubelet_code: Path
    executable: Executable
    api: APIServer
    quays: dict[str, QuayEmulator]
    ca: Path

    @property
    def provider_config(self) -> Path:
        return self.directory / "credential-providers.yaml"

    @property
    def node_config(self) -> Path:
        return self.directory / "config.toml"

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    def providers_document(self, layout: str) -> dict[str, Any]:
        """The shipped CredentialProviderConfig with this node's paths; the second entry of
        two-quays gets the link's args for the single file (docs/kubelet.md)."""
        text = shipped(layout, "credential-providers.yaml")
        text = text.replace(SHIPPED_CONFIG, str(self.node_config))
        text = text.replace(SHIPPED_CACHE, str(self.cache_dir))
        document: dict[str, Any] = yaml.safe_load(text)
        for provider in document["providers"]:
            if provider["name"] != PROVIDER:
                provider["args"] = [*self.executable.link_args, *provider["args"]]
        return document

    def write(
        self,
        layout: str,
        document: dict[str, Any] | None = None,
        extra_toml: str = "",
        providers_file: str = "credential-providers.yaml",
    ) -> None:
        """The CredentialProviderConfig (the shipped ``providers_file``, or ``document`` as
        YAML) and the shipped config.toml with each host's Quay URL and the test CA."""
        if document is None and not self.executable.link_args:
            text = shipped(layout, providers_file)
            text = text.replace(SHIPPED_CONFIG, str(self.node_config))
            self.provider_config.write_text(text.replace(SHIPPED_CACHE, str(self.cache_dir)))
        else:
            chosen = document if document is not None else self.providers_document(layout)
            self.provider_config.write_text(yaml.safe_dump(chosen, sort_keys=False))
        lines = []
        for line in shipped(layout, "config.toml").splitlines():
            if line.startswith("ca_bundle ="):
                continue
            lines.append(line)
            header = re.fullmatch(r'\[kubelet\."([^"]+)"\]', line)
            if header:
                quay = self.quays[header.group(1)]
                lines.append(f"quay_url = {json.dumps(quay.url)}")
                lines.append(f"ca_bundle = {json.dumps(str(self.ca))}")
        self.node_config.write_text("\n".join(lines) + "\n" + extra_toml)
        names = [p["name"] for p in yaml.safe_load(self.provider_config.read_text())["providers"]]
        bin_dir = self.directory / "bin"
        if not bin_dir.exists():
            install(bin_dir, self.executable, *(n for n in names if n != PROVIDER))

    def start(self, feature_gates: str = "", config: Path | None = None) -> Kubelet:
        """The kubelet's code with this node's CredentialProviderConfig (or ``config``, a
        file or a directory of them)."""
        kubelet_process = Kubelet(
            self.kubelet_code,
            config or self.provider_config,
            self.directory / "bin",
            self.api,
            {"XDG_CACHE_HOME": str(self.directory / "xdg-cache")},
            feature_gates,
        )
        self._started.append(kubelet_process)
        return kubelet_process

    _started: list[Kubelet] = field(default_factory=list)


@pytest.fixture
def api(kube_issuer: KubeIssuer) -> APIServer:
    return APIServer(kube_issuer)


@pytest.fixture
def partner_quay(test_pki: TestPKI) -> Iterator[QuayEmulator]:
    """A second Quay, for quay.partner.example."""
    emulator = QuayEmulator(ca_bundle=test_pki.ca_cert)
    server = emulator.start(pki=test_pki)
    try:
        yield emulator
    finally:
        server.close()


@pytest.fixture
def node(
    kubelet_code: Path,
    executable: Executable,
    api: APIServer,
    quay: QuayEmulator,
    test_pki: TestPKI,
    tmp_path: Path,
) -> Iterator[Node]:
    made = Node(tmp_path, kubelet_code, executable, api, {QUAY: quay}, test_pki.ca_cert)
    yield made
    for started in made._started:
        started.close()


def federate(
    quay: QuayEmulator, robot: str, issuer: KubeIssuer, *accounts: str, audience: str = ""
) -> None:
    """``robot`` in ``quay``, trusting the issuer's service accounts NAMESPACE:NAME."""
    entries = [
        {
            "issuer": issuer.issuer,
            "subject": f"system:serviceaccount:{account}",
            "audiences": [audience] if audience else [],
        }
        for account in accounts
    ]
    quay.add_robot(robot, federation=entries)


def robot_token_of(credential: Credential) -> dict[str, Any]:
    return claims.unverified_claims(credential.password)


# -- pulls ---------------------------------------------------------------------------------------
def test_a_pod_pulls_as_its_robot_and_the_kubelet_caches_it(
    node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder")
    builder = api.add("team-a", "builder", robot="team_a+builder")
    node.write("one-quay")
    running = node.start()
    assert running.refused is None

    first = running.lookup(f"{QUAY}/team_a/app:1", builder, pod="app-0")
    assert first.repository == f"{QUAY}/team_a/app"
    assert first.usernames == ["team_a+builder"], first.log
    (credential,) = first.credentials
    assert robot_token_of(credential)["sub"] == "team_a+builder"
    assert first.runs == {PROVIDER: 1} and first.errors.get(PROVIDER, 0) == 0
    assert api.token_requests == [TokenRequest("team-a/builder", (QUAY,), "app-0")]
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1

    # Another image of the same registry, another pod of the same account: the kubelet's own
    # cache answers (cacheKeyType Registry, cacheType ServiceAccount); the provider is not run.
    digest = "sha256:" + "a" * 64
    second = running.lookup(f"{QUAY}/team_a/other@{digest}", builder, pod="app-1")
    assert second.repository == f"{QUAY}/team_a/other"
    assert second.credentials == first.credentials
    assert second.runs == {PROVIDER: 1}
    assert quay.counters_snapshot()["exchanges_attempted"] == 1

    # An image the provider does not match: the kubelet neither asks for a token nor runs it.
    asked = len(api.token_requests)
    other = running.lookup("nginx:1", builder, pod="app-2")
    assert other.repository == "docker.io/library/nginx"
    assert other.credentials == [] and other.runs == {PROVIDER: 1}
    assert len(api.token_requests) == asked


def test_one_service_account_two_organizations_each_its_own_robot(
    node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """On quay.io a robot belongs to one organization: an account that pulls from two names a
    robot of each. The image's namespace chooses; the answer is for that namespace's path
    (``quay.example.com/team_a``), cached per image, so the kubelet's own lookup gives each
    organization its robot and never sends one organization's robot to another's image."""
    federate(quay, "team_a+builder", kube_issuer, "apps:builder")
    federate(quay, "team_b+puller", kube_issuer, "apps:builder")
    builder = api.add("apps", "builder", robot="team_a+builder, team_b+puller")
    node.write("one-quay")
    running = node.start()
    assert running.refused is None

    ours = running.lookup(f"{QUAY}/team_a/app:1", builder, pod="app-0")
    assert ours.usernames == ["team_a+builder"], ours.log
    (credential,) = ours.credentials
    assert robot_token_of(credential)["sub"] == "team_a+builder"
    theirs = running.lookup(f"{QUAY}/team_b/app:1", builder, pod="app-0")
    assert theirs.usernames == ["team_b+puller"], theirs.log
    again = running.lookup(f"{QUAY}/team_a/app:1", builder, pod="app-1")
    assert again.usernames == ["team_a+builder"], again.log
    assert again.runs == theirs.runs, "the same image again: the kubelet's cache answered"
    elsewhere = running.lookup(f"{QUAY}/team_c/app:1", builder, pod="app-0")
    assert elsewhere.credentials == [], elsewhere.log
    assert quay.counters_snapshot()["succeeded_by_robot"] == {
        "team_a+builder": 1,
        "team_b+puller": 1,
    }


def test_two_service_accounts_are_kept_apart(
    node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """cacheType ServiceAccount: one exec per account, each account its own robot token; an
    account the robot does not trust gets nothing, not another account's cached token."""
    builder = api.add("team-a", "builder", robot="team_a+builder")
    deployer = api.add("team-a", "deployer", robot="team_a+builder")
    intruder = api.add("team-a", "intruder", robot="team_a+builder")
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder", "team-a:deployer")
    node.write("one-quay")
    running = node.start()
    image = f"{QUAY}/team_a/app:1"
    answers = [
        running.lookup(image, account, pod=f"pod-{n}")
        for n, account in enumerate((builder, deployer, builder, deployer))
    ]
    passwords = [a.credentials[0].password for a in answers]
    assert passwords[0] == passwords[2] and passwords[1] == passwords[3]
    # Each account was run once, with its own token: two exchanges (the emulator's robot
    # tokens of one second are alike); the third and fourth pulls came from the kubelet's cache.
    assert [a.runs for a in answers] == [{PROVIDER: 1}, *[{PROVIDER: 2}] * 3]
    assert [r.account for r in api.token_requests].count("team-a/deployer") == 2
    assert quay.counters_snapshot()["exchanges_succeeded"] == 2

    refused = running.lookup(image, intruder, pod="pod-9")
    assert refused.credentials == []
    assert refused.runs == {PROVIDER: 3} and refused.errors == {PROVIDER: 1}
    assert any("Quay refused the exchange" in line for line in refused.log), refused.log
    assert not any(p in line for p in passwords for line in refused.log)


@pytest.mark.parametrize("mode", ["required", "skip", "node", "refuse"])
def test_a_service_account_that_names_no_robot(
    node: Node,
    api: APIServer,
    quay: QuayEmulator,
    kube_issuer: KubeIssuer,
    mode: str,
    tmp_path: Path,
) -> None:
    """As shipped the robot annotation is required: the kubelet runs nothing for an account
    without it. Moved to the optional keys, ``unannotated`` decides, and the kubelet caches
    what it answers: nothing for an hour (skip), the node's robot (node), or nothing and not
    cached, each pull a logged error (refuse)."""
    federate(quay, "team_a+builder", kube_issuer, "team-a:plain")
    federate(quay, "platform+node_puller", kube_issuer, "kube-system:node")
    plain = api.add("team-a", "plain")
    if mode == "required":
        node.write("one-quay")
    else:
        document = node.providers_document("one-quay")
        attributes = document["providers"][0]["tokenAttributes"]
        attributes["optionalServiceAccountAnnotationKeys"].append(
            attributes.pop("requiredServiceAccountAnnotationKeys")[0]
        )
        node_identity = ""
        if mode == "node":
            token = kube_issuer.write_token(
                tmp_path / "node-token", namespace="kube-system", name="node"
            )
            node_identity = (
                f'[registries."{QUAY}"]\nrobot = "platform+node_puller"\n'
                f'issuer = "{kube_issuer.issuer}"\nsource = "file"\ntoken_file = "{token}"\n'
                f'quay_url = "{quay.url}"\nca_bundle = "{node.ca}"\n'
            )
        node.write("one-quay", document, node_identity)
        if mode != "skip":  # skip is the default: the shipped config.toml does not say it
            table = f'[kubelet."{QUAY}"]\n'
            text = node.node_config.read_text().replace(table, f'{table}unannotated = "{mode}"\n')
            node.node_config.write_text(text)
    running = node.start()
    image = f"{QUAY}/team_a/app:1"
    first = running.lookup(image, plain, pod="pod-1")
    second = running.lookup(image, plain, pod="pod-2")
    if mode == "required":
        assert first.credentials == second.credentials == []
        assert second.runs == {} and api.token_requests == []
    elif mode == "skip":
        assert first.credentials == second.credentials == []
        assert first.runs == second.runs == {PROVIDER: 1}
        assert first.errors.get(PROVIDER, 0) == 0
    elif mode == "node":
        assert first.usernames == ["platform+node_puller"], first.log
        assert second.credentials == first.credentials
        assert second.runs == {PROVIDER: 1}
    else:
        assert first.credentials == second.credentials == []
        assert second.runs == {PROVIDER: 2} and second.errors == {PROVIDER: 2}
        line = f"has no {kubelet.ROBOT_ANNOTATION} annotation"
        assert any(line in entry for entry in first.log), first.log
    # Annotating the account changes the kubelet's cache key: the next pull runs the provider.
    plain.annotations[kubelet.ROBOT_ANNOTATION] = "team_a+builder"
    annotated = running.lookup(image, plain, pod="pod-3")
    assert annotated.usernames == ["team_a+builder"], annotated.log
    runs_before = second.runs.get(PROVIDER, 0)
    assert annotated.runs == {PROVIDER: runs_before + 1}


@pytest.mark.parametrize("args", ["as shipped", "kubelet first"])
def test_two_quays_two_audiences(
    node: Node,
    api: APIServer,
    quay: QuayEmulator,
    partner_quay: QuayEmulator,
    kube_issuer: KubeIssuer,
    args: str,
) -> None:
    """packaging/kubernetes/two-quays: each provider entry has its own audience, the kubelet
    asks for a token with it, and each Quay sees only tokens meant for it (its robots'
    federation lists that audience, as Quay 3.18 checks). Every executable takes the same
    args under either name: as shipped, and with a leading ``kubelet`` in every entry (the
    single file once needed it under the second name, and the self-contained build refused
    it)."""
    builder = api.add("team-a", "builder", robot="team_a+builder")
    partner = api.add("partner", "builder", robot="partner+builder")
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder", audience=QUAY)
    federate(partner_quay, "partner+builder", kube_issuer, "partner:builder", audience=PARTNER_QUAY)
    node.quays[PARTNER_QUAY] = partner_quay
    document = None
    if args == "kubelet first":
        document = node.providers_document("two-quays")
        for provider in document["providers"]:
            provider["args"] = ["kubelet", *provider["args"]]
    node.write("two-quays", document)
    running = node.start()
    assert running.refused is None

    ours = running.lookup(f"{QUAY}/team_a/app:1", builder)
    assert ours.usernames == ["team_a+builder"], ours.log
    assert api.token_requests[-1].audiences == (QUAY,)
    theirs = running.lookup(f"{PARTNER_QUAY}/partner/app:1", partner)
    assert theirs.usernames == ["partner+builder"], theirs.log
    assert api.token_requests[-1].audiences == (PARTNER_QUAY,)
    assert theirs.runs == {PROVIDER: 1, PARTNER: 1}
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1
    assert partner_quay.counters_snapshot()["exchanges_succeeded"] == 1

    # team_a's account pulling from the partner: the token is for the partner's audience, and
    # the node's policy (partner's robots) refuses before any Quay is asked.
    crossing = running.lookup(f"{PARTNER_QUAY}/partner/app:1", builder)
    assert crossing.credentials == []
    assert crossing.errors == {PARTNER: 1}
    assert any(line.count(f"{PARTNER}:") for line in crossing.log), crossing.log
    assert partner_quay.counters_snapshot()["exchanges_attempted"] == 1
    assert quay.counters_snapshot()["exchanges_attempted"] == 1


def test_an_image_naming_port_443(
    node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """The kubelet's URLsMatch tells quay.example.com from quay.example.com:443: the shipped
    matchImages lists both, the provider answers ``auth`` for the form the image names, and the
    keyring hands it to that image; without the :443 entry the kubelet never runs it."""
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder")
    builder = api.add("team-a", "builder", robot="team_a+builder")
    node.write("one-quay")
    running = node.start()
    with_port = running.lookup(f"{QUAY}:443/team_a/app:1", builder)
    assert with_port.repository == f"{QUAY}:443/team_a/app"
    assert with_port.usernames == ["team_a+builder"], with_port.log
    without = running.lookup(f"{QUAY}/team_a/app:1", builder)
    assert without.usernames == ["team_a+builder"]
    # Two registries to the kubelet's cache, one robot token to the provider's.
    assert without.runs == {PROVIDER: 2}
    assert without.credentials[0].password == with_port.credentials[0].password
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1
    running.close()

    document = node.providers_document("one-quay")
    document["providers"][0]["matchImages"] = [QUAY]
    node.write("one-quay", document)
    narrowed = node.start()
    unmatched = narrowed.lookup(f"{QUAY}:443/team_a/app:1", builder)
    assert unmatched.credentials == [] and unmatched.runs == {}


def test_a_host_override_reaches_the_provider(
    node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """quay.io/host-override is one of the shipped optional keys: the kubelet passes it, and an
    image on another name of the Quay is answered by the Quay it names (docs/kubelet.md, "A
    Quay under two names"), for that image's name."""
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder")
    builder = api.add("team-a", "builder", robot="team_a+builder")
    builder.annotations["quay.io/host-override"] = QUAY
    document = node.providers_document("one-quay")
    document["providers"][0]["matchImages"].append(MIRROR)
    node.write("one-quay", document, f'[kubelet."{MIRROR}"]\naudience = "{QUAY}"\n'
               f'allow_override_to = ["{QUAY}"]\nrobots = ["team_a+*"]\n')  # fmt: skip
    found = node.start().lookup(f"{MIRROR}/team_a/app:1", builder)
    assert found.repository == f"{MIRROR}/team_a/app"
    assert found.usernames == ["team_a+builder"], found.log
    assert api.token_requests[-1].audiences == (QUAY,)
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1


# -- the kubelet's own validation and URL matching ----------------------------------------------
@pytest.fixture
def launcher_node(
    kubelet_code: Path, api: APIServer, quay: QuayEmulator, test_pki: TestPKI, tmp_path: Path
) -> Iterator[Node]:
    """A node with the installed launcher, for what does not depend on the provider's form."""
    launcher = Executable("launcher", Path(sys.executable).with_name(PROVIDER))
    made = Node(
        tmp_path, kubelet_code, launcher, api, {QUAY: quay, PARTNER_QUAY: quay}, test_pki.ca_cert
    )
    yield made
    for started in made._started:
        started.close()


@pytest.mark.parametrize("layout", ["one-quay", "two-quays"])
def test_the_kubelet_accepts_the_shipped_configs(launcher_node: Node, layout: str) -> None:
    launcher_node.write(layout)
    assert launcher_node.start().refused is None


def test_the_kubelet_refuses_a_key_given_twice(launcher_node: Node) -> None:
    """Its strict decoder refuses a duplicate key (tests/test_kubelet_golden.py's YAML loader
    refuses the same)."""
    launcher_node.write("one-quay")
    text = launcher_node.provider_config.read_text()
    doubled = text.replace("defaultCacheDuration: 10m\n", "defaultCacheDuration: 10m\n    "
                           "defaultCacheDuration: 5m\n")  # fmt: skip
    assert doubled != text
    launcher_node.provider_config.write_text(doubled)
    refused = launcher_node.start().refused
    assert refused is not None and 'key "defaultCacheDuration" already set in map' in refused


ALPHA_CONFIG = "credential-providers-1.33.yaml"


@pytest.mark.parametrize("layout", ["one-quay", "two-quays"])
def test_from_1_34_on_the_kubelet_refuses_the_1_33_config(launcher_node: Node, layout: str) -> None:
    """cacheType is required from 1.34 on: the 1.33 file is for 1.33 only."""
    launcher_node.write(layout, providers_file=ALPHA_CONFIG)
    refused = launcher_node.start().refused
    assert refused is not None and "cacheType: Required" in refused


@pytest.fixture
def alpha_node(
    alpha_kubelet_code: Path, api: APIServer, quay: QuayEmulator, test_pki: TestPKI, tmp_path: Path
) -> Iterator[Node]:
    """A node whose kubelet is 1.33's code, with the installed launcher."""
    launcher = Executable("launcher", Path(sys.executable).with_name(PROVIDER))
    quays = {QUAY: quay, PARTNER_QUAY: quay}
    made = Node(tmp_path, alpha_kubelet_code, launcher, api, quays, test_pki.ca_cert)
    yield made
    for started in made._started:
        started.close()


def test_kubernetes_1_33_pulls_with_the_1_33_config(
    alpha_node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """The 1.33 kubelet with the feature gate on (docs/kubelet.md): the shipped 1.33 file
    registers, and a pod pulls as its robot with a token for the provider's audience."""
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder")
    builder = api.add("team-a", "builder", robot="team_a+builder")
    api.uid_in_token_requests = False
    alpha_node.write("one-quay", providers_file=ALPHA_CONFIG)
    running = alpha_node.start(feature_gates=ALPHA_GATE)
    assert running.refused is None
    found = running.lookup(f"{QUAY}/team_a/app:1", builder)
    assert found.usernames == ["team_a+builder"], found.log
    assert found.runs == {PROVIDER: 1}
    assert api.token_requests == [TokenRequest("team-a/builder", (QUAY,), "app-0")]


def test_kubernetes_1_33_registers_the_two_quays_1_33_config(alpha_node: Node) -> None:
    """Both providers of two-quays/credential-providers-1.33.yaml register with the gate on."""
    alpha_node.write("two-quays", providers_file=ALPHA_CONFIG)
    assert alpha_node.start(feature_gates=ALPHA_GATE).refused is None


def test_kubernetes_1_33_refuses_cache_type_and_needs_the_gate(alpha_node: Node) -> None:
    """1.33's strict decoder refuses the 1.34 file's cacheType; without the feature gate it
    refuses tokenAttributes altogether."""
    alpha_node.write("one-quay")
    refused = alpha_node.start(feature_gates=ALPHA_GATE).refused
    assert refused is not None
    assert 'unknown field "providers[0].tokenAttributes.cacheType"' in refused
    alpha_node.write("one-quay", providers_file=ALPHA_CONFIG)
    refused = alpha_node.start().refused
    assert refused is not None and "feature gate is disabled" in refused


#: the CredentialProviderConfig the Machine Config Operator writes to
#: /etc/kubernetes/credential-providers/generic-credential-provider.yaml for a
#: CRIOCredentialProviderConfig (pkg/controller/container-runtime-config/helpers.go,
#: updateCredentialProviderConfig), with a mirror as its one image
MCO_GENERIC = {
    "apiVersion": "kubelet.config.k8s.io/v1",
    "kind": "CredentialProviderConfig",
    "providers": [{
        "name": "crio-credential-provider",
        "matchImages": [MIRROR],
        "defaultCacheDuration": "1s",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "tokenAttributes": {"serviceAccountTokenAudience": "https://kubernetes.default.svc",
                            "requireServiceAccount": False, "cacheType": "Token"},
    }],
}  # fmt: skip


def test_the_kubelet_reads_the_openshift_directory_beside_the_operators_file(
    launcher_node: Node, api: APIServer, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """packaging/kubernetes/openshift/: --image-credential-provider-config names the
    directory that holds the shipped file and the operator's own; the kubelet registers the
    providers of both, runs this one for Quay's images and the operator's for its mirror."""
    federate(quay, "team_a+builder", kube_issuer, "team-a:builder")
    builder = api.add("team-a", "builder", robot="team_a+builder")
    launcher_node.write("one-quay")
    directory = launcher_node.directory / "credential-providers"
    directory.mkdir()
    launcher_node.provider_config.rename(directory / "quay-credential-provider.yaml")
    (directory / "generic-credential-provider.yaml").write_text(yaml.safe_dump(MCO_GENERIC))
    crio = launcher_node.directory / "bin" / "crio-credential-provider"
    crio.write_text("#!/bin/sh\ncat >/dev/null\nexit 1\n")
    crio.chmod(0o755)
    running = launcher_node.start(config=directory)
    assert running.refused is None
    found = running.lookup(f"{QUAY}/team_a/app:1", builder)
    assert found.usernames == ["team_a+builder"], found.log
    assert found.runs == {PROVIDER: 1}
    mirrored = running.lookup(f"{MIRROR}/team_a/app:1", builder)
    assert mirrored.credentials == []
    assert mirrored.runs == {PROVIDER: 1, "crio-credential-provider": 1}


def changed(provider: dict[str, Any], where: str, name: str, value: Any) -> dict[str, Any]:
    """``provider`` with ``name`` set to ``value`` (removed when None), in the entry itself
    (``where`` = "provider") or in its tokenAttributes."""
    target = dict(provider if where == "provider" else provider["tokenAttributes"])
    target.pop(name, None)
    if value is not None:
        target[name] = value
    return target if where == "provider" else {**provider, "tokenAttributes": target}


ROBOT_KEY = kubelet.ROBOT_ANNOTATION
OPTIONAL = "optionalServiceAccountAnnotationKeys"
#: (what, where, field, value, what the kubelet's refusal says): one change to the shipped
#: one-quay entry each (where: the entry itself, or its tokenAttributes)
BROKEN: list[tuple[str, str, str, Any, str]] = [
    ("name with a slash", "provider", "name", f"bin/{PROVIDER}", "cannot contain '/'"),
    ("name with spaces", "provider", "name", "quay credential provider", "cannot contain spaces"),
    ("name ..", "provider", "name", "..", "cannot be '..'"),
    ("no defaultCacheDuration", "provider", "defaultCacheDuration", None,
     "defaultCacheDuration: Required"),
    ("negative defaultCacheDuration", "provider", "defaultCacheDuration", "-1m",
     "must be greater than or equal to 0"),
    ("unknown apiVersion", "provider", "apiVersion", "credentialprovider.kubelet.k8s.io/v2",
     "apiVersion: Unsupported value"),
    ("no matchImages", "provider", "matchImages", [], "matchImages: Required"),
    ("matchImages with a space", "provider", "matchImages", ["quay example.com"],
     "match image is invalid"),
    ("matchImages with a named port", "provider", "matchImages", [f"{QUAY}:https"],
     "match image is invalid"),
    # URLsMatch would read [...] as a glob, but a host with brackets is no URL to the kubelet
    ("matchImages with a character class", "provider", "matchImages", ["q[a-z]ay.example.com"],
     "invalid IP-literal"),
    ("matchImages with a negated class", "provider", "matchImages", ["q[^u]ay.example.com"],
     "invalid IP-literal"),
    ("matchImages with an open bracket", "provider", "matchImages", ["q[ay.example.com"],
     "invalid IP-literal"),
    ("args not strings", "provider", "args", ["--config", 1], "cannot unmarshal number"),
    ("cacheType outside tokenAttributes", "provider", "cacheType", "Token",
     'unknown field "providers[0].cacheType"'),
    ("no cacheType", "tokenAttributes", "cacheType", None, "cacheType: Required"),
    ("cacheType Pod", "tokenAttributes", "cacheType", "Pod", 'cacheType: Unsupported value: "Pod"'),
    ("empty audience", "tokenAttributes", "serviceAccountTokenAudience", "",
     "serviceAccountTokenAudience: Required"),
    ("no requireServiceAccount", "tokenAttributes", "requireServiceAccount", None,
     "requireServiceAccount: Required"),
    ("required keys without requireServiceAccount", "tokenAttributes", "requireServiceAccount",
     False, "requireServiceAccount cannot be false"),
    ("a key both required and optional", "tokenAttributes", OPTIONAL, [ROBOT_KEY],
     "cannot be both required and optional"),
    ("a key twice", "tokenAttributes", OPTIONAL, ["quay.io/host"] * 2, "Duplicate value"),
    ("a key ending in _", "tokenAttributes", OPTIONAL, ["quay.io/host_"],
     f"{OPTIONAL}: Invalid value"),
    ("a key with a bad prefix", "tokenAttributes", OPTIONAL, ["-quay.io/host"], "prefix part"),
    ("a key with two slashes", "tokenAttributes", OPTIONAL, ["a/b/c"],
     f"{OPTIONAL}: Invalid value"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("where", "name", "value", "refusal"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_the_kubelet_refuses_a_broken_config(
    launcher_node: Node, where: str, name: str, value: Any, refusal: str
) -> None:
    document = launcher_node.providers_document("one-quay")
    document["providers"] = [changed(document["providers"][0], where, name, value)]
    launcher_node.write("one-quay", document)
    refused = launcher_node.start().refused
    assert refused is not None and refusal in refused, refused


@pytest.mark.parametrize(
    ("document", "refusal"),
    [
        ({"providers": "twice"}, 'duplicate provider name "quay-credential-provider"'),
        ({"providers": []}, "at least 1 item in plugins is required"),
        ({"kind": "KubeletConfiguration"}, "KubeletConfiguration"),
        ({"apiVersion": "kubelet.config.k8s.io/v2"}, "kubelet.config.k8s.io/v2"),
        ({"images": [QUAY]}, 'unknown field "images"'),
    ],
)
def test_the_kubelet_refuses_a_broken_document(
    launcher_node: Node, document: dict[str, Any], refusal: str
) -> None:
    shipped_document = launcher_node.providers_document("one-quay")
    if document.get("providers") == "twice":
        document = {"providers": shipped_document["providers"] * 2}
    launcher_node.write("one-quay", {**shipped_document, **document})
    refused = launcher_node.start().refused
    assert refused is not None and refusal in refused, refused


@pytest.mark.parametrize(
    ("where", "name", "value"),
    [
        ("provider", "name", "quay"),
        ("provider", "matchImages", [QUAY]),
        ("tokenAttributes", OPTIONAL, ["quay.io/ignore-tls-verify"]),
        ("tokenAttributes", "requiredServiceAccountAnnotationKeys", []),
    ],
    ids=["another name", "no :443 entry", "a TLS annotation passed", "no required key"],
)
def test_the_kubelet_accepts_what_only_this_provider_refuses(
    launcher_node: Node, where: str, name: str, value: Any
) -> None:
    """tests/test_kubelet_golden.py's provider_problems refuses these; the kubelet does not."""
    document = launcher_node.providers_document("one-quay")
    document["providers"] = [changed(document["providers"][0], where, name, value)]
    launcher_node.write("one-quay", document)
    assert launcher_node.start().refused is None


#: (matchImages entry, image, does the kubelet run the provider for it)
MATCHES = [
    (QUAY, f"{QUAY}/org/app", True),
    (QUAY, f"{QUAY}:443/org/app", False),
    (f"{QUAY}:443", f"{QUAY}:443/org/app", True),
    (f"{QUAY}:8443", f"{QUAY}/org/app", False),
    ("*.example.com", f"{QUAY}/org/app", True),
    ("*.com", f"{QUAY}/org/app", False),
    ("quay.*.com", f"{QUAY}/org/app", True),
    ("qua?.example.com", f"{QUAY}/org/app", False),  # '?' starts Go's URL query
    (f"{QUAY}/org", f"{QUAY}/org/app", True),
    (f"{QUAY}/other", f"{QUAY}/org/app", False),
    ("localhost:5000", "localhost:5000/app", True),
    ("[::1]:5000", "[::1]:5000/app", True),
]


def test_match_images_as_the_kubelet_matches_them(launcher_node: Node) -> None:
    """Each matchImages entry is its own provider (a link to the launcher); each image is
    looked up once, and the kubelet's provider metrics say which providers it ran."""
    document = launcher_node.providers_document("one-quay")
    template = {k: v for k, v in document["providers"][0].items() if k != "tokenAttributes"}
    globs = list(dict.fromkeys(glob for glob, _, _ in MATCHES))
    document["providers"] = [
        {**template, "name": f"{PROVIDER}-{n}", "matchImages": [glob]}
        for n, glob in enumerate(globs)
    ]
    launcher_node.write("one-quay", document)
    running = launcher_node.start()
    assert running.refused is None
    runs: dict[str, int] = {}
    for glob, image, matched in MATCHES:
        found = running.lookup(image)
        assert found.repository == image, found.log
        name = f"{PROVIDER}-{globs.index(glob)}"
        assert (found.runs.get(name, 0) > runs.get(name, 0)) is matched, (glob, image)
        runs = dict(found.runs)


# -- the kubelet's strict decoding of a response ------------------------------------------------
GOLDEN = ROOT / "tests" / "golden" / "kubelet"


def golden_filled(name: str, password: str) -> str:
    text = (GOLDEN / name).read_text()
    for placeholder, value in {"{{registry}}": QUAY, "{{alias}}": MIRROR, "{{duration}}": "54m59s",
                               "{{robot token}}": password}.items():  # fmt: skip
        text = text.replace(placeholder, value)
    return re.sub(r"\{\{token [^}]+\}\}", "not-a-token", text)


def stand_in(bin_dir: Path, response: Path) -> Path:
    """A provider that reads the request and prints ``response`` whatever it asks."""
    bin_dir.mkdir()
    script = bin_dir / PROVIDER
    script.write_text(f"#!/bin/sh\ncat >/dev/null\nexec cat '{response}'\n")
    script.chmod(0o755)
    config = bin_dir.parent / "credential-providers.yaml"
    config.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{"name": PROVIDER, "apiVersion": kubelet.API_VERSION,
                       "matchImages": [QUAY, MIRROR], "defaultCacheDuration": "0s"}],
    }))  # fmt: skip
    return config


@pytest.mark.parametrize(
    "case", sorted(p.name[: -len(".response.json")] for p in GOLDEN.glob("*.response.json"))
)
def test_the_kubelet_takes_each_golden_response(
    kubelet_code: Path, api: APIServer, tmp_path: Path, case: str
) -> None:
    """Each golden response (placeholders filled) through the kubelet's own strict decoder,
    for its golden request's image: the keyring returns exactly its ``auth``."""
    password = f"robot-token-{uuid.uuid4()}"
    response = tmp_path / "response.json"
    response.write_text(golden_filled(f"{case}.response.json", password))
    image = json.loads(golden_filled(f"{case}.request.json", password))["image"]
    config = stand_in(tmp_path / "bin", response)
    running = Kubelet(kubelet_code, config, tmp_path / "bin", api, {})
    try:
        found = running.lookup(image)
    finally:
        running.close()
    expected = [Credential(a["username"], a["password"])
                for a in (json.loads(response.read_text()).get("auth") or {}).values()]  # fmt: skip
    assert found.credentials == expected, found.log
    assert found.runs == {PROVIDER: 1}
    assert not [line for line in found.log if re.search(r"\b(error|failed)\b", line, re.I)]


FIELDS = (
    '"kind": "CredentialProviderResponse", "cacheKeyType": "Registry", "cacheDuration": "55m0s"'
)
AUTH = '"auth": {"quay.example.com": {"username": "team_a+builder", "password": "PASSWORD"}}'
DECODING = "error decoding credential provider plugin response"


@pytest.mark.parametrize(
    ("fields", "auth", "refusal"),
    [
        (FIELDS, AUTH, ""),
        (f'{FIELDS}, "serviceAccountTokenCacheType": "ServiceAccount"', AUTH, DECODING),
        (f'{FIELDS}, "kind": "CredentialProviderResponse"', AUTH, DECODING),
        (FIELDS.replace('"55m0s"', '"55 minutes"'), AUTH, DECODING),
        (FIELDS.replace('"Registry"', '"Pod"'), AUTH, "did not return a valid cacheKeyType"),
        (FIELDS.replace("Response", "Request"), AUTH, DECODING),
        (FIELDS, AUTH.replace('"}}', '", "email": "a@example.com"}}'), DECODING),
    ],
    ids=["as sent", "an unknown field", "a key twice", "not a Go duration", "cacheKeyType Pod",
         "another kind", "an unknown auth field"],
)  # fmt: skip
def test_the_kubelet_decodes_a_response_strictly(
    kubelet_code: Path, api: APIServer, tmp_path: Path, fields: str, auth: str, refusal: str
) -> None:
    """What the kubelet's strict decoder refuses, the keyring never sees."""
    password = f"robot-token-{uuid.uuid4()}"
    response = tmp_path / "response.json"
    response.write_text(
        f'{{"apiVersion": "{kubelet.API_VERSION}", {fields}, {auth.replace("PASSWORD", password)}}}'
    )
    config = stand_in(tmp_path / "bin", response)
    running = Kubelet(kubelet_code, config, tmp_path / "bin", api, {})
    try:
        found = running.lookup(f"{QUAY}/team_a/app")
    finally:
        running.close()
    assert found.runs == {PROVIDER: 1}
    if not refusal:
        assert found.credentials == [Credential("team_a+builder", password)], found.log
        return
    assert found.credentials == []
    assert any(refusal in line for line in found.log), found.log
