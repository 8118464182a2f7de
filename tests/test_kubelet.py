"""The kubelet credential provider: its wire format (pure functions), the node's policy in
config.toml, and round trips of the installed executable against the Quay emulator with two
service accounts' tokens, proving no robot token crosses from one to the other."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_credential_quayfed import broker, config, fastpath, kubelet
from docker_credential_quayfed.cache import TokenCache
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.deadline import Deadline
from docker_credential_quayfed.errors import ConfigError, UsageError
from docker_credential_quayfed.protocol import table_key
from docker_credential_quayfed.request import RequestContext
from docker_credential_quayfed.sources import BY_NAME
from quay_sandbox.issuer import KubernetesIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.support.oidc_provider import KubeIssuer, OIDCProvider
from tests.support.requests import request_here
from tests.test_kubelet_golden import (
    NODE_ROBOT,
    PULLER_ROBOT,
    GoldenNode,
    go_seconds,
    golden_node,
    provider_executable,
    response_problems,
    run_provider,
)

API = "credentialprovider.kubelet.k8s.io/v1"
REQUEST_KIND = "CredentialProviderRequest"


def request(image: str, token: str = "", **annotations: str) -> str:
    body: dict[str, object] = {"apiVersion": API, "kind": REQUEST_KIND, "image": image}
    if token:
        body["serviceAccountToken"] = token
    if annotations:
        body["serviceAccountAnnotations"] = annotations
    return json.dumps(body)


def robot_annotation(robot: str = PULLER_ROBOT) -> dict[str, str]:
    return {kubelet.ROBOT_ANNOTATION: robot}


# -- the wire format -----------------------------------------------------------------------------
def test_parse_request() -> None:
    parsed = kubelet.parse_request(
        request(" quay.example.com/org/app:1 ", "a.b.c", **robot_annotation("org+robot"))
    )
    assert parsed.image == "quay.example.com/org/app:1"
    assert parsed.service_account_token == "a.b.c"
    assert parsed.annotation(kubelet.ROBOT_ANNOTATION) == "org+robot"
    assert "a.b.c" not in repr(parsed)
    bare = kubelet.parse_request(
        json.dumps({"apiVersion": API, "kind": REQUEST_KIND, "image": "q.example.com/a",
                    "serviceAccountToken": None, "serviceAccountAnnotations": None})
    )  # fmt: skip
    assert bare.service_account_token == "" and bare.annotations == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a JSON"),
        ("{", "not a JSON"),
        ("[1]", "not a JSON object"),
        ("[" * 100000, "not a JSON"),
        (json.dumps({"kind": REQUEST_KIND, "image": "q.example.com/a"}), "unsupported apiVersion"),
        (json.dumps({"apiVersion": 1, "kind": REQUEST_KIND, "image": "q.example.com/a"}),
         "unsupported apiVersion"),
        (json.dumps({"apiVersion": API, "kind": "Pod", "image": "q.example.com/a"}),
         "unexpected kind"),
        (json.dumps({"apiVersion": API, "kind": REQUEST_KIND, "image": " "}), "names no image"),
        (json.dumps({"apiVersion": API, "kind": REQUEST_KIND}), "names no image"),
        (json.dumps({"apiVersion": API, "kind": REQUEST_KIND, "image": "q.example.com/a",
                     "serviceAccountToken": 7}), "not a string"),
        (json.dumps({"apiVersion": API, "kind": REQUEST_KIND, "image": "q.example.com/a",
                     "serviceAccountAnnotations": {"a": 1}}), "map of strings"),
    ],
)  # fmt: skip
def test_parse_request_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        kubelet.parse_request(text)
    assert "\n" not in str(caught.value)


def test_a_refused_request_never_shows_its_token() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    for api_version in ("v1", token):
        text = json.dumps({"apiVersion": api_version, "kind": REQUEST_KIND,
                           "image": "q.example.com/a", "serviceAccountToken": token})  # fmt: skip
        with pytest.raises(UsageError) as caught:
            kubelet.parse_request(text)
        assert token not in str(caught.value) and "eyJ" not in str(caught.value)


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("quay.example.com/org/app:1", "quay.example.com"),
        ("quay.example.com:8443/org/app@sha256:abc", "quay.example.com:8443"),
        ("localhost:5000/app", "localhost:5000"),
        ("127.0.0.1:5000/org/app", "127.0.0.1:5000"),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert kubelet.registry_of(image) == registry


@pytest.mark.parametrize(
    "image", ["nginx", "library/nginx:1", "quay.example.com", "user@quay.example.com/a", "a b/c"]
)
def test_registry_of_refuses_images_without_a_registry_host(image: str) -> None:
    with pytest.raises(UsageError, match="names no registry host"):
        kubelet.registry_of(image)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3300, "55m0s"), (3600, "1h0m0s"), (3661.9, "1h1m1s"), (59, "59s"), (0, "0s"), (-5, "0s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert kubelet.go_duration(seconds) == text
    assert go_seconds(text) == max(int(seconds), 0)


def test_encode_response() -> None:
    with_auth = json.loads(kubelet.encode_response("q.example.com:8443", ("o+r", "tok"), 3300))
    assert with_auth == {
        "apiVersion": API,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": "55m0s",
        "auth": {"q.example.com:8443": {"username": "o+r", "password": "tok"}},
    }
    without = json.loads(kubelet.encode_response("q.example.com", None, 0))
    assert "auth" not in without and without["cacheDuration"] == "0s"
    request_body = json.loads(request("q.example.com:8443/a", "sa"))
    assert response_problems(with_auth, request_body) == []
    assert response_problems(without, request_body) == []
    # auth answers for the registry as the image names it, the port included
    elsewhere = json.loads(request("q.example.com/a", "sa"))
    assert any("neither the image's registry" in p for p in response_problems(with_auth, elsewhere))


def test_an_image_naming_port_443_is_answered_for_that_form() -> None:
    """The kubelet's URLsMatch tells quay.example.com from quay.example.com:443
    (tests/test_kubelet_code.py): ``auth`` names the host as the image does, and the node's
    table is found either way."""
    image = "quay.example.com:443/org/app"
    registry = kubelet.registry_of(image)
    assert registry == "quay.example.com:443" and table_key(registry) == "quay.example.com"
    response = json.loads(kubelet.encode_response(registry, ("o+r", "tok"), 60))
    assert response_problems(response, json.loads(request(image, "sa"))) == []
    bare = json.loads(kubelet.encode_response("quay.example.com", ("o+r", "tok"), 60))
    assert response_problems(bare, json.loads(request(image, "sa")))


def test_called_as_the_provider() -> None:
    assert fastpath.called_as_kubelet_provider("/usr/libexec/kubelet/quay-credential-provider")
    assert fastpath.called_as_kubelet_provider("quay-credential-provider.pyz")
    assert not fastpath.called_as_kubelet_provider("/usr/bin/docker-credential-quayfed")
    assert not fastpath.called_as_kubelet_provider("")


# -- the node's policy ---------------------------------------------------------------------------
def parse(text: str) -> config.Config:
    return config.parse_text(text, Path("/etc/quayfed/config.toml"), BY_NAME)


def test_kubelet_tables() -> None:
    settings = parse(
        '[kubelet."quay.example.com"]\naudience = "quay.example.com"\n'
        'robots = ["team_a+*", "team_b+puller"]\n'
        '[kubelet."quay.other.example:8443"]\naudience = "other"\n'
        'quay_url = "https://quay.other.example:8443/"\n'
        'allow_override_to = ["quay.example.com"]\nunannotated = "node"\n'
        "refresh_margin = 600\ntimeout = 10\n"
    )
    first = settings.kubelet["quay.example.com"]
    assert first.quay_base_url == "https://quay.example.com"
    assert first.allows("team_a+builder") and first.allows("team_b+puller")
    assert not first.allows("team_b+pusher") and not first.allows("TEAM_A+builder")
    assert (first.audience, first.allow_override_to, first.unannotated) == (
        "quay.example.com",
        (),
        "skip",
    )
    second = settings.kubelet["quay.other.example:8443"]
    assert second.quay_base_url == "https://quay.other.example:8443"
    assert second.allows("anyone+at_all")
    assert (second.refresh_margin, second.timeout) == (600, 10.0)
    assert (second.audience, second.allow_override_to, second.unannotated) == (
        "other",
        ("quay.example.com",),
        "node",
    )
    assert settings.registries == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[kubelet."Quay.example.com"]', 'write [kubelet."quay.example.com"]'),
        ('[kubelet."https://quay.example.com"]', "not a registry host"),
        ('[kubelet."quay.example.com:443"]', 'write [kubelet."quay.example.com"]'),
        ("kubelet = 1", "'kubelet' must be a table"),
        ('[kubelet]\n"quay.example.com" = 1', "must be a table"),
        ('[kubelet."q.example.com"]\ninsecure_skip_tls_verify = true', "cannot be turned off"),
        ('[kubelet."q.example.com"]\nallow_insecure_http = true', "cannot be turned off"),
        ('[kubelet."q.example.com"]\nrobot = "a+b"', "unknown key 'robot'"),
        ('[kubelet."q.example.com"]\nquay_url = "http://q.example.com"', "not an https URL"),
        ('[kubelet."q.example.com"]\nquay_url = 5', "quay_url must be a string"),
        ('[kubelet."q.example.com"]\nrobots = "a+*"', "robots must be a list"),
        ('[kubelet."q.example.com"]\nrobots = ["a +b"]', "robots must be a list"),
        ('[kubelet."q.example.com"]\ntimeout = 90', "timeout must be 1 to 55"),
        ('[kubelet."q.example.com"]\ntimeout = true', "timeout must be 1 to 55"),
        ('[kubelet."q.example.com"]\nrefresh_margin = -1', "refresh_margin must be"),
        ('[kubelet."q.example.com"]\nca_bundle = "/nonexistent/ca.pem"', "cannot read"),
    ],
)
def test_kubelet_tables_refused(text: str, message: str) -> None:
    if "audience" not in text and text.startswith("[kubelet."):
        text = text.replace("]", ']\naudience = "quay"', 1)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(text)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("robots = []", 'is missing audience; add audience = "q.example.com"'),
        ('audience = ""', "audience must be a string"),
        ("audience = 5", "audience must be a string"),
        ('audience = "quay"\nallow_override_to = "q2.example.com"', "allow_override_to must be"),
        ('audience = "quay"\nallow_override_to = ["Q2.example.com"]', "allow_override_to must be"),
        ('audience = "quay"\nallow_override_to = ["q2.example.com:443"]', "allow_override_to"),
        ('audience = "quay"\nallow_override_to = [""]', "allow_override_to must be"),
        ('audience = "quay"\nunannotated = "anonymous"', "use one of: skip, node, refuse"),
    ],
)
def test_kubelet_policy_keys_refused(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(f'[kubelet."q.example.com"]\n{table}\n')


# -- round trips: two service accounts, one robot annotation -----------------------------------
@pytest.fixture
def node(quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path) -> GoldenNode:
    return golden_node(quay, kube_issuer, tmp_path)


def token_files(node: GoldenNode) -> list[Path]:
    return sorted(node.cache_dir.glob("*.token"))


def test_no_robot_token_crosses_to_another_service_account(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, test_pki: TestPKI
) -> None:
    image = f"{quay.host}/quay_federation/app"
    first = node.run(request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()))
    token = first.response()["auth"][quay.host]["password"]
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1
    assert len(token_files(node)) == 1

    # Same robot annotation, same image, another service account that the robot does not
    # trust: Quay is asked (the cache is not consulted for it) and refuses; nothing is served.
    other = kube_issuer.mint("apps", "puller-b")
    refused = node.run(request(image, other, **robot_annotation()))
    line = refused.refused()
    assert "Quay refused the exchange" in line and "system:serviceaccount:apps:puller-b" in line
    assert token not in refused.stderr and other not in refused.stderr
    assert quay.counters_snapshot()["exchanges_attempted"] == 2
    # The same name in another namespace gets nothing either; nor does the very same
    # subject from another cluster's issuer (the cache key holds iss as well as sub).
    elsewhere = node.run(
        request(image, kube_issuer.mint("other", "puller-a"), **robot_annotation())
    )
    assert "Quay refused" in elsewhere.refused()
    other_cluster = KubernetesIssuer()
    server = other_cluster.start(pki=test_pki)
    try:
        foreign = other_cluster.mint("apps", "puller-a", audience="quay")
        assert "Quay refused" in node.run(request(image, foreign, **robot_annotation())).refused()
    finally:
        server.close()
    assert quay.counters_snapshot()["exchanges_attempted"] == 4

    # The first account is still answered from its own cache entry, without asking Quay.
    again = node.run(request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()))
    assert again.response()["auth"][quay.host]["password"] == token
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1
    assert len(token_files(node)) == 1


def test_two_trusted_service_accounts_get_their_own_robot_tokens(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    quay.federate(PULLER_ROBOT, kube_issuer.issuer, "system:serviceaccount:apps:puller-b")
    image = f"{quay.host}/quay_federation/app"
    answers = [
        node.run(request(image, kube_issuer.mint("apps", name), **robot_annotation()))
        for name in ("puller-a", "puller-b", "puller-a", "puller-b")
    ]
    passwords = [a.response()["auth"][quay.host]["password"] for a in answers]
    assert passwords[0] == passwords[2] and passwords[1] == passwords[3]
    assert quay.counters_snapshot()["exchanges_succeeded"] == 2
    assert len(token_files(node)) == 2


def test_cache_duration_follows_the_token_and_the_refresh_margin(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    quay.set_token_lifetime(1200)
    node.config.write_text(
        node.config.read_text().replace(
            'robots = ["quay_federation+puller_*"]',
            'robots = ["quay_federation+puller_*"]\nrefresh_margin = 100',
            1,
        )
    )
    image = f"{quay.host}/quay_federation/app"
    response = node.run(request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()))
    seconds = go_seconds(response.response()["cacheDuration"])
    assert 1100 - 30 <= seconds <= 1100


@pytest.mark.parametrize("lifetime", [10**9, 10**300], ids=["1e9s", "1e300s"])
def test_a_far_exp_from_quay_is_kept_no_longer_than_quay_issues(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, lifetime: int
) -> None:
    """An exp of 1e308 once made cacheDuration overflow ("internal error (OverflowError)") and
    was served for ever: the kubelet is now told at most MAX_ROBOT_TOKEN_LIFETIME."""
    quay.set_token_lifetime(lifetime)
    image = f"{quay.host}/quay_federation/app"
    token = kube_issuer.mint("apps", "puller-a")
    first = node.run(request(image, token, **robot_annotation()))
    seconds = go_seconds(first.response()["cacheDuration"])
    assert 0 < seconds <= fastpath.MAX_ROBOT_TOKEN_LIFETIME
    again = node.run(request(image, token, **robot_annotation()))
    assert again.response()["auth"] == first.response()["auth"]  # kept, and read back
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1


def test_a_refresh_failure_serves_the_valid_token_uncached(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """Past the refresh point, with Quay down, the still-valid token is served once more but
    the kubelet is told not to keep it (cacheDuration 0), so the next pull asks again."""
    image = f"{quay.host}/quay_federation/app"
    ask = request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation())
    token = node.run(ask).response()["auth"][quay.host]["password"]
    # The cache file may shorten a token's life (never lengthen it): make it due for refresh.
    (entry,) = token_files(node)
    now = time.time()
    lines = [
        f"issued_at {now - 400!r}" if line.startswith("issued_at ")
        else f"expires_at {now + 200!r}" if line.startswith("expires_at ")
        else line
        for line in entry.read_text().split("\n")
    ]  # fmt: skip
    entry.write_text("\n".join(lines))
    quay.set_down()
    served = node.run(ask)
    response = served.response()
    assert response["auth"][quay.host]["password"] == token
    assert response["cacheDuration"] == "0s"
    assert "refreshing the robot token failed" in served.stderr
    assert "serving the cached robot token" in served.stderr


def test_the_kubelet_subcommand_and_env_config_are_the_same_provider(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    image = f"{quay.host}/quay_federation/app"
    env = {**node.env, "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(node.config)}
    via_env = run_provider(
        request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()), env=env
    )
    via_subcommand = run_provider(
        request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()),
        executable=provider_executable("docker-credential-quayfed"),
        args=("kubelet", f"--config={node.config}"),
        env=node.env,
    )
    # The single-file zipapp installed under the provider's name dispatches on argv[0].
    renamed = tmp_path / "bin" / "quay-credential-provider"
    renamed.parent.mkdir()
    renamed.symlink_to(provider_executable("docker-credential-quayfed"))
    via_name = run_provider(
        request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()),
        executable=renamed,
        args=("--config", str(node.config)),
        env=node.env,
    )
    responses = [run.response() for run in (via_env, via_subcommand, via_name)]
    for response in responses:  # a second may pass between the runs
        response["cacheDuration"] = abs(go_seconds(response["cacheDuration"]) - 3300) <= 30
    assert responses[0] == responses[1] == responses[2]
    assert responses[0]["cacheDuration"] is True
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--config",), "--config needs a path"),
        (("--config=",), "--config needs a path"),
        (("--verbose",), "unknown argument"),
        (("--config", "/nonexistent/config.toml"), "no configuration file at"),
    ],
)
def test_bad_arguments_and_missing_config(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, args: tuple[str, ...],
    message: str,
) -> None:  # fmt: skip
    token = kube_issuer.mint("apps", "puller-a")
    run = node.run(
        request(f"{quay.host}/quay_federation/app", token, **robot_annotation()), args=args
    )
    line = run.refused()
    assert message in line and token not in line


def test_oversized_request_and_help(node: GoldenNode) -> None:
    assert "over 65536 bytes" in node.run(" " * 70000).refused()
    shown = node.run("", args=("--help",))
    assert shown.returncode == 0 and "CredentialProviderRequest" in shown.stdout


def test_quay_down_is_one_line(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    quay.set_down()
    token = kube_issuer.mint("apps", "puller-a")
    run = node.run(request(f"{quay.host}/quay_federation/app", token, **robot_annotation()))
    line = run.refused()
    assert "503" in line and token not in line


def _jwt(header: dict[str, object], body: dict[str, object]) -> str:
    import base64

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(body)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({"alg": "RS256"}, {"iss": "https://k8s", "sub": "system:serviceaccount:a:b"}, "no kid"),
        ({"kid": "k"}, {"sub": "system:serviceaccount:a:b"}, "no iss or sub"),
        ({"kid": "k"}, {"iss": "https://k8s", "sub": ""}, "no iss or sub"),
        ({"kid": "k"}, {"iss": "https://k8s", "sub": "s", "exp": time.time() - 5}, "has expired"),
    ],
)
def test_service_account_token_refused(
    header: dict[str, object], body: dict[str, object], message: str
) -> None:
    token = _jwt(header, body)
    with pytest.raises(UsageError, match=message) as caught:
        kubelet._service_account(token)
    assert token not in str(caught.value)


def test_service_account_identity() -> None:
    token = _jwt({"kid": "k"}, {"iss": "https://k8s", "sub": "system:serviceaccount:a:b",
                                "exp": time.time() + 600})  # fmt: skip
    assert kubelet._service_account(token) == ("https://k8s", "system:serviceaccount:a:b")

    pod = RegistryConfig(key="q.example.com", robot="o+r", issuer="https://k8s", source="env")

    def key(issuer: str, subject: str, audience: str = "q.example.com") -> str:
        claims = {"iss": issuer, "sub": subject, "aud": audience, "exp": time.time() + 600}
        request = request_here()
        return broker.identify(pod, request, Deadline(5), _jwt({"kid": "k"}, claims))[0].digest

    one = key("https://k8s", "system:serviceaccount:a:b")
    other = key("https://k8s", "system:serviceaccount:a:c")
    elsewhere = key("https://other", "system:serviceaccount:a:b")
    other_audience = key("https://k8s", "system:serviceaccount:a:b", "other.example.com")
    assert len({one, other, elsewhere, other_audience}) == 4
    assert table_key("Quay.io:443") == "quay.io"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"quay.io/host-override": "https://quay.example.com/x"}, "is not a registry host"),
        ({"quay.io/host": "quay example"}, "is not a registry host"),
        ({"quay.io/host": "a.example.com", "quay.io/host-override": "b.example.com"}, "different"),
        ({kubelet.ROBOT_ANNOTATION: "robot-without-namespace"}, "not a full robot name"),
        ({kubelet.ROBOT_ANNOTATION: "org+" + "r" * 300}, "not a full robot name"),
        ({"quay.io/plain-http": "yes"}, "refusing the annotation quay.io/plain-http"),
    ],
)
def test_annotations_refused_before_any_file_is_read(
    annotations: dict[str, str], message: str, tmp_path: Path
) -> None:
    token = _jwt({"kid": "k"}, {"iss": "https://k8s", "sub": "system:serviceaccount:a:b"})
    merged = {kubelet.ROBOT_ANNOTATION: "org+robot", **annotations}
    with pytest.raises(UsageError, match=message):
        kubelet.answer(
            request("quay.example.com/org/app", token, **merged),
            tmp_path / "absent.toml",
            RequestContext(TokenCache(tmp_path / "cache")),
        )
    assert not (tmp_path / "cache").exists()


# -- isolation: the node's tables decide where a pod's token may go -----------------------------
def edit_config(node: GoldenNode, table: str, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` inside the ``[kubelet."TABLE"]`` table of the node's config."""
    text = node.config.read_text()
    start = text.index(f'[kubelet."{table}"]')
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    assert old in text[start:end], (table, old)
    node.config.write_text(text[:start] + text[start:end].replace(old, new) + text[end:])


def alias_of(quay: QuayEmulator) -> str:
    """The node's second registry host: the same Quay as ``localhost:port``."""
    return f"localhost:{quay.host.rsplit(':', 1)[1]}"


def test_host_override_needs_the_image_hosts_opt_in(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """An image on B overridden to A: B's table must list A in allow_override_to."""
    alias = alias_of(quay)
    edit_config(node, alias, f'allow_override_to = ["{quay.host}"]\n', "")
    token = kube_issuer.mint("apps", "puller-a")
    ask = request(f"{alias}/quay_federation/app", token, **robot_annotation(),
                  **{"quay.io/host-override": quay.host})  # fmt: skip
    line = node.run(ask).refused()
    assert f'[kubelet."{alias}"] does not let quay.io/host-override send its pulls' in line
    assert f'add allow_override_to = ["{quay.host}"] to [kubelet."{alias}"]' in line
    assert quay.counters_snapshot()["exchanges_attempted"] == 0
    assert token not in line


def test_host_override_lends_no_robot_the_image_host_forbids(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """A's robots allow puller_a, B's do not: an image on B overridden to A gets nothing."""
    alias = alias_of(quay)
    edit_config(node, alias, "quay_federation+puller_*", "quay_federation+other_*")
    ask = request(f"{alias}/quay_federation/app", kube_issuer.mint("apps", "puller-a"),
                  **robot_annotation(), **{"quay.io/host-override": quay.host})  # fmt: skip
    line = node.run(ask).refused()
    assert f'robot {PULLER_ROBOT} is not in robots for [kubelet."{alias}"]' in line
    assert quay.counters_snapshot()["exchanges_attempted"] == 0
    # With the robot allowed on both hosts the same request is answered, for the image's host.
    edit_config(node, alias, "quay_federation+other_*", "quay_federation+puller_*")
    answered = node.run(ask).response()
    assert list(answered["auth"]) == [alias]
    assert answered["auth"][alias]["username"] == PULLER_ROBOT


@pytest.mark.parametrize(
    ("audience", "shown"),
    [("quay.other.example", "quay.other.example"), (["a", "b"], "a, b"), ([], "none")],
)
def test_a_token_for_another_audience_is_refused_before_any_request(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, audience: str | list[str],
    shown: str,
) -> None:  # fmt: skip
    token = kube_issuer.mint("apps", "puller-a", audience=audience)
    line = node.run(
        request(f"{quay.host}/quay_federation/app", token, **robot_annotation())
    ).refused()
    assert f"the service-account token is for audience {shown}, not 'quay'" in line
    assert f'[kubelet."{quay.host}"] expects' in line
    assert "serviceAccountTokenAudience: quay" in line
    assert quay.counters_snapshot()["exchanges_attempted"] == 0
    assert token not in line and not token_files(node)


def test_the_audience_may_be_one_of_several(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    token = kube_issuer.mint(
        "apps", "puller-a", audience=["https://kubernetes.default.svc", "quay"]
    )
    response = node.run(request(f"{quay.host}/quay_federation/app", token, **robot_annotation()))
    assert response.response()["auth"][quay.host]["username"] == PULLER_ROBOT


def test_an_override_needs_the_audience_of_the_quay_it_names(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """The token goes to A's Quay, so it must be meant for A, whatever B's audience."""
    alias = alias_of(quay)
    edit_config(node, quay.host, 'audience = "quay"', 'audience = "quay-a"')
    ask = request(f"{alias}/quay_federation/app", kube_issuer.mint("apps", "puller-a"),
                  **robot_annotation(), **{"quay.io/host-override": quay.host})  # fmt: skip
    line = node.run(ask).refused()
    assert f"""not 'quay-a' that [kubelet."{quay.host}"] expects""" in line
    assert quay.counters_snapshot()["exchanges_attempted"] == 0


# -- service accounts that name no robot -----------------------------------------------------
def unannotated_request(quay: QuayEmulator, kube_issuer: KubeIssuer) -> str:
    return request(f"{quay.host}/quay_federation/app", kube_issuer.mint("apps", "puller-a"))


def test_unannotated_skip_answers_no_credentials_for_an_hour(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """The default: no auth, cached by the kubelet long enough that it stops asking."""
    assert config.load(BY_NAME, node.config).kubelet[quay.host].unannotated == "skip"
    ask = unannotated_request(quay, kube_issuer)
    run = node.run(ask)
    response = run.response()
    assert "auth" not in response
    assert response["cacheDuration"] == "1h0m0s"
    assert go_seconds(response["cacheDuration"]) == kubelet.UNANNOTATED_CACHE_SECONDS
    assert response_problems(response, json.loads(ask)) == []
    assert run.stderr == ""
    assert quay.counters_snapshot()["exchanges_attempted"] == 0


def test_unannotated_node_answers_with_the_node_identity(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    edit_config(node, quay.host, 'robots = ["quay_federation+puller_*"]',
                'robots = ["quay_federation+puller_*"]\nunannotated = "node"')  # fmt: skip
    ask = unannotated_request(quay, kube_issuer)
    response = node.run(ask).response()
    assert response["auth"][quay.host]["username"] == NODE_ROBOT
    seconds = go_seconds(response["cacheDuration"])
    assert quay.token_lifetime - 300 - 30 <= seconds <= quay.token_lifetime - 300
    assert response_problems(response, json.loads(ask)) == []
    assert quay.counters_snapshot()["exchanges_succeeded"] == 1


def test_unannotated_node_without_a_node_identity_is_a_config_error(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    alias = alias_of(quay)
    edit_config(node, alias, 'unannotated = "refuse"', 'unannotated = "node"')
    ask = request(f"{alias}/quay_federation/app", kube_issuer.mint("apps", "puller-a"))
    line = node.run(ask).refused()
    assert f'unannotated = "node" but there is no [registries."{alias}"] table' in line


def test_unannotated_refuse_is_an_error_the_kubelet_logs(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    alias = alias_of(quay)
    run = node.run(request(f"{alias}/quay_federation/app", kube_issuer.mint("apps", "puller-a")))
    line = run.refused()
    assert run.returncode == 2
    assert line.startswith("quay-credential-provider: the service account has no ")
    assert "requiredServiceAccountAnnotationKeys" in line


# -- the provider's name and its cache directory -------------------------------------------------
def test_refusals_begin_with_the_name_the_kubelet_started_it_by(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    """A second provider entry is a link with its own name: its lines say which one failed."""
    linked = tmp_path / "bin" / "quay-credential-provider-partner"
    linked.parent.mkdir()
    linked.symlink_to(provider_executable())
    ask = request(f"{quay.host}/quay_federation/app", kube_issuer.mint("apps", "puller-a"),
                  **robot_annotation("other_org+admin"))  # fmt: skip
    line = node.run(ask, executable=linked).refused()
    assert line.startswith("quay-credential-provider-partner: robot other_org+admin is not")
    assert node.run(ask).refused().startswith("quay-credential-provider: robot")
    subcommand = node.run(
        ask,
        executable=provider_executable("docker-credential-quayfed"),
        args=("kubelet", "--config", str(node.config)),
    )
    assert subcommand.refused().startswith("docker-credential-quayfed: robot")
    assert kubelet._program("/usr/lib/python3/dist-packages/x/__main__.py") == kubelet.PROGRAM
    assert kubelet._program("/opt/quay-credential-provider.pyz") == "quay-credential-provider"


def test_cache_dir_holds_everything_the_provider_keeps(
    quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path
) -> None:
    """--cache-dir moves discovery documents, kept JWTs and locks too: the kubelet user's own
    cache directory is never touched."""
    robot = "quay_federation+node_password"
    quay.add_robot(robot, federation=[(oidc_provider.issuer, "jdoe")])
    settings = {
        "robot": robot,
        "issuer": oidc_provider.issuer,
        "source": "password",
        "client_id": oidc_provider.public_client,
        "username": "jdoe",
        "password_env": "QUAYFED_TEST_NODE_PASSWORD",
        "quay_url": quay.url,
        "ca_bundle": str(oidc_provider.ca_cert),
    }
    node_config = tmp_path / "config.toml"
    node_config.write_text(
        f"[registries.{json.dumps(quay.host)}]\n"
        + "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())
    )
    cache_dir, home, xdg_cache = (tmp_path / name for name in ("cache", "home", "xdg-cache"))
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(xdg_cache),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": "",
        "QUAYFED_TEST_NODE_PASSWORD": oidc_provider.users["jdoe"],
    }
    run = run_provider(
        request(f"{quay.host}/quay_federation/app"),
        args=("--config", str(node_config), "--cache-dir", str(cache_dir)),
        env=env,
    )
    assert run.response()["auth"][quay.host]["username"] == robot
    assert not xdg_cache.exists()
    assert [p for p in home.rglob("*")] == []
    from docker_credential_quayfed import logins, oidc

    registry = config.parse_text(node_config.read_text(), node_config, BY_NAME).registries[
        quay.host
    ]
    kept = {p.name for p in cache_dir.iterdir()}
    assert oidc.discovery_name(oidc_provider.issuer) in kept
    assert logins.jwt_name(broker.key_for(registry, request_here()).principal) in kept
    assert any(name.endswith(".token") for name in kept)


def test_a_cache_dir_it_cannot_use_is_named_as_the_kubelet_gave_it(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    """The hint names --cache-dir when that flag chose the directory (the node has no
    DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR to set), and the variable otherwise."""
    foreign = tmp_path / "not-a-directory"
    foreign.write_text("a file where the cache should be")
    ask = request(
        f"{quay.host}/quay_federation/app", kube_issuer.mint("apps", "puller-a"),
        **robot_annotation(),
    )  # fmt: skip
    flagged = node.run(ask, args=("--config", str(node.config), "--cache-dir", str(foreign)))
    assert "point --cache-dir at a writable private directory" in flagged.refused()
    by_variable = node.run(
        ask,
        args=("--config", str(node.config)),
        env={**node.env, "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(foreign)},
    )
    assert "point DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR at a" in by_variable.refused()


def test_the_provider_s_hints_name_no_command_the_node_may_lack(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """A remembered network failure: get's hint says 'docker-credential-quayfed erase'; a node
    may have only quay-credential-provider, so the provider's says when it tries again."""
    ask = request(
        f"{quay.host}/quay_federation/app", kube_issuer.mint("apps", "puller-a"),
        **robot_annotation(),
    )  # fmt: skip
    quay.set_down()
    first = node.run(ask).refused()
    second = node.run(ask).refused()
    quay.set_down(False)
    assert "not retrying" in second, (first, second)
    assert "docker-credential-quayfed" not in second.split(":", 1)[1]
    assert "the next try comes once that time has passed" in second


# -- several organizations: one robot each ---------------------------------------------------------
def test_an_annotation_naming_a_robot_per_organization_answers_the_image_s_own(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """The image's namespace chooses the robot; the answer is for that namespace's path, per
    image, and holds no robot of another organization."""
    node.config.write_text(
        node.config.read_text().replace(
            'robots = ["quay_federation+puller_*"]',
            'robots = ["quay_federation+puller_*", "partner_org+puller"]',
            1,
        )
    )
    quay.federate("partner_org+puller", kube_issuer.issuer, "system:serviceaccount:apps:puller-a")
    token = kube_issuer.mint("apps", "puller-a")
    named = robot_annotation(f"{PULLER_ROBOT}, partner_org+puller")
    ours = node.run(request(f"{quay.host}/quay_federation/app:1", token, **named)).response()
    assert ours["cacheKeyType"] == "Image"
    assert list(ours["auth"]) == [f"{quay.host}/quay_federation"]
    assert ours["auth"][f"{quay.host}/quay_federation"]["username"] == PULLER_ROBOT
    theirs = node.run(request(f"{quay.host}/partner_org/app:1", token, **named)).response()
    assert list(theirs["auth"]) == [f"{quay.host}/partner_org"]
    assert theirs["auth"][f"{quay.host}/partner_org"]["username"] == "partner_org+puller"
    nobody = node.run(request(f"{quay.host}/third_org/app:1", token, **named)).response()
    assert "auth" not in nobody and nobody["cacheKeyType"] == "Image"
    one = node.run(request(f"{quay.host}/quay_federation/app:1", token, **robot_annotation()))
    assert list(one.response()["auth"]) == [quay.host], "one robot: answered as before"


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ("org+alpha, org+beta", "names two robots of one organization"),
        ("org+alpha, not a robot", "is not a full robot name"),
    ],
)
def test_an_annotation_of_several_robots_is_checked(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, annotation: str, message: str
) -> None:
    ask = request(
        f"{quay.host}/org/app:1", kube_issuer.mint("apps", "puller-a"),
        **robot_annotation(annotation),
    )  # fmt: skip
    assert message in node.run(ask).refused()
