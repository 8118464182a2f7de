"""The broker's decisions: serve from cache, mint, serve stale, remember a failure.

Unit tests of pure logic: ``broker.mint`` is replaced by a fake that counts its calls, the
cache is a real :class:`TokenCache` under ``tmp_path``, and time is the broker's ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from docker_credential_quayfed import broker, fastpath, logins
from docker_credential_quayfed import cache as cache_module
from docker_credential_quayfed.cache import RobotToken, TokenCache, robot_token_from_jwt
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import (
    IssuerError,
    LoginRequired,
    NetworkError,
    QuayError,
    QuayfedError,
    SecretError,
)
from docker_credential_quayfed.request import RequestContext
from tests.jwt_factory import fake_jwt

KEY = "quay.example.com"
ROBOT = "org+bot"
START = 1_700_000_000.0
HOUR = 3600.0


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeMint:
    """Stands in for ``broker.mint``: records each call's budget, then answers or raises."""

    def __init__(
        self, answer: RobotToken | QuayfedError, during: Callable[[], None] = lambda: None
    ) -> None:
        self.answer = answer
        self.during = during
        self.budgets: list[float] = []

    def __call__(
        self,
        registry: RegistryConfig,
        request: RequestContext,
        budget: float = 0.0,
        carried_jwt: str = "",
        credential: object = None,
    ) -> RobotToken:
        self.budgets.append(budget)
        self.during()
        if isinstance(self.answer, QuayfedError):
            raise self.answer
        return self.answer

    @property
    def calls(self) -> int:
        return len(self.budgets)


def registry_config(timeout: float = 25.0) -> RegistryConfig:
    return RegistryConfig(
        key=KEY,
        robot=ROBOT,
        issuer="https://idp.example.com",
        source="password",
        client_id="quay",
        username="jdoe",
        password_env="QUAY_PASSWORD",
        timeout=timeout,
    )


def robot_token(issued_at: float, expires_at: float, marker: str = "") -> RobotToken:
    jwt = fake_jwt({"sub": ROBOT, "iat": issued_at, "exp": expires_at, "n": marker})
    return robot_token_from_jwt(KEY, ROBOT, jwt, issued_at)


def fresh_token(now: float) -> RobotToken:
    return robot_token(now, now + HOUR, "fresh")


def due_token(now: float, left: float = 200.0) -> RobotToken:
    """Valid for ``left`` more seconds, past its refresh point (margin 300 s)."""
    return robot_token(now + left - HOUR, now + left, "due")


@pytest.fixture
def registry() -> RegistryConfig:
    return registry_config()


@pytest.fixture
def cache(tmp_path: Path) -> TokenCache:
    return TokenCache(tmp_path / "cache")


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeMint) -> FakeMint:
    monkeypatch.setattr(broker, "mint", fake)
    return fake


def test_a_fresh_cached_token_is_served_without_minting(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cached = fresh_token(clock.now)
    cache.write(broker.key_for(registry, RequestContext(cache)), cached)
    fake = install(monkeypatch, FakeMint(fresh_token(clock.now + 1)))

    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token) == (broker.CACHED, cached)
    assert fake.calls == 0


def test_a_token_due_for_refresh_is_replaced_by_a_minted_one_and_written(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now))
    minted = fresh_token(clock.now)
    fake = install(monkeypatch, FakeMint(minted))

    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token) == (broker.MINTED, minted)
    assert fake.calls == 1
    assert cache.read(broker.key_for(registry, RequestContext(cache))) == minted


def test_with_nothing_cached_a_token_is_minted_and_then_served_from_cache(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    minted = fresh_token(clock.now)
    fake = install(monkeypatch, FakeMint(minted))

    first = broker.robot_token(registry, RequestContext(cache, clock))
    clock.now += 60
    second = broker.robot_token(registry, RequestContext(cache, clock))

    assert (first.how, second.how) == (broker.MINTED, broker.CACHED)
    assert second.token == minted
    assert fake.calls == 1


def test_time_passing_on_the_clock_makes_a_cached_token_due(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), fresh_token(clock.now))
    later = fresh_token(clock.now + HOUR - 100)
    fake = install(monkeypatch, FakeMint(later))

    clock.now += HOUR - 100  # 100 s left: inside the 300 s refresh margin
    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token) == (broker.MINTED, later)
    assert fake.calls == 1


def test_force_mints_even_when_the_cached_token_is_fresh(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), fresh_token(clock.now))
    minted = robot_token(clock.now, clock.now + HOUR, "forced")
    fake = install(monkeypatch, FakeMint(minted))

    outcome = broker.robot_token(registry, RequestContext(cache, clock), force=True)

    assert (outcome.how, outcome.token) == (broker.MINTED, minted)
    assert fake.calls == 1


def test_a_network_failure_with_a_valid_token_in_hand_serves_it_and_is_remembered(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    in_hand = due_token(clock.now)
    cache.write(broker.key_for(registry, RequestContext(cache)), in_hand)
    fake = install(monkeypatch, FakeMint(NetworkError("Quay at https://q kept answering 503")))

    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token, fake.calls) == (broker.STALE, in_hand, 1)
    noted = cache.recent_failure(
        broker.key_for(registry, RequestContext(cache)),
        broker.settings_digest(registry),
        broker.FAILURE_WINDOW,
    )
    assert noted is not None and "kept answering 503" in noted[1]


def test_a_remembered_failure_answers_the_next_get_without_minting_until_forced(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    in_hand = due_token(clock.now)
    cache.write(broker.key_for(registry, RequestContext(cache)), in_hand)
    fake = install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))

    broker.robot_token(registry, RequestContext(cache, clock))
    clock.now += 1
    again = broker.robot_token(registry, RequestContext(cache, clock))
    assert (again.how, again.token, fake.calls) == (broker.STALE, in_hand, 1)

    forced = broker.robot_token(registry, RequestContext(cache, clock), force=True)
    assert (forced.how, fake.calls) == (broker.STALE, 2)


def test_a_remembered_failure_with_no_token_in_hand_raises_at_once(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    fake = install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))

    with pytest.raises(NetworkError):
        broker.robot_token(registry, RequestContext(cache, clock))
    with pytest.raises(NetworkError) as caught:
        broker.robot_token(registry, RequestContext(cache, clock))

    assert fake.calls == 1
    assert "cannot connect" in caught.value.message
    assert f"erase <<< {KEY}" in caught.value.message


def test_a_failure_is_forgotten_once_the_window_has_passed(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now))
    fake = install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))
    broker.robot_token(registry, RequestContext(cache, clock))

    # A zero window makes every remembered failure old, without waiting for the wall clock.
    monkeypatch.setattr(broker, "FAILURE_WINDOW", 0.0)
    broker.robot_token(registry, RequestContext(cache, clock))

    assert fake.calls == 2


def test_changed_settings_do_not_inherit_a_remembered_failure(
    cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    before, after = registry_config(timeout=25.0), registry_config(timeout=20.0)
    assert broker.key_for(before, RequestContext(cache)) == broker.key_for(
        after, RequestContext(cache)
    )
    fake = install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))

    with pytest.raises(NetworkError):
        broker.robot_token(before, RequestContext(cache, clock))
    with pytest.raises(NetworkError):
        broker.robot_token(after, RequestContext(cache, clock))

    assert fake.calls == 2


def test_a_successful_mint_clears_the_remembered_failure(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now))
    install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))
    broker.robot_token(registry, RequestContext(cache, clock))
    install(monkeypatch, FakeMint(fresh_token(clock.now)))

    outcome = broker.robot_token(registry, RequestContext(cache, clock), force=True)

    assert outcome.how == broker.MINTED
    digest = broker.settings_digest(registry)
    assert (
        cache.recent_failure(
            broker.key_for(registry, RequestContext(cache)), digest, broker.FAILURE_WINDOW
        )
        is None
    )


@pytest.mark.parametrize(
    "failure",
    [
        QuayError("Quay refused the exchange", "check the robot"),
        IssuerError("the issuer refused the password grant", "check the password"),
    ],
    ids=["quay", "issuer"],
)
def test_an_auth_failure_serves_the_token_in_hand_but_is_not_remembered(
    registry: RegistryConfig,
    cache: TokenCache,
    monkeypatch: pytest.MonkeyPatch,
    failure: QuayfedError,
) -> None:
    clock = Clock()
    in_hand = due_token(clock.now)
    cache.write(broker.key_for(registry, RequestContext(cache)), in_hand)
    fake = install(monkeypatch, FakeMint(failure))

    first = broker.robot_token(registry, RequestContext(cache, clock))
    second = broker.robot_token(registry, RequestContext(cache, clock))

    assert (first.how, first.token, second.how) == (broker.STALE, in_hand, broker.STALE)
    assert fake.calls == 2
    digest = broker.settings_digest(registry)
    assert (
        cache.recent_failure(
            broker.key_for(registry, RequestContext(cache)), digest, broker.FAILURE_WINDOW
        )
        is None
    )


@pytest.mark.parametrize("kind", [NetworkError, QuayError, IssuerError, SecretError])
def test_with_no_token_in_hand_a_failure_propagates_as_its_own_class(
    registry: RegistryConfig,
    cache: TokenCache,
    monkeypatch: pytest.MonkeyPatch,
    kind: type[QuayfedError],
) -> None:
    install(monkeypatch, FakeMint(kind("it failed", "fix it")))

    with pytest.raises(QuayfedError) as caught:
        broker.robot_token(registry, RequestContext(cache, Clock()))

    assert type(caught.value) is kind
    assert caught.value.message == "it failed; fix it"


def test_an_expired_cached_token_is_not_a_fallback(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(
        broker.key_for(registry, RequestContext(cache)),
        robot_token(clock.now - HOUR, clock.now - 1, "expired"),
    )
    install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))

    with pytest.raises(NetworkError):
        broker.robot_token(registry, RequestContext(cache, clock))


def test_a_token_with_too_little_life_left_is_served_without_minting(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    in_hand = due_token(clock.now, left=6.0)
    assert broker.SKEW == 5.0
    cache.write(broker.key_for(registry, RequestContext(cache)), in_hand)
    fake = install(monkeypatch, FakeMint(fresh_token(clock.now)))

    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token) == (broker.STALE, in_hand)
    assert fake.calls == 0


def test_a_token_within_the_skew_of_expiry_is_not_served(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(
        broker.key_for(registry, RequestContext(cache)), due_token(clock.now, left=broker.SKEW)
    )
    minted = fresh_token(clock.now)
    fake = install(monkeypatch, FakeMint(minted))

    outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token, fake.calls) == (broker.MINTED, minted, 1)


def test_the_refresh_budget_is_capped_while_a_long_lived_token_is_in_hand(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now, left=200.0))
    fake = install(monkeypatch, FakeMint(fresh_token(clock.now)))

    broker.robot_token(registry, RequestContext(cache, clock))

    assert registry.timeout > broker.STALE_REFRESH_BUDGET
    assert broker.MIN_REFRESH_BUDGET <= fake.budgets[0] <= broker.STALE_REFRESH_BUDGET


def test_the_refresh_budget_never_outlives_the_token_in_hand(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    left = 10.0
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now, left=left))
    fake = install(monkeypatch, FakeMint(fresh_token(clock.now)))

    broker.robot_token(registry, RequestContext(cache, clock))

    assert fake.calls == 1
    assert broker.MIN_REFRESH_BUDGET <= fake.budgets[0] <= left - broker.SKEW


def test_with_no_token_in_hand_the_whole_timeout_is_the_budget(
    cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(monkeypatch, FakeMint(fresh_token(START)))

    broker.robot_token(registry_config(timeout=20.0), RequestContext(cache, Clock()))

    assert broker.STALE_REFRESH_BUDGET < fake.budgets[0] <= 20.0


def test_a_token_that_expires_while_minting_fails_is_not_served(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now, left=60.0))

    def time_passes() -> None:
        clock.now += 60.0

    install(monkeypatch, FakeMint(NetworkError("Quay timed out"), during=time_passes))

    with pytest.raises(NetworkError, match="Quay timed out"):
        broker.robot_token(registry, RequestContext(cache, clock))


def test_another_process_holding_the_lock_gets_the_token_in_hand_served(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    in_hand = due_token(clock.now)
    cache.write(broker.key_for(registry, RequestContext(cache)), in_hand)
    fake = install(monkeypatch, FakeMint(fresh_token(clock.now)))
    # A short wait keeps the test fast; the decision is the same at any length.
    monkeypatch.setattr(broker, "STALE_LOCK_WAIT", 0.05)

    with cache.lock(broker.key_for(registry, RequestContext(cache)), timeout=1.0):
        outcome = broker.robot_token(registry, RequestContext(cache, clock))

    assert (outcome.how, outcome.token, fake.calls) == (broker.STALE, in_hand, 0)


def test_erase_clears_a_remembered_failure(
    registry: RegistryConfig, cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    cache.write(broker.key_for(registry, RequestContext(cache)), due_token(clock.now))
    install(monkeypatch, FakeMint(NetworkError("cannot connect to https://q")))
    broker.robot_token(registry, RequestContext(cache, clock))
    digest = broker.settings_digest(registry)
    assert cache.recent_failure(
        broker.key_for(registry, RequestContext(cache)), digest, broker.FAILURE_WINDOW
    )

    assert cache.erase(KEY) == 1

    assert (
        cache.recent_failure(
            broker.key_for(registry, RequestContext(cache)), digest, broker.FAILURE_WINDOW
        )
        is None
    )
    minted = fresh_token(clock.now)
    fake = install(monkeypatch, FakeMint(minted))
    outcome = broker.robot_token(registry, RequestContext(cache, clock))
    assert (outcome.how, outcome.token, fake.calls) == (broker.MINTED, minted, 1)


# -- checked_robot_token -----------------------------------------------------------------------
def test_checked_robot_token_takes_its_times_from_the_claims(registry: RegistryConfig) -> None:
    jwt = fake_jwt({"sub": ROBOT, "iat": START - 10, "exp": START + HOUR})

    entry = broker.checked_robot_token(registry, jwt, START)

    assert (entry.registry, entry.robot, entry.token) == (KEY, ROBOT, jwt)
    assert (entry.issued_at, entry.expires_at) == (START - 10, START + HOUR)


@pytest.mark.parametrize(
    ("exp", "expected"),
    [(START - 120, "expired 120s ago"), (START + 3, "expires in 3s: too late to use")],
    ids=["expired", "within-skew"],
)
def test_checked_robot_token_refuses_an_expired_token(
    registry: RegistryConfig, exp: float, expected: str
) -> None:
    jwt = fake_jwt({"sub": ROBOT, "iat": START - HOUR, "exp": exp})

    with pytest.raises(QuayError) as caught:
        broker.checked_robot_token(registry, jwt, START)

    assert expected in caught.value.message
    assert "NTP" in caught.value.message


@pytest.mark.parametrize(
    "robot",
    [fake_jwt({"sub": ROBOT, "iat": START}), "not-a-jwt", fake_jwt({"exp": "tomorrow"})],
    ids=["no-exp", "not-a-jwt", "exp-not-a-number"],
)
def test_checked_robot_token_refuses_a_token_without_a_usable_exp(
    registry: RegistryConfig, robot: str
) -> None:
    with pytest.raises(QuayError) as caught:
        broker.checked_robot_token(registry, robot, START)

    assert f"robot token for {ROBOT} is unusable" in caught.value.message
    assert "eyJ" not in caught.value.message


@pytest.mark.parametrize("exp", [float("inf"), 10**400], ids=["infinity", "beyond-a-float"])
def test_checked_robot_token_refuses_an_exp_that_is_no_time(
    registry: RegistryConfig, exp: float
) -> None:
    robot = fake_jwt({"sub": ROBOT, "iat": START, "exp": exp})
    with pytest.raises(QuayError) as caught:
        broker.checked_robot_token(registry, robot, START)
    assert f"robot token for {ROBOT} is unusable" in caught.value.message


@pytest.mark.parametrize("exp", [START + 10**9, 1e308], ids=["far", "1e308"])
def test_checked_robot_token_keeps_a_far_exp_no_longer_than_quay_issues(
    registry: RegistryConfig, exp: float
) -> None:
    entry = broker.checked_robot_token(registry, fake_jwt({"iat": START, "exp": exp}), START)
    assert entry.expires_at == START + fastpath.MAX_ROBOT_TOKEN_LIFETIME
    assert entry.lifetime == fastpath.MAX_ROBOT_TOKEN_LIFETIME


def test_checked_robot_token_refuses_a_token_too_large_to_read_back(
    registry: RegistryConfig, tmp_path: Path
) -> None:
    """A 64 KiB token was written but never read back: every get minted again."""
    robot = fake_jwt({"iat": START, "exp": START + HOUR, "pad": "x" * fastpath.MAX_FILE})
    with pytest.raises(QuayError) as caught:
        broker.checked_robot_token(registry, robot, START)
    assert "bytes, more than" in caught.value.message
    largest = fake_jwt({"iat": START, "exp": START + HOUR, "pad": "x" * 40000})
    entry = broker.checked_robot_token(registry, largest, START)
    cache = TokenCache(tmp_path)
    key = broker.key_for(registry, RequestContext(cache))
    cache.write(key, entry)
    assert cache.read(key) == entry


def test_a_token_file_claiming_a_life_longer_than_quay_issues_is_not_served() -> None:
    jwt = fake_jwt({"iat": START, "exp": 1e308})
    text = cache_module.encode_token(RobotToken(KEY, ROBOT, jwt, START, 1e308))
    assert fastpath.read_token_file(text, KEY) is None
    nan = cache_module.encode_token(RobotToken(KEY, ROBOT, jwt, START, float("nan")))
    assert fastpath.read_token_file(nan, KEY) is None


# -- a credential that changes hands while its token is minted ------------------------------------
DEVICE_ISSUER = "https://idp.example.com/realms/quay"


def _log_in(cache: TokenCache, registry: RegistryConfig, subject: str) -> None:
    """What ``login`` stores: a person named by the token's iss and sub (both named jdoe)."""
    token = fake_jwt({"iss": DEVICE_ISSUER, "sub": subject, "preferred_username": "jdoe"})
    login = logins.from_token_response(registry, {"refresh_token": f"rt-{subject}"}, token, START)
    assert login is not None
    logins.write(cache, registry, login)


@pytest.mark.parametrize("flow", ["get", "refresh-ahead"])
def test_a_token_minted_while_the_login_changed_hands_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flow: str
) -> None:
    cache = TokenCache(tmp_path / "cache")
    monkeypatch.setenv("DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR", str(cache.directory))
    device = RegistryConfig(
        key=KEY, robot=ROBOT, issuer=DEVICE_ISSUER, source="device", client_id="cli"
    )
    _log_in(cache, device, "uuid-a")
    first = broker.key_for(device, RequestContext(cache))
    if flow == "refresh-ahead":
        cache.write(first, robot_token(START - 3000, START + 500, "ahead"))
    install(
        monkeypatch, FakeMint(fresh_token(START), during=lambda: _log_in(cache, device, "uuid-b"))
    )
    with pytest.raises(LoginRequired):
        if flow == "get":
            broker.robot_token(device, RequestContext(cache, Clock()))
        else:
            broker.refresh_ahead(device, RequestContext(cache, Clock()))
    second = broker.key_for(device, RequestContext(cache))
    assert second != first, "two people with one username share a key"
    assert cache.read(second) is None
    if flow == "get":
        assert cache.read(first) is None
