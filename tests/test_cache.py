from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from docker_credential_quayfed import broker, config, fastpath
from docker_credential_quayfed.cache import RobotToken, TokenCache, robot_token_from_jwt
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import CacheError
from docker_credential_quayfed.identity import Principal, credential_key
from docker_credential_quayfed.request import RequestContext
from docker_credential_quayfed.sources import BY_NAME
from tests.jwt_factory import fake_jwt
from tests.support.requests import request_here

REGISTRY = "quay.example.com"
KEY = credential_key(
    REGISTRY, "org+bot", f"https://{REGISTRY}", Principal("password", "https://i", "jdoe")
)


def token(now: float, lifetime: float = 3600) -> RobotToken:
    jwt = fake_jwt({"iss": "quay", "sub": "org+bot", "iat": now, "exp": now + lifetime})
    return robot_token_from_jwt(REGISTRY, "org+bot", jwt, now)


def test_round_trip_with_private_modes(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    entry = token(1000.0)
    path = cache.write(KEY, entry)
    assert cache.read(KEY) == entry
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700


def test_existing_open_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    TokenCache(directory).write(KEY, token(1000.0))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_refresh_due_uses_min_of_margin_and_half_lifetime() -> None:
    entry = token(1000.0, lifetime=3600)
    assert not entry.refresh_due(300, 1000.0 + 3600 - 301)
    assert entry.refresh_due(300, 1000.0 + 3600 - 300)
    short = token(1000.0, lifetime=60)
    assert not short.refresh_due(300, 1000.0 + 29)
    assert short.refresh_due(300, 1000.0 + 30)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"quayfed-token 1\n",
        b"quayfed-token 1\nregistry quay.example.com\nrobot r\n"
        b"issued_at x\nexpires_at 1\ntoken t\n",
        b"quayfed-token 9\nregistry quay.example.com\n",
        b"\xff\x00garbage",
    ],
)
def test_corrupt_file_is_discarded_and_replaced(tmp_path: Path, content: bytes) -> None:
    cache = TokenCache(tmp_path)
    path = cache.path_for(KEY)
    path.write_bytes(content)
    assert cache.read(KEY) is None
    assert not path.exists()
    entry = token(5.0)
    cache.write(KEY, entry)
    assert cache.read(KEY) == entry


def test_foreign_registry_entry_is_discarded(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    path = cache.write(KEY, token(5.0))
    path.write_text(path.read_text().replace(REGISTRY, "evil.example.com"))
    assert cache.read(KEY) is None
    assert not path.exists()


def test_symlinked_cache_file_is_never_followed(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "cache")
    cache.write(KEY, token(5.0))
    target = tmp_path / "elsewhere.json"
    target.write_text("precious")
    path = cache.path_for(KEY)
    path.unlink()
    path.symlink_to(target)
    assert cache.read(KEY) is None
    cache.write(KEY, token(6.0))
    assert target.read_text() == "precious"
    assert not path.is_symlink()


def test_symlinked_cache_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(CacheError, match="symlink"):
        TokenCache(link).write(KEY, token(5.0))


def test_erase_removes_only_that_registry(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.write(KEY, token(5.0))
    other = RobotToken("other.example.com", "o+b", fake_jwt({"exp": 10}), 1, 10)
    other_key = credential_key("other.example.com", "o+b", "https://o", KEY.principal)
    cache.write(other_key, other)
    assert cache.erase(REGISTRY) == 1
    assert cache.read(KEY) is None
    assert cache.read(other_key) == other


def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    for i in range(5):
        cache.write(KEY, token(float(i)))
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".token"]


def _hold_lock(directory: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    with TokenCache(Path(directory)).lock(KEY, timeout=5):
        ready.set()
        time.sleep(seconds)


def test_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, 2.0))
    holder.start()
    try:
        assert ready.wait(5)
        with (
            pytest.raises(CacheError, match="held the lock"),
            TokenCache(tmp_path).lock(KEY, timeout=0.3),
        ):
            pass
    finally:
        holder.join()
    with TokenCache(tmp_path).lock(KEY, timeout=1):
        pass


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config.toml and cache directory the fast path finds through the environment."""
    config_file = tmp_path / "config.toml"
    token_file = tmp_path / "sa-token"
    claims = {"iss": "https://idp.example.com", "sub": "system:serviceaccount:ci:builder"}
    token_file.write_text(fake_jwt({**claims, "exp": time.time() + 3600}))
    config_file.write_text(
        f'[registries."{REGISTRY}"]\nrobot = "org+bot"\nissuer = "https://idp.example.com"\n'
        f'source = "file"\ntoken_file = "{token_file}"\n'
    )
    monkeypatch.setenv("DOCKER_CREDENTIAL_QUAYFED_CONFIG", str(config_file))
    monkeypatch.setenv("DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR", str(tmp_path / "cache"))
    return config_file


def remembered(tmp_path: Path, issued_at: float) -> tuple[TokenCache, RobotToken]:
    """A token cached for the configured registry, and the snapshot the full path writes."""
    settings = config.load(BY_NAME)
    cache = TokenCache(tmp_path / "cache")
    entry = token(issued_at)
    cache.write(broker.key_for(settings.registry(REGISTRY), request_here()), entry)
    broker.snapshot_config(settings, RequestContext(cache))
    return cache, entry


def test_snapshot_lets_the_fast_path_find_the_token(tmp_path: Path, config_file: Path) -> None:
    _, entry = remembered(tmp_path, time.time())
    assert fastpath.cached_answer(REGISTRY) == ("org+bot", entry.token, False)
    assert fastpath.cached_answer("other.example.com") is None
    # Any edit of config.toml invalidates the snapshot until the full path rewrites it.
    config_file.write_text(config_file.read_text() + "# edited\n")
    assert fastpath.cached_answer(REGISTRY) is None


def test_fast_path_refuses_a_token_due_for_refresh(tmp_path: Path, config_file: Path) -> None:
    remembered(tmp_path, time.time() - 3500)
    assert fastpath.cached_answer(REGISTRY) is None


def test_a_token_from_an_issuer_whose_clock_is_ahead_lives_by_ours(tmp_path: Path) -> None:
    now = time.time()
    jwt = fake_jwt({"iss": "quay", "sub": "org+bot", "iat": now + 600, "exp": now + 4200})
    entry = robot_token_from_jwt(REGISTRY, "org+bot", jwt, now)
    # Quay stops accepting it 3600 s after it issued it, which is 3600 s from now by our clock.
    assert entry.expires_at == pytest.approx(now + 3600)
    assert entry.lifetime == pytest.approx(3600)
    cache = TokenCache(tmp_path)
    cache.write(KEY, entry)
    assert cache.read(KEY) == entry  # a shortened life is not an edited file


def test_an_environment_identity_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token earned with one job's (or one variable's) identity is cached apart from another's."""
    env_table = RegistryConfig(
        key=REGISTRY, robot="org+bot", issuer="https://i", source="env", token_env="T"
    )
    actions_table = RegistryConfig(
        key=REGISTRY, robot="org+bot", issuer="https://i", source="github_actions"
    )
    monkeypatch.setenv("T", fake_jwt({"iss": "https://i", "sub": "job-1", "exp": 2e9}))
    monkeypatch.setenv("GITHUB_RUN_ID", "1")
    seen = (
        broker.key_for(env_table, request_here()),
        broker.key_for(actions_table, request_here()),
    )
    monkeypatch.setenv("T", fake_jwt({"iss": "https://i", "sub": "job-2", "exp": 2e9}))
    monkeypatch.setenv("GITHUB_RUN_ID", "2")
    assert broker.key_for(env_table, request_here()) != seen[0]
    assert broker.key_for(actions_table, request_here()) != seen[1]


def test_a_snapshot_of_thousands_of_registries_still_answers_the_last(
    tmp_path: Path, config_file: Path
) -> None:
    table = config_file.read_text()
    others = "".join(table.replace(f'"{REGISTRY}"', f'"r{n}.example.com"') for n in range(2000))
    config_file.write_text(others + table)
    _, entry = remembered(tmp_path, time.time())
    assert (tmp_path / "cache" / fastpath.SNAPSHOT_NAME).stat().st_size > fastpath.MAX_FILE
    assert fastpath.cached_answer(REGISTRY) == ("org+bot", entry.token, False)


def test_erase_when_idle_waits_at_most_its_timeout_in_all(tmp_path: Path) -> None:
    """Three locks held by a hung process: the erase gives up on them within one timeout in
    all (not one timeout per lock), and still erases."""
    import fcntl

    cache = TokenCache(tmp_path)
    prefix = fastpath.key_file_prefix("quay.example.com")
    held = []
    for n in range(3):
        (tmp_path / f"{prefix}{n:016x}.token").write_text("x")
        fd = os.open(tmp_path / f"{prefix}{n:016x}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    waits: list[float] = []
    real = TokenCache.lock_file

    def recording(self: TokenCache, name: str, timeout: float) -> object:
        waits.append(timeout)
        return real(self, name, timeout)

    try:
        TokenCache.lock_file = recording  # type: ignore[method-assign,assignment]
        assert cache.erase_when_idle("quay.example.com", timeout=0.3) == 3
    finally:
        TokenCache.lock_file = real  # type: ignore[method-assign]
        for fd in held:
            os.close(fd)
    # the first lock used the whole budget: the others are tried once, without waiting
    assert len(waits) == 3 and 0 < waits[0] <= 0.3 and waits[1:] == [0.0, 0.0]
