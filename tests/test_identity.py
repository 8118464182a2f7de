"""Whose credential: the one key (identity.credential_key) and what it keeps apart.

The JWT readers are checked against ``json`` (the fast path's light reader must agree with the
full path's, or say it cannot tell); the end-to-end cases run the installed helper against the
third-party issuer and the Quay emulator: a token file or a command that starts handing over
another identity's JWT never gets the previous identity's robot token, on the fast path or
the full path.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docker_credential_quayfed import fastpath, identity
from docker_credential_quayfed.identity import Principal, credential_key
from docker_credential_quayfed.protocol import NOT_FOUND
from tests import test_integration
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt
from tests.support.oidc_provider import KubeIssuer
from tests.test_integration import ROBOT, Setup, answer_of, base_settings

setup = test_integration.setup  # the installed helper's configuration, servers running


# -- the key ---------------------------------------------------------------------------------
def test_every_part_of_the_key_tells_credentials_apart() -> None:
    principal = Principal(identity.JWT, "https://issuer", "job-1", "quay")
    base = credential_key("quay.example.com", "org+bot", "https://quay.example.com", principal)
    variants = [
        credential_key("other.example.com", "org+bot", "https://quay.example.com", principal),
        credential_key("quay.example.com", "org+other", "https://quay.example.com", principal),
        credential_key("quay.example.com", "org+bot", "https://mirror.example.com", principal),
        *(
            credential_key("quay.example.com", "org+bot", "https://quay.example.com", p)
            for p in (
                Principal("password", "https://issuer", "job-1", "quay"),
                Principal(identity.JWT, "https://other-issuer", "job-1", "quay"),
                Principal(identity.JWT, "https://issuer", "job-2", "quay"),
                Principal(identity.JWT, "https://issuer", "job-1", "other"),
            )
        ),
    ]
    assert len({base.digest, *(v.digest for v in variants)}) == len(variants) + 1
    assert all(fastpath.is_digest(v.digest) for v in variants)


@given(st.lists(st.text(max_size=8), min_size=7, max_size=7), st.integers(0, 6))
def test_no_two_different_keys_share_a_text(parts: list[str], moved: int) -> None:
    """Length-prefixed parts: moving text across a boundary changes the digest."""
    shifted = list(parts)
    if moved < 6:
        shifted[moved], shifted[moved + 1] = shifted[moved] + "\n", shifted[moved + 1]
    else:
        shifted[moved] = shifted[moved] + "x"
    assert fastpath.credential_digest(*parts) != fastpath.credential_digest(*shifted)


# -- the fast path's reader agrees with json -----------------------------------------------------
def _jwt_of(payload: str) -> str:
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    return f"{part(json.dumps({'alg': 'RS256', 'kid': 'k'}))}.{part(payload)}.c2ln"


def _by_json(token: str) -> tuple[str, str, str] | None:
    try:
        found = identity.principal_of_jwt(token)
    except identity.NoPrincipal:
        return None
    return found.issuer, found.subject, found.audience


_names = st.text(min_size=1, max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=6,
)
_claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": _names | _values,
        "sub": _names | _values,
        "aud": _names | st.lists(_names, max_size=3) | _values,
        "exp": st.integers(0, 2**31),
        "kubernetes.io": st.dictionaries(st.sampled_from(["iss", "sub", "aud", "ns"]), _values),
    },
).flatmap(lambda c: st.dictionaries(_names, _values, max_size=3).map(lambda x: {**x, **c}))


@settings(max_examples=1000, deadline=None)
@given(_claims, st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
def test_the_fast_path_reads_a_principal_as_json_does_or_not_at_all(
    claims: dict[str, Any], separators: tuple[str, str]
) -> None:
    token = _jwt_of(json.dumps(claims, separators=separators, ensure_ascii=False))
    light = fastpath.jwt_principal(token)
    assert light is None or light == _by_json(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://i", "sub": "system:serviceaccount:ci:builder", "aud": ["b", "a"]},
        {"iss": "https://i", "sub": "s", "kubernetes.io": {"pod": {"name": "p", "uid": "u"}}},
        {"kubernetes.io": {"iss": "nested"}, "iss": "https://i", "sub": "s", "aud": "quay"},
    ],
)
def test_the_fast_path_reads_the_usual_tokens(claims: dict[str, Any]) -> None:
    """Service-account tokens nest objects and list audiences: the light reader still reads
    them (else every pull in a pod would take the full path)."""
    token = fake_jwt(claims)
    assert fastpath.jwt_principal(token) == _by_json(token) is not None


@pytest.mark.parametrize(
    "payload",
    [
        '{"iss": "https://i", "sub": "a", "sub": "b"}',  # a duplicate: json keeps the last
        '{"iss": "https://i", "sub": "a\\u0062"}',  # an escape
        '{"iss": "https://i", "sub": 5}',
        '{"iss": "https://i"}',
        '["iss", "sub"]',
    ],
)
def test_the_fast_path_leaves_doubtful_claims_to_the_full_path(payload: str) -> None:
    assert fastpath.jwt_principal(_jwt_of(payload)) is None


# -- a carried JWT that changes hands (the installed helper, real issuer and Quay) -------------
def _file_setup(setup: Setup, kube_issuer: KubeIssuer) -> Path:
    """The robot trusts service account ci:job-a only; the config reads a token file."""
    token_file = setup.directory / "token"
    setup.quay.add_robot(ROBOT, federation=[(kube_issuer.issuer, "system:serviceaccount:ci:job-a")])
    setup.configure(
        **{**base_settings(setup), "issuer": kube_issuer.issuer},
        source="file",
        token_file=str(token_file),
    )
    return token_file


def _subjects(setup: Setup, token: str) -> set[str]:
    """The subjects Quay issued ``token`` to (empty: never issued)."""
    return {federated.subject for federated in setup.quay.issued_to(token)}


def _hand_over(token_file: Path, kube_issuer: KubeIssuer, name: str, setup: Setup) -> str:
    token = kube_issuer.mint("ci", name, audience=setup.quay.host)
    setup.secrets.append(token)
    token_file.write_text(token)
    return token


@pytest.mark.parametrize("path", ["fast", "full"])
def test_a_token_file_that_changes_hands_never_serves_the_previous_robot_token(
    setup: Setup, kube_issuer: KubeIssuer, path: str
) -> None:
    token_file = _file_setup(setup, kube_issuer)
    _hand_over(token_file, kube_issuer, "job-a", setup)
    first = answer_of(setup.get())["Secret"]
    assert _subjects(setup, first) == {"system:serviceaccount:ci:job-a"}
    assert answer_of(setup.get())["Secret"] == first  # from the cache
    assert setup.exchanges() == 1

    _hand_over(token_file, kube_issuer, "job-b", setup)  # the next job, same path
    if path == "full":
        (setup.cache_dir / fastpath.SNAPSHOT_NAME).unlink()
    refused = setup.get()
    assert first not in refused.stdout, "job B got job A's robot token"
    assert (refused.returncode, refused.stdout.strip()) == (1, NOT_FOUND)
    assert "Token does not match robot" in refused.stderr  # Quay refused B: so must we

    # Once the robot trusts job B too, B gets a token of its own, minted for it.
    setup.quay.add_robot(
        ROBOT,
        federation=[
            (kube_issuer.issuer, "system:serviceaccount:ci:job-a"),
            (kube_issuer.issuer, "system:serviceaccount:ci:job-b"),
        ],
    )
    second = answer_of(setup.get())["Secret"]
    assert setup.exchanges() == 2
    # Quay's robot token names the robot, not the caller: minted in the same second, B's token
    # can equal A's byte for byte. What matters is whom Quay issued it to.
    assert _subjects(setup, second) >= {"system:serviceaccount:ci:job-b"}
    # Job A's token back in the file: A's own cached token, without another exchange.
    _hand_over(token_file, kube_issuer, "job-a", setup)
    assert answer_of(setup.get())["Secret"] == first and setup.exchanges() == 2


def test_an_expired_token_in_the_file_unlocks_no_cached_answer(
    setup: Setup, kube_issuer: KubeIssuer
) -> None:
    token_file = _file_setup(setup, kube_issuer)
    _hand_over(token_file, kube_issuer, "job-a", setup)
    first = answer_of(setup.get())["Secret"]
    expired = kube_issuer.mint("ci", "job-a", audience=setup.quay.host, exp=int(time.time()) - 60)
    token_file.write_text(expired)
    result = setup.get()
    assert first not in result.stdout, "an expired JWT was honoured from the cache"
    assert result.stdout.strip() == NOT_FOUND


def test_a_token_command_that_prints_another_identity_gets_that_identity_s_robot(
    setup: Setup, kube_issuer: KubeIssuer
) -> None:
    token_file = setup.directory / "printed"
    setup.quay.add_robot(ROBOT, federation=[(kube_issuer.issuer, "system:serviceaccount:ci:job-a")])
    setup.configure(
        **{**base_settings(setup), "issuer": kube_issuer.issuer},
        source="command",
        token_command=f"cat {token_file}",
    )
    _hand_over(token_file, kube_issuer, "job-a", setup)
    first = answer_of(setup.get())["Secret"]
    _hand_over(token_file, kube_issuer, "job-b", setup)
    refused = setup.get()
    assert first not in refused.stdout, "the command's new identity got the old robot token"
    assert refused.stdout.strip() == NOT_FOUND
    assert run_helper("erase", setup.key, env=setup.env).returncode == 0


# -- one reading of a configured path ------------------------------------------------------------
@pytest.mark.parametrize("path", ["fast", "full"])
def test_a_token_file_under_home_is_read_as_home_by_every_reader(
    setup: Setup, kube_issuer: KubeIssuer, tmp_path: Path, path: str
) -> None:
    """``token_file = "~/job.jwt"``: the fast path once opened ``./~/job.jwt`` in the client's
    working directory while the source read ``$HOME/job.jwt``. A checkout holding ``~/job.jwt``
    with job A's JWT then got A's robot token after A's file had moved on to job B."""
    home = tmp_path / "home"
    home.mkdir()
    setup.env["HOME"] = str(home)
    setup.quay.add_robot(
        ROBOT,
        federation=[
            (kube_issuer.issuer, "system:serviceaccount:ci:job-a"),
            (kube_issuer.issuer, "system:serviceaccount:ci:job-b"),
        ],
    )
    setup.configure(
        **{**base_settings(setup), "issuer": kube_issuer.issuer},
        source="file",
        token_file="~/job.jwt",
    )
    job_a = _hand_over(home / "job.jwt", kube_issuer, "job-a", setup)
    first = answer_of(setup.get())["Secret"]
    assert _subjects(setup, first) == {"system:serviceaccount:ci:job-a"}

    # A's file moves on to B; a checked-out repository holds "~/job.jwt" with A's JWT.
    _hand_over(home / "job.jwt", kube_issuer, "job-b", setup)
    checkout = tmp_path / "checkout"
    (checkout / "~").mkdir(parents=True)
    (checkout / "~" / "job.jwt").write_text(job_a)
    if path == "full":
        (setup.cache_dir / fastpath.SNAPSHOT_NAME).unlink()
    second = answer_of(setup.get_in(checkout))["Secret"]
    assert _subjects(setup, second) >= {"system:serviceaccount:ci:job-b"}
    assert setup.exchanges() == 2, "job B was answered with job A's cached robot token"
    snapshot = (setup.cache_dir / fastpath.SNAPSHOT_NAME).read_text()
    assert fastpath.escape_field(str(home / "job.jwt")) in snapshot
    assert "~" not in snapshot.replace(fastpath.escape_field(str(home / "job.jwt")), "")


def test_a_relative_path_in_the_config_is_read_beside_the_config_file(
    setup: Setup, kube_issuer: KubeIssuer, tmp_path: Path
) -> None:
    """Not beside whatever directory the client runs in."""
    setup.quay.add_robot(ROBOT, federation=[(kube_issuer.issuer, "system:serviceaccount:ci:job-a")])
    setup.configure(
        **{**base_settings(setup), "issuer": kube_issuer.issuer},
        source="file",
        token_file="job.jwt",
    )
    config_dir = Path(setup.env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).parent
    _hand_over(config_dir / "job.jwt", kube_issuer, "job-a", setup)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "job.jwt").write_text("not a JWT")
    answer = answer_of(setup.get_in(elsewhere))
    assert _subjects(setup, answer["Secret"]) == {"system:serviceaccount:ci:job-a"}
