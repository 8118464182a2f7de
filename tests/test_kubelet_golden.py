"""Golden CredentialProviderRequest/Response pairs (tests/golden/kubelet/), each response
checked against the facts recorded from the kubelet's own types (upstream-api.json).

The provider runs as the kubelet runs it: exec of the installed executable with the
configured args and env, the request on stdin, a one-minute timeout. Tokens come from the
Kubernetes-like issuer nanoidp signs for; Quay is the emulator, over TLS with the test CA.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from docker_credential_quayfed import claims, kubelet
from docker_credential_quayfed.protocol import table_key
from docker_credential_quayfed.sources import BY_NAME
from quay_sandbox.quay import QuayEmulator
from tests.support import leaks
from tests.support.oidc_provider import DEFAULT_AUDIENCE, KubeIssuer

GOLDEN = Path(__file__).parent / "golden" / "kubelet"
FACTS: dict[str, Any] = json.loads((GOLDEN / "upstream-api.json").read_text())
PROVIDER = "quay-credential-provider"
#: the kubelet kills a provider after this long (pkg/credentialprovider/plugin/plugin.go)
KUBELET_TIMEOUT = float(FACTS["kubelet_behaviour"]["exec_timeout_seconds"])
PULLER_ROBOT = "quay_federation+puller_a"
NODE_ROBOT = "quay_federation+node"
NODE_ACCOUNT = ("kube-system", "node-puller")
REFRESH_MARGIN = 300

CASES = (
    "pod-identity",
    "pod-identity-host-override",
    "pod-identity-quay-host",
    "pod-identity-unannotated",
    "node-identity",
    "node-identity-unconfigured",
)


# -- running the provider the way the kubelet does ---------------------------------------------
def provider_executable(name: str = PROVIDER) -> Path:
    """The installed executable next to this interpreter (``pip install -e .`` puts it there)."""
    beside = Path(sys.executable).with_name(name)
    if not beside.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run 'pip install -e .'")
    return beside


@dataclass(frozen=True)
class ProviderRun:
    returncode: int
    stdout: str
    stderr: str

    def response(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        return decode_response(self.stdout)

    def refused(self) -> str:
        """The one stderr line of a refusal (no stdout at all, no traceback)."""
        assert self.returncode != 0, self.stdout
        assert self.stdout == "", "a failed request must print nothing on stdout"
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


def run_provider(
    stdin: str,
    *,
    executable: Path | None = None,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ProviderRun:
    """exec ``executable args...`` with ``env`` merged into this environment, ``stdin`` in."""
    program = executable or provider_executable()
    done = subprocess.run(
        [str(program), *args],
        input=stdin.encode(),
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=KUBELET_TIMEOUT,
        check=False,
    )
    run = ProviderRun(done.returncode, done.stdout.decode(), done.stderr.decode())
    leaks.observe(run.stderr, f"{program.name} stderr (exit {run.returncode})")
    if run.returncode == 0 and run.stdout.startswith("{"):
        for entry in (json.loads(run.stdout).get("auth") or {}).values():
            leaks.known(entry["password"], "robot token answered to the kubelet")
    else:
        leaks.observe(run.stdout, f"{program.name} stdout (exit {run.returncode})")
    return run


# -- the checker: a response against the recorded upstream facts --------------------------------
_GO_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]*)?(ns|us|\u00b5s|ms|s|m|h))+)$")
_AUTH_KEY = re.compile(r"^[a-z0-9*.\-]+(:[0-9]+)?(/[^\s]*)?$")


def decode_response(text: str) -> dict[str, Any]:
    """stdout: one JSON object (the kubelet's own strict decoder reads every response shape
    in tests/test_kubelet_code.py)."""
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


def response_problems(response: Any, request: dict[str, Any]) -> list[str]:
    """Why ``response`` is not this provider's answer to ``request`` as the recorded facts
    say the kubelet reads it (empty: it is). Whether the kubelet's own decoder takes it and
    its URLsMatch hands ``auth`` to the image is tests/test_kubelet_code.py's part."""
    api = FACTS["credentialprovider"]
    spec = api["response"]
    if not isinstance(response, dict):
        return ["the response is not a JSON object"]
    problems = []
    for name, facts in spec["fields"].items():
        if facts["required"] and name not in response:
            problems.append(f"required field {name} is missing")
    if response.get("apiVersion") != request.get("apiVersion"):
        problems.append("apiVersion differs from the request's")
    if response.get("apiVersion") != api["apiVersion"]:
        problems.append(f"apiVersion is not {api['apiVersion']}")
    if response.get("kind") != spec["kind"]:
        problems.append(f"kind is not {spec['kind']}")
    if "cacheKeyType" in response and (
        response["cacheKeyType"] not in spec["fields"]["cacheKeyType"]["values"]
    ):
        problems.append(f"cacheKeyType {response['cacheKeyType']!r} is not a valid value")
    duration = response.get("cacheDuration")
    if duration is not None and not (isinstance(duration, str) and _GO_DURATION.match(duration)):
        problems.append(f"cacheDuration {duration!r} is not a Go duration")
    auth = response.get("auth")
    if auth is not None:
        if not isinstance(auth, dict):
            return [*problems, "auth is not a map"]
        for key, entry in auth.items():
            if not _AUTH_KEY.match(key):
                problems.append(f"auth key {key!r} is not an image match pattern")
            elif key not in _auth_keys_for(str(request.get("image", ""))):
                problems.append(
                    f"auth key {key!r} is neither the image's registry as it names it nor its "
                    "organization's path there"
                )
            if not isinstance(entry, dict) or set(entry) != set(spec["AuthConfig"]):
                problems.append(f"auth[{key!r}] does not hold exactly username and password")
                continue
            if not all(isinstance(value, str) for value in entry.values()):
                problems.append(f"auth[{key!r}] username/password are not strings")
            token = request.get("serviceAccountToken")
            if token and entry.get("password") == token:
                problems.append("the password is the service-account token itself")
    return problems


def _auth_keys_for(image: str) -> tuple[str, str]:
    """The keys an answer for ``image`` may use: its registry, or (an annotation naming a
    robot per organization) its registry and namespace, ``quay.io/org``."""
    registry = kubelet.registry_of(image)
    namespace = image.split("/", 2)[1].split(":", 1)[0].split("@", 1)[0]
    return registry, f"{registry}/{namespace}"


def go_seconds(duration: str) -> float:
    """Seconds in a Go duration made of h, m and s (what the provider prints)."""
    if duration == "0":
        return 0.0
    parts = re.findall(r"([0-9]+)([hms])", duration)
    assert "".join(f"{n}{u}" for n, u in parts) == duration, duration
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


#: ``{{token NS/NAME}}``, or ``{{token NS/NAME audience=AUD}}`` for another audience
_TOKEN_PLACEHOLDER = r"\{\{token ([a-z0-9-]+/[a-z0-9-]+)(?: audience=([^}\s]+))?\}\}"


# -- the golden environment --------------------------------------------------------------------
@dataclass
class GoldenNode:
    """One node: its config (node.toml filled in), cache directory and the running servers."""

    quay: QuayEmulator
    issuer: KubeIssuer
    directory: Path
    values: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.directory / "config.toml"

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(self.cache_dir)}

    def fill(self, text: str) -> str:
        for name, value in self.values.items():
            text = text.replace("{{" + name + "}}", value)

        def token(match: re.Match[str]) -> str:
            namespace, name = match.group(1).split("/")
            return self.issuer.mint(namespace, name, audience=match.group(2) or DEFAULT_AUDIENCE)

        return re.sub(_TOKEN_PLACEHOLDER, token, text)

    def run(self, stdin: str, **kwargs: Any) -> ProviderRun:
        kwargs.setdefault("args", ("--config", str(self.config)))
        kwargs.setdefault("env", self.env)
        return run_provider(stdin, **kwargs)


@pytest.fixture
def node(quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path) -> GoldenNode:
    return golden_node(quay, kube_issuer, tmp_path)


def golden_node(quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path) -> GoldenNode:
    """node.toml filled in for the running servers; robots puller_a and node in Quay."""
    port = quay.host.rsplit(":", 1)[1]
    node_token = kube_issuer.write_token(tmp_path / "node-token", namespace=NODE_ACCOUNT[0],
                                         name=NODE_ACCOUNT[1])  # fmt: skip
    quay.add_robot(
        PULLER_ROBOT,
        federation=[(kube_issuer.issuer, "system:serviceaccount:apps:puller-a")],
    )
    quay.add_robot(
        NODE_ROBOT,
        federation=[(kube_issuer.issuer, "system:serviceaccount:{}:{}".format(*NODE_ACCOUNT))],
    )
    setup = GoldenNode(quay, kube_issuer, tmp_path)
    setup.values = {
        "registry": quay.host,
        "alias": f"localhost:{port}",
        "quay_url": quay.url or "",
        "ca_bundle": str(kube_issuer.ca_cert),
        "issuer": kube_issuer.issuer,
        "node_token_file": str(node_token),
    }
    setup.config.write_text(setup.fill((GOLDEN / "node.toml").read_text()))
    return setup


# -- the facts themselves, and the checker, can fail --------------------------------------------
def _response(**overrides: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": "55m0s",
        "auth": {"quay.example.com": {"username": "org+robot", "password": "robot-token"}},
    }
    response.update(overrides)
    return {k: v for k, v in response.items() if v is not None}


_REQUEST = {
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "kind": "CredentialProviderRequest",
    "image": "quay.example.com/org/app:1",
    "serviceAccountToken": "sa-token",
}


@pytest.mark.parametrize("key_type", FACTS["credentialprovider"]["response"]["fields"]
                         ["cacheKeyType"]["values"])  # fmt: skip
@pytest.mark.parametrize("with_token", [True, False])
def test_checker_accepts_each_cache_key_type(key_type: str, with_token: bool) -> None:
    request = dict(_REQUEST) if with_token else {**_REQUEST, "serviceAccountToken": ""}
    assert response_problems(_response(cacheKeyType=key_type), request) == []


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"cacheKeyType": "Pod"}, "not a valid value"),
        ({"cacheKeyType": None}, "required field cacheKeyType"),
        ({"cacheDuration": "55 minutes"}, "not a Go duration"),
        ({"apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1"}, "differs from the request"),
        ({"kind": "CredentialProviderRequest"}, "kind is not"),
        ({"auth": {"quay.example.com": {"username": "org+robot"}}}, "exactly username"),
        ({"auth": {"https://quay.example.com": {"username": "u", "password": "p"}}}, "auth key"),
        (
            {"auth": {"quay.example.com": {"username": "org+robot", "password": "sa-token"}}},
            "service-account token itself",
        ),
    ],
)
def test_checker_refuses_what_the_kubelet_refuses(overrides: dict[str, Any], problem: str) -> None:
    problems = response_problems(_response(**overrides), _REQUEST)
    assert any(problem in p for p in problems), problems


def test_the_provider_speaks_the_recorded_api() -> None:
    api = FACTS["credentialprovider"]
    assert (
        api["apiVersion"],
        api["request"]["kind"],
        api["response"]["kind"],
    ) == (kubelet.API_VERSION, kubelet.REQUEST_KIND, kubelet.RESPONSE_KIND)
    assert kubelet.CACHE_KEY_TYPE in api["response"]["fields"]["cacheKeyType"]["values"]
    # every golden request uses only the request's fields
    for path in GOLDEN.glob("*.request.json"):
        request = json.loads(path.read_text())
        assert set(request) <= set(api["request"]["fields"]), path.name
        required = {n for n, f in api["request"]["fields"].items() if f["required"]}
        assert required <= set(request), path.name


@pytest.mark.parametrize("case", CASES)
def test_golden_files_are_valid_responses(case: str) -> None:
    """Each golden response, its placeholders filled with sample values, is one the kubelet uses."""
    samples = {
        "{{registry}}": "quay.example.com:8443",
        "{{alias}}": "mirror.example.com",
        "{{duration}}": "54m59s",
        "{{robot token}}": "robot-token",
    }

    def filled(name: str) -> Any:
        text = (GOLDEN / name).read_text()
        for placeholder, value in samples.items():
            text = text.replace(placeholder, value)
        return json.loads(re.sub(r"\{\{token [^}]+\}\}", "sa-token", text))

    request, response = filled(f"{case}.request.json"), filled(f"{case}.response.json")
    assert response_problems(response, request) == []
    assert "{{" not in json.dumps(response)


# -- the round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_golden_round_trip(node: GoldenNode, case: str) -> None:
    request_text = node.fill((GOLDEN / f"{case}.request.json").read_text())
    expected = json.loads(node.fill((GOLDEN / f"{case}.response.json").read_text()))
    request = json.loads(request_text)

    run = node.run(request_text)
    response = run.response()
    assert response_problems(response, request) == []
    assert run.stdout.count("\n") == 1 and run.stdout.endswith("\n"), "one line of JSON"

    now = time.time()
    lifetime = node.quay.token_lifetime
    if expected["cacheDuration"] == "{{duration}}":
        seconds = go_seconds(response["cacheDuration"])
        assert lifetime - REFRESH_MARGIN - 30 <= seconds <= lifetime - REFRESH_MARGIN
        response["cacheDuration"] = "{{duration}}"
    for entry in (response.get("auth") or {}).values():
        robot_claims = claims.unverified_claims(entry["password"])
        assert robot_claims["sub"] == entry["username"]
        assert robot_claims["exp"] > now + lifetime - 60
        entry["password"] = "{{robot token}}"
    assert response == expected


def test_refusals(node: GoldenNode) -> None:
    cases = json.loads((GOLDEN / "refusals.json").read_text())
    attempted = 0
    for case in cases:
        stdin = node.fill(case["stdin"] if "stdin" in case else json.dumps(case["request"]))
        tokens = [json.loads(stdin).get("serviceAccountToken", "")] if "request" in case else []
        before = node.quay.counters_snapshot()["exchanges_attempted"]
        line = node.run(stdin).refused()
        assert line.startswith(f"{PROVIDER}: "), line
        assert node.fill(case["stderr"]) in line, (case["name"], line)
        for token in tokens:
            assert not token or token not in line
        assert "eyJ" not in line
        attempted += node.quay.counters_snapshot()["exchanges_attempted"] - before
    # Only the one case that reaches Quay asked it anything; node policy refused the others.
    assert attempted == 1
    assert not list(node.cache_dir.glob("*.token"))


# -- the shipped and documented configuration fits the kubelet and this provider ----------------
ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "kubelet.md"
MANIFESTS = ROOT / "packaging" / "kubernetes"
LAYOUTS = ("one-quay", "two-quays")


def _yaml_documents(text: str) -> list[Any]:
    """Each YAML document of ``text``; a mapping that gives a key twice is refused, as the
    kubelet's strict decoder (sigs.k8s.io/yaml) refuses it."""
    import yaml

    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        duplicate = _duplicate_key(node)
        if duplicate:
            raise ValueError(duplicate)
    return [document for document in yaml.safe_load_all(text) if document is not None]


def _duplicate_key(node: Any) -> str | None:
    """Where a mapping under ``node`` (a composed YAML node) gives a key twice, if one does.
    Keys compare as the text they are written as: converted to JSON, as the kubelet reads
    YAML, ``1`` and ``"1"`` are one key too."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    return f"key {key.value!r} given twice (line {key.start_mark.line + 1})"
                seen.add(key.value)
            found = _duplicate_key(value)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",
        "a: 1\n'a': 2\n",
        "1: x\n'1': y\n",
        "outer:\n  - inner: 1\n    inner: 2\n",
        "ok: 1\n---\nproviders:\n  - name: a\n    args: []\n    args: [x]\n",
    ],
    ids=["plain", "quoted", "number and string", "in a list", "in a second document"],
)
def test_yaml_with_a_key_given_twice_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="given twice"):
        _yaml_documents(text)


def test_yaml_without_a_key_given_twice_is_read() -> None:
    text = "base: &b {x: 1}\nfirst: *b\nsecond:\n  <<: *b\n  y: 2\nlist: [{a: 1}, {a: 2}]\n"
    assert _yaml_documents(text) == [
        {"base": {"x": 1}, "first": {"x": 1}, "second": {"x": 1, "y": 2},
         "list": [{"a": 1}, {"a": 2}]}
    ]  # fmt: skip


def _documented(kind: str) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    documents = [d for block in blocks for d in _yaml_documents(block)]
    return [d for d in documents if isinstance(d, dict) and d.get("kind") == kind]


def _shipped(layout: str, name: str) -> list[dict[str, Any]]:
    return _yaml_documents((MANIFESTS / layout / name).read_text())


def provider_problems(provider: dict[str, Any]) -> list[str]:
    """Why this package's provider would not work under ``provider``'s entry."""
    problems = []
    name = str(provider.get("name", ""))
    if name != PROVIDER and not name.startswith(f"{PROVIDER}-"):
        problems.append(f"name {name!r} is neither {PROVIDER} nor a link named {PROVIDER}-...")
    if provider.get("apiVersion") != FACTS["credentialprovider"]["apiVersion"]:
        problems.append("apiVersion is not the one this provider speaks")
    tokens = provider.get("tokenAttributes")
    if tokens is None:
        return [*problems, "no tokenAttributes: pods would never pull as their own robot"]
    required = tokens.get("requiredServiceAccountAnnotationKeys") or []
    optional = tokens.get("optionalServiceAccountAnnotationKeys") or []
    if kubelet.ROBOT_ANNOTATION not in required + optional:
        problems.append(f"{kubelet.ROBOT_ANNOTATION} is not passed to the provider")
    if set(kubelet.TLS_ANNOTATIONS) & set(required + optional):
        problems.append("a TLS annotation is passed to the provider (it refuses them)")
    if not set(optional) <= {*kubelet.HOST_ANNOTATIONS, kubelet.ROBOT_ANNOTATION}:
        problems.append("an optional annotation key the provider does not read")
    for entry in provider.get("matchImages") or []:
        host = str(entry).split("/", 1)[0]
        if ":" not in host and f"{host}:443" not in provider["matchImages"]:
            problems.append(f"{host} is listed without {host}:443 (images may name the port)")
    return problems


def test_the_provider_checker_refuses_what_would_not_run_this_provider() -> None:
    """The kubelet accepts each of these entries (tests/test_kubelet_code.py runs them
    through its own validation); this provider would not work under them."""
    (document,) = _shipped("one-quay", "credential-providers.yaml")
    provider = document["providers"][0]
    assert provider_problems(provider) == []
    tokens = provider["tokenAttributes"]
    refused_here = [
        {**provider, "name": "quay"},
        {**provider, "matchImages": ["quay.example.com"]},
        {**provider, "tokenAttributes": {**tokens, "optionalServiceAccountAnnotationKeys":
                                         ["quay.io/ignore-tls-verify"]}},
        {**provider, "tokenAttributes": {**tokens, "requiredServiceAccountAnnotationKeys": []}},
        {**provider, "apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1"},
        {k: v for k, v in provider.items() if k != "tokenAttributes"},
    ]  # fmt: skip
    for wrong in refused_here:
        assert provider_problems(wrong), wrong


def test_golden_requests_are_what_the_kubelet_sends() -> None:
    """The image as the kubelet looks it up (no tag, no digest), and no empty field."""
    for path in sorted(GOLDEN.glob("*.request.json")):
        request = json.loads(path.read_text())
        repository = request["image"].rsplit("/", 1)[-1]
        assert ":" not in repository and "@" not in repository, path.name
        assert all(value not in ("", {}, None) for value in request.values()), path.name
        assert request["image"].split("/", 1)[0] in ("{{registry}}", "{{alias}}"), path.name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shipped_credential_provider_configs(layout: str, tmp_path: Path) -> None:
    """Each layout (which the kubelet accepts: tests/test_kubelet_code.py): each provider has
    its own name and audience; the node's config.toml expects that audience for every image it
    matches; the RBAC lets nodes request exactly those audiences."""
    from docker_credential_quayfed import config
    from docker_credential_quayfed.sources import BY_NAME

    (document,) = _shipped(layout, "credential-providers.yaml")
    providers = document["providers"]
    for provider in providers:
        assert provider_problems(provider) == [], provider["name"]
    audiences = [p["tokenAttributes"]["serviceAccountTokenAudience"] for p in providers]
    assert len(set(audiences)) == len(providers) == (1 if layout == "one-quay" else 2)

    settings = config.parse_text(
        (MANIFESTS / layout / "config.toml")
        .read_text()
        .replace("/etc/pki/tls/certs/quay-ca.pem", str(_empty_file(tmp_path / "ca.pem"))),
        tmp_path / "config.toml",
        BY_NAME,
    )
    for provider, audience in zip(providers, audiences):
        assert provider["args"][:2] == ["--config", "/etc/docker-credential-quayfed/config.toml"]
        for entry in provider["matchImages"]:
            table = settings.kubelet[table_key(entry.split("/", 1)[0])]
            assert table.audience == audience, (entry, table.audience)

    rbac = _shipped(layout, "node-audience-rbac.yaml")
    for audience in audiences:
        assert nodes_may_request(rbac, audience, "builder"), audience
    assert not nodes_may_request(rbac, "some-other-audience", "builder")


@pytest.mark.parametrize("layout", ["one-quay", "two-quays"])
def test_the_1_33_config_is_the_shipped_one_without_cache_type(layout: str) -> None:
    """LAYOUT/credential-providers-1.33.yaml: the 1.34+ file less tokenAttributes.cacheType
    (the 1.33 kubelet's strict decoder refuses it; tests/test_kubelet_code.py runs both)."""
    (newer,) = _shipped(layout, "credential-providers.yaml")
    (alpha,) = _shipped(layout, "credential-providers-1.33.yaml")
    assert alpha["providers"]
    assert all(provider_problems(p) == [] for p in alpha["providers"])
    for provider in alpha["providers"]:
        assert "cacheType" not in provider["tokenAttributes"]
    for provider in newer["providers"]:
        del provider["tokenAttributes"]["cacheType"]
    assert alpha == newer


def _empty_file(path: Path) -> Path:
    path.write_text("")
    return path


def _matches(allowed: list[str], value: str) -> bool:
    return "*" in allowed or value in allowed


def nodes_may_request(documents: list[dict[str, Any]], audience: str, account: str) -> bool:
    """Whether these RBAC objects let group system:nodes pass NodeRestriction's audience check
    for a token of service account ``account`` (any namespace: a ClusterRoleBinding): the
    attributes of facts["node_audience_restriction"]["rbac_check"], matched as RBAC matches a
    rule (verb, API group, resource, resource name; "*" matches any)."""
    check = FACTS["node_audience_restriction"]["rbac_check"]
    roles = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ClusterRole"}
    for binding in (d for d in documents if d["kind"] == "ClusterRoleBinding"):
        ref = binding["roleRef"]
        if (ref["apiGroup"], ref["kind"]) != ("rbac.authorization.k8s.io", "ClusterRole"):
            continue
        if not any(
            (s["kind"], s["name"], s.get("apiGroup")) ==
            ("Group", "system:nodes", "rbac.authorization.k8s.io")
            for s in binding["subjects"]
        ):  # fmt: skip
            continue
        for rule in roles.get(ref["name"], {}).get("rules", []):
            if (
                _matches(rule.get("verbs", []), check["verb"])
                and _matches(rule.get("apiGroups", []), check["apiGroup"])
                and _matches(rule.get("resources", []), audience)
                and (not rule.get("resourceNames") or account in rule["resourceNames"])
            ):
                return True
    return False


def test_the_rbac_check_can_fail() -> None:
    rbac = _shipped("one-quay", "node-audience-rbac.yaml")
    role = next(d for d in rbac if d["kind"] == "ClusterRole")
    binding = next(d for d in rbac if d["kind"] == "ClusterRoleBinding")
    audience = role["rules"][0]["resources"][0]
    assert nodes_may_request(rbac, audience, "builder")
    rule = role["rules"][0]
    wrong_rules = [
        {**rule, "verbs": ["create"]},
        {**rule, "apiGroups": ["authentication.k8s.io"]},
        {**rule, "resources": ["serviceaccounts/token"]},
        {**rule, "resourceNames": ["someone-else"]},
    ]
    for wrong in wrong_rules:
        assert not nodes_may_request([{**role, "rules": [wrong]}, binding], audience, "builder")
    nobody = {**binding, "subjects": [{"kind": "Group", "name": "system:authenticated",
                                       "apiGroup": "rbac.authorization.k8s.io"}]}  # fmt: skip
    assert not nodes_may_request([role, nobody], audience, "builder")


def test_documented_configuration_is_the_shipped_one(tmp_path: Path) -> None:
    """docs/kubelet.md shows the one-Quay files as shipped, and its TOML tables parse."""
    from docker_credential_quayfed import config

    (documented,) = _documented("CredentialProviderConfig")
    assert documented == _shipped("one-quay", "credential-providers.yaml")[0]
    assert _documented("ClusterRole") + _documented("ClusterRoleBinding") == _shipped(
        "one-quay", "node-audience-rbac.yaml"
    )
    (account,) = _documented("ServiceAccount")
    assert kubelet.ROBOT_ANNOTATION in account["metadata"]["annotations"]
    ca = _empty_file(tmp_path / "ca.pem")
    tables = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert tables
    for table in tables:
        text = table.replace("/etc/pki/tls/certs/quay-ca.pem", str(ca))
        settings = config.parse_text(text, tmp_path / "config.toml", BY_NAME)
        assert settings.kubelet
