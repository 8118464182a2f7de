"""Two crossovers no test caught before the isolation state machine learnt to look for them.

- A node's ``robots`` allow-list is a list of globs matched whole: ``org+alpha`` lets in
  ``org+alpha`` and nothing longer (``org+alphax`` is another robot, of another team maybe).
- While Quay or the issuer fails, the helper serves a still-valid cached token of the *same*
  credential (stale-serve); never another identity's token for the same registry and robot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docker_credential_quayfed import broker, config, kubelet
from docker_credential_quayfed.cache import TokenCache, robot_token_from_jwt
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.deadline import Deadline
from docker_credential_quayfed.errors import (
    ConfigError,
    GrantRefused,
    IssuerError,
    NetworkError,
    QuayfedError,
)
from docker_credential_quayfed.request import RequestContext
from docker_credential_quayfed.sources import BY_NAME
from tests.jwt_factory import fake_jwt

HOST = "quay.example.com"
ROBOT = "org+alpha"
NEIGHBOUR = "org+alphax"
ISSUER = "https://kubernetes.default.svc"
START = 1_700_000_000.0
HOUR = 3600.0


# -- the allow-list ----------------------------------------------------------------------------
def node_settings(*robots: str) -> config.Config:
    text = f'[kubelet."{HOST}"]\naudience = "quay"\nrobots = {json.dumps(list(robots))}\n'
    return config.parse_text(text, Path("/etc/quayfed/config.toml"), BY_NAME)


@pytest.mark.parametrize(
    ("robots", "allowed", "refused"),
    [
        ((ROBOT,), (ROBOT,), (NEIGHBOUR, "org+alph", "org+alpha+x", "org+alpha-1")),
        (("org+alph*",), (ROBOT, NEIGHBOUR, "org+alph"), ("org+beta", "xorg+alpha")),
        (("org+alpha?",), (NEIGHBOUR,), (ROBOT, "org+alphaxy")),
    ],
)
def test_a_robots_glob_matches_the_whole_name(
    robots: tuple[str, ...], allowed: tuple[str, ...], refused: tuple[str, ...]
) -> None:
    table = node_settings(*robots).kubelet[HOST]
    assert [name for name in allowed if not table.allows(name)] == []
    assert [name for name in refused if table.allows(name)] == []


def test_a_pod_naming_a_longer_robot_than_the_allowed_one_is_refused(tmp_path: Path) -> None:
    """Through the provider's flow: refused by the node's policy before any token is read or
    any server asked (the request's service-account token is never exchanged)."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[kubelet."{HOST}"]\naudience = "quay"\nrobots = {json.dumps([ROBOT])}\n'
    )
    request = json.dumps(
        {
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderRequest",
            "image": f"{HOST}/team/app:1",
            "serviceAccountToken": pod_jwt("sa1"),
            "serviceAccountAnnotations": {"quay.io/federated-robot-account": NEIGHBOUR},
        }
    )
    with pytest.raises(ConfigError) as refused:
        kubelet.answer(request, config_path, RequestContext(TokenCache(tmp_path / "cache")))
    assert f"robot {NEIGHBOUR} is not in robots" in refused.value.message


# -- stale-serve -------------------------------------------------------------------------------
def pod_jwt(account: str) -> str:
    """A service-account JWT for ``account`` (unsigned: the broker reads its claims only)."""
    subject = f"system:serviceaccount:apps:{account}"
    return fake_jwt(
        {"iss": ISSUER, "sub": subject, "aud": ["quay"], "iat": START, "exp": START + HOUR}
    )


def pod_registry() -> RegistryConfig:
    """The registry the kubelet builds for a pod: its token is handed over as it is."""
    return RegistryConfig(key=HOST, robot=ROBOT, issuer=ISSUER, source="env", timeout=25.0)


class FailingMint:
    """``broker.mint`` while Quay or the issuer is failing."""

    def __init__(self, failure: QuayfedError) -> None:
        self.failure = failure
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        raise self.failure


OUTAGES = [
    NetworkError("Quay at https://quay.example.com kept answering HTTP 503", "retry later"),
    IssuerError("the issuer answered HTTP 502", "retry later"),
    GrantRefused("the issuer refused the grant (temporarily_unavailable)", "retry later"),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda failure: type(failure).__name__)
def test_an_outage_never_serves_another_identitys_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: QuayfedError
) -> None:
    registry = pod_registry()
    cache = TokenCache(tmp_path / "cache")
    holder, other = pod_jwt("sa1"), pod_jwt("sa3")

    def clock() -> float:
        return START

    request = RequestContext(cache, clock=clock)
    held = broker.identify(registry, request, Deadline(registry.timeout), holder)[0]
    # sa1's token: still valid for 200 s, past its refresh point, so a get tries to mint.
    minted = fake_jwt({"sub": ROBOT, "iat": START + 200 - HOUR, "exp": START + 200})
    cache.write(held, robot_token_from_jwt(HOST, ROBOT, minted, START))
    failing = FailingMint(outage)
    monkeypatch.setattr(broker, "mint", failing)
    with pytest.raises(QuayfedError) as raised:
        broker.robot_token(registry, request, oidc_token=other)
    assert raised.value is outage and failing.calls == 1, "sa3 was not even asked for"

    # The stale-serve itself still serves the token's own identity.
    outcome = broker.robot_token(registry, request, oidc_token=holder)
    assert (outcome.how, outcome.token.token) == (broker.STALE, minted)
