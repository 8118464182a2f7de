"""The kubelet credential provider: its wire format (pure functions), the node's policy in
config.toml, and round trips of the installed executable against the Quay emulator with two
service accounts' tokens, proving no robot token crosses from one to the other."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_credential_quayfed import config, fastpath, kubelet
from docker_credential_quayfed.errors import ConfigError, UsageError
from docker_credential_quayfed.sources import BY_NAME
from quay_sandbox.issuer import KubernetesIssuer
from quay_sandbox.quay import QuayEmulator
from quay_sandbox.tls import TestPKI
from tests.support.oidc_provider import KubeIssuer
from tests.test_kubelet_golden import (
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
    request_body = json.loads(request("q.example.com/a", "sa"))
    assert response_problems(with_auth, request_body) == []
    assert response_problems(without, request_body) == []


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
        '[kubelet."quay.example.com"]\nrobots = ["team_a+*", "team_b+puller"]\n'
        '[kubelet."quay.other.example:8443"]\nquay_url = "https://quay.other.example:8443/"\n'
        "refresh_margin = 600\ntimeout = 10\n"
    )
    first = settings.kubelet["quay.example.com"]
    assert first.quay_base_url == "https://quay.example.com"
    assert first.allows("team_a+builder") and first.allows("team_b+puller")
    assert not first.allows("team_b+pusher") and not first.allows("TEAM_A+builder")
    second = settings.kubelet["quay.other.example:8443"]
    assert second.quay_base_url == "https://quay.other.example:8443"
    assert second.allows("anyone+at_all")
    assert (second.refresh_margin, second.timeout) == (600, 10.0)
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
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(text)


# -- round trips: two service accounts, one robot annotation -----------------------------------
@pytest.fixture
def node(quay: QuayEmulator, kube_issuer: KubeIssuer, tmp_path: Path) -> GoldenNode:
    return golden_node(quay, kube_issuer, tmp_path)


def token_files(node: GoldenNode) -> list[Path]:
    return sorted(node.cache_dir.glob("*.token"))


def test_no_robot_token_crosses_to_another_service_account(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer, test_pki: TestPKI
) -> None:
    image = f"{quay.host}/quay_federation/app:1"
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
    image = f"{quay.host}/quay_federation/app:1"
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
    image = f"{quay.host}/quay_federation/app:1"
    response = node.run(request(image, kube_issuer.mint("apps", "puller-a"), **robot_annotation()))
    seconds = go_seconds(response.response()["cacheDuration"])
    assert 1100 - 30 <= seconds <= 1100


def test_a_refresh_failure_serves_the_valid_token_uncached(
    node: GoldenNode, quay: QuayEmulator, kube_issuer: KubeIssuer
) -> None:
    """Past the refresh point, with Quay down, the still-valid token is served once more but
    the kubelet is told not to keep it (cacheDuration 0), so the next pull asks again."""
    image = f"{quay.host}/quay_federation/app:1"
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
    image = f"{quay.host}/quay_federation/app:1"
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
        request(f"{quay.host}/quay_federation/app:1", token, **robot_annotation()), args=args
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
    run = node.run(request(f"{quay.host}/quay_federation/app:1", token, **robot_annotation()))
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

    def robot(issuer: str, subject: str) -> kubelet.ServiceAccountRobot:
        return kubelet.ServiceAccountRobot(
            key="q.example.com", robot="o+r", issuer=issuer, source="env", subject=subject
        )

    one = robot("https://k8s", "system:serviceaccount:a:b")
    other = robot("https://k8s", "system:serviceaccount:a:c")
    elsewhere = robot("https://other", "system:serviceaccount:a:b")
    assert len({one.identity, other.identity, elsewhere.identity}) == 3
    assert kubelet.host_key("Quay.io:443") == "quay.io"


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
            request("quay.example.com/org/app:1", token, **merged),
            tmp_path / "absent.toml",
            tmp_path / "cache",
        )
    assert not (tmp_path / "cache").exists()
