"""Hostile input, property-based: the stdin of every protocol action, config files, cache files,
and the issuer's and Quay's answers.

The protocol targets call ``cli.main`` in this process (stdin, stdout and stderr replaced,
config and cache in a temporary directory) with a configuration whose token source can never
reach the network, so every case is fast. Whatever comes in: an exit code of 0, 1 or 2, at most
one line on stderr (and on stdout when failing), no traceback or ``internal error``, no hang, and
a valid token cached before the case still there byte for byte (unless the case was ``erase``
of its key, or a ``store`` that was accepted). The response targets drive the parsers
(``oidc.discover``, ``oidc.request_token``, ``quay.exchange``) through ``httpx.MockTransport``:
only a ``QuayfedError`` with a short single-line message may come out.

``$QUAYFED_FUZZ_EXAMPLES`` sets the examples per target (default 200); each target records
``fuzz`` figures through :mod:`tests.support.records`.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from docker_credential_quayfed import __version__, broker, cli, config, log, oidc, protocol, quay
from docker_credential_quayfed import transport as transport_module
from docker_credential_quayfed.cache import TokenCache, robot_token_from_jwt
from docker_credential_quayfed.errors import QuayfedError
from docker_credential_quayfed.identity import CredentialKey
from docker_credential_quayfed.sources import BY_NAME
from tests.jwt_factory import fake_jwt
from tests.support import leaks
from tests.support.records import record
from tests.support.requests import request_here

# Heavy: run by the README's test command and docs/reliability.py, not on every Python.
pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("QUAYFED_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    # Past the longest bound the product sets itself (a config's parse stops at PARSE_LIMIT):
    # a case that reaches it is the product keeping its limit, not a slow case.
    deadline=datetime.timedelta(seconds=config.PARSE_LIMIT + 3),
    database=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
# Far beyond any case's real duration: only a hang reaches it.
HANG_LIMIT = 10.0
# A message names what failed and the fix; server text in it must be cut, not copied whole.
MAX_MESSAGE = 300

HOST = "quay.fuzz.test"
HOST2 = "mirror.fuzz.test:5000"
ROBOT = "org+bot"
ROBOT2 = "org+mirror"
ROBOTS = {HOST: ROBOT, HOST2: ROBOT2}
# The cache's record of which token file serves which key while config.toml is unchanged.
SNAPSHOT_NAME = "config.snapshot"
# The token source reads this variable, which is never set: no case can reach the network.
UNSET_JWT_ENV = "QUAYFED_FUZZ_UNSET_JWT"
CLEARED_ENV = (
    "DOCKER_CREDENTIAL_QUAYFED_DEBUG",
    UNSET_JWT_ENV,
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "NO_PROXY",
    "no_proxy",
)
CONFIG_KEYS = (
    "robot", "issuer", "source", "client_id", "username", "password_env", "password_file",
    "password_command", "client_secret_env", "client_secret_file", "client_secret_command",
    "token_file", "token_env", "scope", "token_type", "audience", "quay_url", "ca_bundle",
    "refresh_margin", "on_failure", "timeout",
)  # fmt: skip


def robot_jwt(robot: str, lifetime: float = 3600, **claims: Any) -> str:
    now = int(time.time())
    return fake_jwt({"iss": "quay", "sub": robot, "iat": now, "exp": now + lifetime, **claims})


@dataclass(frozen=True)
class Offline:
    """A loopback port nothing listens on (issuer, Quay and proxy all point there), and a
    one-certificate CA bundle (loading the system store would cost each mint 50 ms)."""

    port: int
    ca_bundle: Path


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Offline:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ca_bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_bundle))
    return Offline(port, ca_bundle)


# -- the in-process helper -------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the watchdog; not an Exception, so the CLI's catch-all cannot swallow it."""


@dataclass(frozen=True)
class Outcome:
    code: object
    stdout: str
    stderr: str


def _state_of(module: Any) -> dict[str, Any]:
    return {
        name: value.copy()
        for name, value in vars(module).items()
        if isinstance(value, (set, dict, list)) and not name.startswith("__")
    }


def _restore_state(module: Any, saved: dict[str, Any]) -> None:
    for name, value in saved.items():
        current = getattr(module, name)
        current.clear()
        if isinstance(current, list):
            current.extend(value)
        else:
            current.update(value)


@contextlib.contextmanager
def hang_guard(what: str) -> Iterator[None]:
    """Interrupt the main thread after HANG_LIMIT seconds (SIGUSR1: the product arms SIGALRM)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Hang

    previous = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.main_thread().ident
    assert main is not None
    watchdog = threading.Timer(HANG_LIMIT, signal.pthread_kill, (main, signal.SIGUSR1))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    except Hang:
        pytest.fail(f"{what} did not finish within {HANG_LIMIT:.0f}s")
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGUSR1, previous)


def run_main(action: str, stdin: bytes) -> Outcome:
    """``docker-credential-quayfed ACTION`` in this process, like a fresh process would run it."""
    out, err = io.BytesIO(), io.BytesIO()
    replaced = (
        io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    )
    streams = (sys.stdin, sys.stdout, sys.stderr)
    # The product keeps per-process state in log (warned-once lines, registered secrets).
    saved = _state_of(log)
    code: object = None
    try:
        with hang_guard(f"{action} with {stdin[:60]!r}"):
            sys.stdin, sys.stdout, sys.stderr = replaced
            code = cli.main([action])
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        _restore_state(log, saved)
        for stream in replaced:
            stream.flush()
            stream.detach()  # keeps the BytesIO open when the wrapper goes
    outcome = Outcome(code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8"))
    returncode = code if isinstance(code, int) else -1
    # Answers here are made of generated data: checked, never registered as secrets.
    leaks.helper_output(
        action, returncode, outcome.stdout, outcome.stderr, "in-process", register=False
    )
    return outcome


def assert_clean(outcome: Outcome, what: str) -> None:
    seen = f"{what}: {outcome}"
    assert isinstance(outcome.code, int) and outcome.code in (0, 1, 2), seen
    for text in (outcome.stdout, outcome.stderr):
        assert "Traceback" not in text, seen
        assert "internal error" not in text, seen
    assert len(outcome.stderr.splitlines()) <= 1, seen
    if outcome.code != 0:
        assert len(outcome.stdout.splitlines()) <= 1, seen


# -- a configured helper with two cached tokens -------------------------------------------------
@dataclass
class World:
    directory: Path
    offline: Offline
    tokens: dict[str, str] = field(default_factory=dict)
    #: tokens a case's `store` wrote under a changed config: later cases may serve them
    stored: set[str] = field(default_factory=set)
    identities: dict[str, CredentialKey] = field(default_factory=dict)
    #: registry key -> (cache file, its bytes while intact)
    cached: dict[str, tuple[Path, bytes]] = field(default_factory=dict)
    snapshot: bytes = b""

    @property
    def config_path(self) -> Path:
        return self.directory / "config.toml"

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    @property
    def snapshot_path(self) -> Path:
        return self.cache_dir / SNAPSHOT_NAME

    def table(self, key: str) -> dict[str, Any]:
        return {
            "robot": ROBOTS[key],
            "issuer": f"https://127.0.0.1:{self.offline.port}/realms/fuzz",
            "source": "password",
            "client_id": "fuzz",
            "username": "fuzz",
            "password_env": UNSET_JWT_ENV,
            "quay_url": f"https://127.0.0.1:{self.offline.port}",
            "ca_bundle": str(self.offline.ca_bundle),
            "timeout": 3,
        }

    def base_config(self) -> str:
        return "".join(toml_table(key, self.table(key)) for key in ROBOTS)

    def environment(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.offline.port}"
        return {
            config.CONFIG_ENV: str(self.config_path),
            config.CACHE_DIR_ENV: str(self.cache_dir),
            "HTTPS_PROXY": proxy,
            "HTTP_PROXY": proxy,
            "ALL_PROXY": proxy,
        }

    def seed(self) -> None:
        """Write the config and cache a fresh token per key (TokenCache.write); the full path of
        a first get then writes the snapshot, which a second get must use."""
        self.config_path.write_text(self.base_config())
        registries = config.load(BY_NAME, self.config_path).registries
        cache = TokenCache(self.cache_dir)
        now = time.time()
        for key, robot in ROBOTS.items():
            token = robot_jwt(robot)
            leaks.known(token, "robot token cached by the fuzz tests")
            self.tokens[key] = token
            self.identities[key] = broker.key_for(registries[key], request_here())
            path = cache.write(self.identities[key], robot_token_from_jwt(key, robot, token, now))
            self.cached[key] = (path, path.read_bytes())
        for _ in range(2):
            outcome = run_main("get", HOST.encode())
            assert outcome.code == 0 and json.loads(outcome.stdout)["Secret"] == self.tokens[HOST]
        assert self.snapshot_path.is_file(), f"no {SNAPSHOT_NAME} after a get"
        self.snapshot = self.snapshot_path.read_bytes()

    def holds_token(self, key: str, token: str) -> bool:
        """The cache serves ``token`` for ``key`` (read through the product's TokenCache)."""
        entry = TokenCache(self.cache_dir).read(self.identities[key])
        return entry is not None and entry.token == token and entry.robot == ROBOTS[key]

    def restore(self, snapshot: bool = True) -> None:
        """Put the intact cache back after a case changed it."""
        for path, content in self.cached.values():
            if not _holds(path, content):
                write_private(path, content)
        if snapshot and not _holds(self.snapshot_path, self.snapshot):
            write_private(self.snapshot_path, self.snapshot)

    def assert_intact(self, what: str, allowed: Callable[[str, bytes | None], bool]) -> None:
        """Every cached token is byte-identical, unless ``allowed(key, bytes now)`` says why."""
        for key, (path, content) in self.cached.items():
            now = path.read_bytes() if _is_plain_file(path) else None
            if now != content:
                assert allowed(key, now), f"{what}: the cached token for {key} changed: {now!r}"
        leftovers = [p.name for p in self.cache_dir.iterdir() if p.name.endswith(".part")]
        assert not leftovers, f"{what}: temporary files left in the cache: {leftovers}"


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _holds(path: Path, content: bytes) -> bool:
    return _is_plain_file(path) and path.read_bytes() == content


def remove_any(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def write_private(path: Path, content: bytes) -> None:
    remove_any(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


@contextlib.contextmanager
def world_of(tmp_path: Path, offline: Offline) -> Iterator[World]:
    world = World(tmp_path, offline)
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEARED_ENV:
            patch.delenv(name, raising=False)
        for name, value in world.environment().items():
            patch.setenv(name, value)
        world.seed()
        yield world


@dataclass
class Counter:
    cases: int = 0


# -- TOML written here (no writer in the standard library) -------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(type(value))


def toml_table(key: str, table: dict[str, Any]) -> str:
    lines = [f"[registries.{json.dumps(key, ensure_ascii=False)}]"]
    lines += [f"{json.dumps(name)} = {toml_value(value)}" for name, value in table.items()]
    return "\n".join(lines) + "\n"


# -- strategies --------------------------------------------------------------------------------
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _nest(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a":': "}", '{"Secret":': "}", '{"ServerURL":': "}"}[opener]
    return opener * depth + ("1" if opener != "[" else "") + closer * depth


DEEP_JSON = st.builds(
    _nest, st.integers(1, 100_000), st.sampled_from(["[", '{"a":', '{"Secret":', '{"ServerURL":'])
)
HUGE = st.builds(
    lambda unit, count: (unit * count)[:1_000_000],
    st.binary(min_size=1, max_size=16),
    st.integers(1, 200_000),
)
HOST_SAMPLES = (
    HOST, HOST2, HOST.upper(), f"https://{HOST}/v2/", f"http://{HOST2}/", f" {HOST}\n",
    f"https://user:pw@{HOST}", f"{HOST}:443", f"{HOST}:", "[::1]:5000", "[::1", "", "https://",
    ":5000", "-x.test", "a b", "other.example", f"{HOST}:99999999", f"{HOST}\x00", f"{HOST}\u2028",
    "\uff51uay.fuzz.test", f"{HOST}:\u0665\u0660\u0660\u0660", "mirror.fuzz.test_5000",
    "mirror.fuzz.test", f"{HOST}.", "[::1]_5000",
)  # fmt: skip
HOSTISH = st.one_of(
    st.sampled_from(HOST_SAMPLES),
    st.builds(
        lambda pre, host, post: pre + host + post,
        st.sampled_from(["", "https://", "HTTP://", "//", "docker://", "user@", " \t"]),
        st.sampled_from([HOST, HOST2, "other.example"]),
        TEXT,
    ),
    TEXT,
    st.text(max_size=300),
)
SECRETS = st.one_of(
    st.builds(robot_jwt, st.sampled_from([ROBOT, ROBOT2, "evil+bot"])),
    st.builds(lambda: robot_jwt(ROBOT, lifetime=-60)),
    st.builds(lambda: fake_jwt({"sub": ROBOT})),
    st.builds(lambda: robot_jwt(ROBOT, exp="soon")),
    st.builds(lambda: robot_jwt(ROBOT, iat=10**30)),
    st.sampled_from(["not-a-jwt", "a.b.c", "eyJ.eyJ.x", "", " ", "x" * 70_000]),
    # A robot token's signature is never decoded: anything may stand there.
    st.builds(lambda signature: robot_jwt(ROBOT).rsplit(".", 1)[0] + "." + signature, TEXT),
    TEXT,
)
STORE_OBJECTS = st.one_of(
    st.fixed_dictionaries(
        {
            "ServerURL": st.sampled_from([HOST, HOST2, f"https://{HOST}/", HOST.upper()]),
            "Username": st.sampled_from([ROBOT, ROBOT2]),
            "Secret": SECRETS,
        }
    ),
    st.fixed_dictionaries(
        {
            "ServerURL": HOSTISH,
            "Username": st.sampled_from([ROBOT, ROBOT2, "someone", ""]),
            "Secret": SECRETS,
        }
    ),
    st.dictionaries(
        st.sampled_from(["ServerURL", "Username", "Secret", "serverurl", "Extra"]),
        JSON_VALUES | HOSTISH | SECRETS,
        max_size=5,
    ),
    JSON_VALUES,
)


def _encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


def _dumped(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


STDIN = st.one_of(
    st.binary(max_size=4096),
    HUGE,
    DEEP_JSON.map(str.encode),
    st.builds(_encoded, HOSTISH, st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-32"])),
    # Twice: JSON payloads get the larger share, they reach the most code.
    st.builds(_dumped, STORE_OBJECTS, st.booleans()).map(lambda text: _encoded(text, "utf-8")),
    st.builds(_dumped, STORE_OBJECTS, st.booleans()).map(lambda text: _encoded(text, "utf-8")),
)


def _decoded_key(stdin: bytes) -> str | None:
    """The registry key the helper derives from ``stdin`` (None when it is not a host)."""
    try:
        return protocol.registry_key(stdin[: 1 << 16].decode("utf-8", "replace"))
    except QuayfedError:
        return None


def _stored(stdin: bytes) -> tuple[str, str] | None:
    """(registry key, secret) of a store payload the helper could accept."""
    try:
        credentials = protocol.parse_store(stdin[: 1 << 16].decode("utf-8", "replace"))
    except (QuayfedError, RecursionError):
        return None
    return credentials.server_url, credentials.secret


def odd_signature_store() -> bytes:
    """A store payload whose robot token has a non-ASCII signature (never decoded anywhere)."""
    secret = robot_jwt(ROBOT).rsplit(".", 1)[0] + ".sig\u00e9"
    return json.dumps({"ServerURL": HOST, "Username": ROBOT, "Secret": secret}).encode()


# -- 1. stdin of every action ------------------------------------------------------------------
@pytest.mark.parametrize("action", protocol.ACTIONS)
def test_stdin_of_every_action(action: str, tmp_path: Path, offline: Offline) -> None:
    counter = Counter()
    with world_of(tmp_path, offline) as world:

        @FUZZ
        @given(stdin=STDIN)
        @example(stdin=b"[" * 100_000 + b"]" * 100_000)
        @example(stdin=b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
        @example(stdin=odd_signature_store())
        @example(stdin=b"mirror.fuzz.test_5000")
        def case(stdin: bytes) -> None:
            counter.cases += 1
            world.restore()
            outcome = run_main(action, stdin)
            what = f"{action} <<< {stdin[:200]!r}"
            assert_clean(outcome, what)
            check_answer(world, action, stdin, outcome, what)

        case()
    record("fuzz", target=f"stdin:{action}", cases=counter.cases, failures=0)


def check_answer(world: World, action: str, stdin: bytes, outcome: Outcome, what: str) -> None:
    seen = f"{what}: {outcome}"
    if action == "version":
        assert outcome.code == 0, seen
        assert outcome.stdout == f"docker-credential-quayfed {__version__}\n", seen
    elif action == "list":
        assert outcome.code == 0 and json.loads(outcome.stdout) == ROBOTS, seen
    elif action == "get" and outcome.code == 0:
        answer = json.loads(outcome.stdout)
        key = answer["ServerURL"]
        assert key in ROBOTS, seen
        assert answer == {"ServerURL": key, "Username": ROBOTS[key], "Secret": world.tokens[key]}
    erased = _decoded_key(stdin) if action == "erase" and outcome.code == 0 else None
    stored = _stored(stdin) if action == "store" and outcome.code == 0 else None

    def allowed(key: str, now: bytes | None) -> bool:
        if erased == key:
            return now is None
        if stored is not None and stored[0] == key and now is not None:
            return world.holds_token(key, stored[1])
        return False

    world.assert_intact(what, allowed)
    if action == "erase" and erased in ROBOTS:
        assert not world.cached[erased][0].exists(), seen


# -- 2. config files ----------------------------------------------------------------------------
def run_config_case(world: World, content: bytes, what: str) -> None:
    """get, list and store against ``content`` as config.toml; the cache must survive all three."""
    world.restore(snapshot=False)
    remove_any(world.snapshot_path)  # a fresh stamp for every case, even within one clock tick
    world.config_path.write_bytes(content)
    got = run_main("get", HOST.encode())
    assert_clean(got, f"get with {what}")
    if got.code == 0:
        answer = json.loads(got.stdout)
        # Nothing can be minted here, so an answer can only be a cached or a stored token.
        assert answer["Secret"] in {*world.tokens.values(), *world.stored}, got
    world.assert_intact(f"get with {what}", lambda key, now: False)
    listed = run_main("list", b"")
    assert_clean(listed, f"list with {what}")
    if listed.code == 0:
        assert isinstance(json.loads(listed.stdout), dict), listed
    payload = {"ServerURL": HOST, "Username": ROBOT, "Secret": robot_jwt(ROBOT)}
    stored = run_main("store", json.dumps(payload).encode())
    assert_clean(stored, f"store with {what}")
    if stored.code == 0:
        world.stored.add(payload["Secret"])

    def allowed(key: str, now: bytes | None) -> bool:
        return stored.code == 0 and now is not None and world.holds_token(key, payload["Secret"])

    world.assert_intact(f"store with {what}", allowed)


TOML_DATA = st.recursive(
    st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TOML_VALUE_SAMPLES = (
    '"org+bot"', '"env"', '"password"', f'"{UNSET_JWT_ENV}"', "300", "-1", "0", "1e999", "nan",
    "inf", "-inf", "true", "1979-05-27T07:32:00Z", "[]", "{}", '""', "'''x'''", '"\\u0000"',
    '"""\nmulti\n"""', "0x7fffffffffffffff", "9" * 400, '"https://x"',
)  # fmt: skip
TOML_VALUES = st.one_of(
    st.sampled_from(TOML_VALUE_SAMPLES),
    DEEP_JSON.map(lambda text: text.replace('"a":', "a = ").replace('"Secret":', "b = ")),
    st.builds(toml_value, TOML_DATA),
    TEXT,
)
TOML_LINE_SAMPLES = (
    f'[registries."{HOST}"]', f"[registries.{HOST}]", "[registries]", "[[registries]]",
    f'[registries."{HOST.upper()}"]', '[registries."https://x"]', "[other]", "registries = 1",
    f'[registries."{HOST}".nested]', "[", '["registries"', "# comment", "", "\ufeff",
)  # fmt: skip
TOML_LINES = st.one_of(
    st.sampled_from(TOML_LINE_SAMPLES),
    st.builds(
        lambda key, value: f"{key} = {value}",
        st.sampled_from(CONFIG_KEYS) | TEXT,
        TOML_VALUES,
    ),
    TEXT,
)
TOMLISH = st.lists(TOML_LINES, max_size=16).map("\n".join)


@pytest.mark.parametrize("target", ["toml-ish text", "arbitrary bytes"])
def test_config_files(target: str, tmp_path: Path, offline: Offline) -> None:
    counter = Counter()
    content = (
        st.one_of(TOMLISH, st.text(max_size=500)).map(lambda t: _encoded(t, "utf-8"))
        if target == "toml-ish text"
        else st.one_of(st.binary(max_size=2000), HUGE)
    )
    with world_of(tmp_path, offline) as world:

        @FUZZ
        @given(content=content)
        @example(content=b"robot = " + b"[" * 100_000 + b"]" * 100_000)
        @example(content=b"robot = " + b"{a = " * 5_000 + b"1" + b"}" * 5_000)
        def case(content: bytes) -> None:
            counter.cases += 1
            run_config_case(world, content, f"config.toml = {content[:300]!r}")

        case()
    record("fuzz", target=f"config:{target}", cases=counter.cases, failures=0)


WRONG_VALUE_SAMPLES = (
    "", " ", "password", "client_credentials", "file", "env", "github_actions", "nope", "id_token",
    "access_token", "anonymous", "error", ROBOT, "+bot", "org+", "org", "ftp://x", "https://",
    "http://127.0.0.1:1", "/nonexistent/file", "false", "/nonexistent/command --flag",
)  # fmt: skip
NUMBERS = st.one_of(
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 10**20, 0, -1, 1, 120, 121]),
    st.integers(),
    st.floats(),
)
WRONG_VALUES = st.one_of(
    NUMBERS,
    st.booleans(),
    TEXT,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(TEXT, st.integers(), max_size=2),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.sampled_from(WRONG_VALUE_SAMPLES),
)


def _structured(world: World) -> st.SearchStrategy[str]:
    """Documents from the real keys, each with a few keys dropped or given a wrong type or value."""

    def build(
        key: str,
        changes: list[tuple[str, Any]],
        drops: list[str],
        extra_top: dict[str, Any],
        registries_kind: str,
    ) -> str:
        table = world.table(HOST)
        for name in drops:
            table.pop(name, None)
        for name, value in changes:
            # Commands are never fuzzed into something that could run.
            table[name] = "/nonexistent/command" if name.endswith("_command") else value
        if registries_kind == "not a table":
            text = f"registries = {toml_value(changes[0][1] if changes else 1)}\n"
        else:
            text = toml_table(key, table) + toml_table(HOST2, world.table(HOST2))
        return text + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in extra_top.items())

    return st.builds(
        build,
        st.sampled_from([HOST, HOST, HOST, HOST.upper(), f"https://{HOST}", f"{HOST}:443", ""]),
        st.lists(
            st.tuples(st.sampled_from([*CONFIG_KEYS, "unknown", "Robot"]), WRONG_VALUES)
            | st.tuples(st.sampled_from(["refresh_margin", "timeout"]), NUMBERS),
            max_size=3,
        ),
        st.lists(st.sampled_from(CONFIG_KEYS), max_size=2),
        st.dictionaries(st.sampled_from(["unknown", "registry"]), st.integers(), max_size=1),
        st.sampled_from(["tables", "tables", "tables", "not a table"]),
    )


def test_config_structured_but_wrong(tmp_path: Path, offline: Offline) -> None:
    counter = Counter()
    with world_of(tmp_path, offline) as world:

        @FUZZ
        @given(document=_structured(world))
        @example(document=toml_table(HOST, {**world.table(HOST), "refresh_margin": 10**400}))
        def case(document: str) -> None:
            counter.cases += 1
            run_config_case(world, _encoded(document, "utf-8"), f"config.toml:\n{document}")

        case()
    record("fuzz", target="config:structured", cases=counter.cases, failures=0)


# -- 3. cache files -----------------------------------------------------------------------------
FIELD_VALUE_SAMPLES = (
    "nan", "inf", "-inf", "1e309", "-0", "0x10", "1_0", "", " 1", "9" * 400, "-1e9", "1e-320",
    HOST, HOST2, HOST.upper(), ROBOT, ROBOT2, "evil+bot", "a b", "\x00", "0123456789abcdef",
    "../x", "/etc/passwd",
)  # fmt: skip
FIELD_VALUES = st.one_of(
    st.sampled_from(FIELD_VALUE_SAMPLES),
    st.builds(str, st.floats()),
    st.builds(lambda: robot_jwt(ROBOT, lifetime=-60)),
    st.builds(lambda: robot_jwt(ROBOT2)),
    TEXT,
)
MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
        st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=20)),
        st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 50)),
        st.tuples(st.just("truncate"), st.integers(0, 10_000)),
        st.tuples(st.just("field"), st.integers(0, 8), FIELD_VALUES),
        st.tuples(st.just("swap"), st.integers(0, 8), st.integers(0, 8)),
        st.tuples(st.just("duplicate"), st.integers(0, 8)),
        st.tuples(st.just("append"), st.binary(max_size=100)),
    ),
    min_size=1,
    max_size=4,
)


def mutate(content: bytes, mutations: list[tuple[Any, ...]]) -> bytes:
    for op, *args in mutations:
        lines = content.split(b"\n")
        if op == "flip" and content:
            at = args[0] % len(content)
            content = content[:at] + bytes([args[1]]) + content[at + 1 :]
        elif op == "insert":
            at = args[0] % (len(content) + 1)
            content = content[:at] + args[1] + content[at:]
        elif op == "delete" and content:
            at = args[0] % len(content)
            content = content[:at] + content[at + args[1] :]
        elif op == "truncate":
            content = content[: args[0] % (len(content) + 1)]
        elif op == "field":
            # Replace one space-separated part of a line: a value, a name, a digest, a margin.
            line = lines[args[0] % len(lines)].split(b" ")
            line[-1 if len(line) < 2 else 1 + args[0] % (len(line) - 1)] = args[1].encode(
                "utf-8", "surrogatepass"
            )
            lines[args[0] % len(lines)] = b" ".join(line)
            content = b"\n".join(lines)
        elif op == "swap":
            i, j = args[0] % len(lines), args[1] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
            content = b"\n".join(lines)
        elif op == "duplicate":
            i = args[0] % len(lines)
            content = b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        elif op == "append":
            content += args[0]
    return content


def run_cache_case(world: World, what: str, before: bytes | None) -> None:
    """get for the damaged key, then for the other: never more than the cache really holds."""
    got = run_main("get", HOST.encode())
    assert_clean(got, f"get with {what}")
    if got.code == 0:
        answer = json.loads(got.stdout)
        assert answer["ServerURL"] == HOST, got
        # Nothing can be minted here: the answer comes from what the cache file held.
        held = before if before is not None else world.cached[HOST][1]
        assert answer["Secret"] and answer["Secret"].encode() in held, got
    else:
        assert got.stdout.strip() == protocol.NOT_FOUND, got
    other = run_main("get", HOST2.encode())
    assert_clean(other, f"get {HOST2} with {what}")
    expected = {"ServerURL": HOST2, "Username": ROBOT2, "Secret": world.tokens[HOST2]}
    assert other.code == 0 and json.loads(other.stdout) == expected, other
    path, content = world.cached[HOST2]
    assert _holds(path, content), f"{what}: the cached token for {HOST2} changed"
    leftovers = [p.name for p in world.cache_dir.iterdir() if p.name.endswith(".part")]
    assert not leftovers, f"{what}: temporary files left in the cache: {leftovers}"


@pytest.mark.parametrize("target", ["token file", "config snapshot"])
def test_cache_files_mutated(target: str, tmp_path: Path, offline: Offline) -> None:
    counter = Counter()
    with world_of(tmp_path, offline) as world:
        path = world.cached[HOST][0] if target == "token file" else world.snapshot_path
        intact = world.cached[HOST][1] if target == "token file" else world.snapshot

        @FUZZ
        @given(mutations=MUTATIONS)
        def case(mutations: list[tuple[Any, ...]]) -> None:
            counter.cases += 1
            world.restore()
            damaged = mutate(intact, mutations)
            write_private(path, damaged)
            token_bytes = damaged if target == "token file" else None
            run_cache_case(world, f"{target} = {damaged!r}", token_bytes)

        case()
    record("fuzz", target=f"cache:{target} mutated", cases=counter.cases, failures=0)


PLACED_KINDS = (
    "empty", "symlink to the other token", "hard link to the other token", "directory",
    "world-readable copy", "symlink to nowhere",
)  # fmt: skip
FILE_KINDS = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=2000)),
    st.tuples(st.just("bytes"), HUGE),
    st.tuples(st.sampled_from(PLACED_KINDS), st.just(b"")),
)


def place(world: World, path: Path, kind: str, content: bytes, intact: bytes) -> bytes | None:
    """Put ``kind`` at ``path``; returns the bytes a reader of ``path`` would find, if any."""
    remove_any(path)
    other = world.cached[HOST2][0]
    if kind == "bytes":
        write_private(path, content)
        return content
    if kind == "empty":
        write_private(path, b"")
        return b""
    if kind == "symlink to the other token":
        path.symlink_to(other)
        return None
    if kind == "hard link to the other token":
        os.link(other, path)
        return other.read_bytes()
    if kind == "directory":
        path.mkdir()
        return None
    if kind == "symlink to nowhere":
        path.symlink_to(world.directory / "nowhere")
        return None
    write_private(path, intact)
    path.chmod(0o644)
    return intact


def test_cache_files_arbitrary(tmp_path: Path, offline: Offline) -> None:
    counter = Counter()
    with world_of(tmp_path, offline) as world:

        @FUZZ
        @given(token=st.none() | FILE_KINDS, snapshot=st.none() | FILE_KINDS)
        def case(token: tuple[str, bytes] | None, snapshot: tuple[str, bytes] | None) -> None:
            counter.cases += 1
            world.restore()
            token_path, token_intact = world.cached[HOST]
            held = None
            if token is not None:
                held = place(world, token_path, *token, token_intact) or b""
            if snapshot is not None:
                place(world, world.snapshot_path, *snapshot, world.snapshot)
            run_cache_case(world, f"token {token!r:.300}, snapshot {snapshot!r:.300}", held)

        case()
    record("fuzz", target="cache:arbitrary", cases=counter.cases, failures=0)


@pytest.mark.parametrize("which", ["token file", "config snapshot"])
def test_a_fifo_in_the_cache_cannot_hang_get(which: str, tmp_path: Path, offline: Offline) -> None:
    with world_of(tmp_path, offline) as world:
        path = world.cached[HOST][0] if which == "token file" else world.snapshot_path
        remove_any(path)
        os.mkfifo(path, 0o600)
        # A FIFO with no writer blocks open(2) for reading unless O_NONBLOCK is given.
        outcome = run_main("get", HOST.encode())
        assert_clean(outcome, f"get with a FIFO as the {which}")


@pytest.mark.parametrize("target", ["login file", "discovery file"])
def test_login_and_discovery_files(target: str, tmp_path: Path) -> None:
    """Whatever the file holds, reading it gives an intact record or nothing, never an error."""
    from docker_credential_quayfed import logins
    from docker_credential_quayfed.config import RegistryConfig

    issuer = "https://idp.fuzz.test/realms/fuzz"
    registry = RegistryConfig(
        key=HOST, robot=ROBOT, issuer=issuer, source="device", client_id="cli"
    )
    cache = TokenCache(tmp_path / "cache")
    name = logins.login_name(registry) if target == "login file" else oidc.discovery_name(issuer)
    fields = st.dictionaries(
        st.sampled_from(
            ["format", "issuer", "client_id", "refresh_token", "token_issuer", "subject",
             "username", "scope",
             "logged_in_at", "refreshed_at", "expires_at", "for_issuer", "fetched_at",
             "token_endpoint", "jwks_uri", "device_authorization_endpoint",
             "code_challenge_methods", "grant_types"]
        ),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
            st.lists(st.text(max_size=5), max_size=3), st.just(issuer),
            st.just(logins.LOGIN_MAGIC), st.just("quayfed-discovery 1"),
        ),
    )  # fmt: skip
    counter = Counter()

    @FUZZ
    @given(content=st.binary(max_size=500) | fields.map(lambda d: json.dumps(d).encode()))
    def case(content: bytes) -> None:
        counter.cases += 1
        write_private(cache.directory / name, content)
        if target == "login file":
            found = logins.read(cache, registry)
            assert found is None or (found.refresh_token and found.issuer == issuer)
            if found is not None:
                found.expired(time.time())
        else:
            kept = oidc.cached_discovery(cache, issuer, time.time())
            assert kept is None or kept.token_endpoint.startswith("https://idp.fuzz.test/")

    cache.directory.mkdir(mode=0o700)
    case()
    record("fuzz", target=f"cache:{target}", cases=counter.cases, failures=0)


# -- 4. issuer and Quay responses ---------------------------------------------------------------
ISSUER = "https://issuer.fuzz.test/realms/fuzz"
TOKEN_ENDPOINT = f"{ISSUER}/protocol/openid-connect/token"
QUAY_URL = "https://quay.fuzz.test"
FORM_PASSWORD = "fuzz-password-5e1c"
CLIENT_SECRET = "fuzz-client-secret-77d0"

CONTENT_TYPES = (
    b"application/json", b"application/json; charset=utf-8", b"text/html",
    b"application/json; charset=utf-16", b"application/json; charset=bogus", b"",
    b"application/jwt", b"text/plain; charset=latin-1",
)  # fmt: skip
RETRY_AFTERS = (
    b"0", b"1", b"5", b"99999999999999999999", b"-1", b"1.5", b"\xb2", "\u0663".encode(),
    b"Wed, 21 Oct 2015 07:28:00 GMT", b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Mon, 01 Jan 0001 00:00:00 GMT", b"", b"   ", b"Thu, 01 Jan 1970 00:00:00 +9999",
)  # fmt: skip
HEADER_VALUES: dict[bytes, st.SearchStrategy[bytes]] = {
    b"content-type": st.sampled_from(CONTENT_TYPES) | st.binary(max_size=40),
    b"retry-after": st.sampled_from(RETRY_AFTERS) | st.binary(max_size=40),
    b"content-encoding": st.sampled_from(
        [b"gzip", b"deflate", b"br", b"identity", b"zstd", b"x-unknown", b"gzip, gzip", b""]
    ),
    b"www-authenticate": st.binary(max_size=60),
    b"location": st.sampled_from([b"https://elsewhere.test/", b"/login", b"\xff"]),
}
HEADERS = st.lists(
    st.one_of(
        *[st.tuples(st.just(name), values) for name, values in HEADER_VALUES.items()],
        st.tuples(st.sampled_from([b"x-a", b"server", b"set-cookie"]), st.binary(max_size=40)),
    ),
    max_size=5,
)
STATUS = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 405, 429, 500, 502, 503, 504])
STATUS = STATUS | st.integers(100, 599)


def json_documents(keys: list[str], right: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON objects over ``keys``: right-typed values, wrong types, extra keys."""
    values = (
        right
        | JSON_VALUES
        | st.text(max_size=400)
        | st.builds(lambda n: "é\n\x1b" * n, st.integers(0, 5000))
    )
    documents = st.dictionaries(st.sampled_from(keys) | TEXT, values, max_size=len(keys) + 2)
    return st.builds(
        lambda doc, ascii_only: json.dumps(doc, ensure_ascii=ascii_only).encode(),
        documents,
        st.booleans(),
    )


BODY_SAMPLES = (
    b"", b"null", b"[]", b"{}", b"\xef\xbb\xbf{}", b"<html><body>502</body></html>",
    b'{"token": "a"}', b"NaN", b"1e999", b'"eyJ"', b'{"a": 1}{"b": 2}',
)  # fmt: skip


def bodies(keys: list[str], right: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_documents(keys, right),
        st.binary(max_size=2000),
        HUGE,
        DEEP_JSON.map(str.encode),
        st.sampled_from(BODY_SAMPLES),
    )


QUAY_MESSAGES = (
    "Could not find robot", "Invalid robot", "Robot does not have federated login",
    "Invalid token: expired", "Invalid token: kid", "No auth header", "x" * 1000,
)  # fmt: skip
RESPONSE_TARGETS: dict[str, tuple[list[str], st.SearchStrategy[Any]]] = {
    "discovery": (
        ["issuer", "token_endpoint", "jwks_uri"],
        st.sampled_from([ISSUER, TOKEN_ENDPOINT, f"{ISSUER}/", "", "not a url"]),
    ),
    "token endpoint": (
        ["id_token", "access_token", "error", "error_description", "token_type", "expires_in"],
        st.sampled_from(["invalid_grant", "invalid_client", "unauthorized_client", "x" * 400])
        | st.builds(lambda: fake_jwt({"iss": ISSUER, "sub": "jdoe"})),
    ),
    "quay exchange": (
        ["token", "message", "error", "detail", "error_message", "title"],
        st.sampled_from(QUAY_MESSAGES) | st.builds(lambda: robot_jwt(ROBOT)),
    ),
}


class VirtualClock:
    """transport's clock and sleep: retries and Retry-After waits pass without real waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += max(seconds, 0.0)

    def time(self) -> float:
        return time.time()


def call_parser(target: str, session: httpx.Client, token_type: str) -> str:
    deadline = transport_module.Deadline(25)
    if target == "discovery":
        found = oidc.discover(session, ISSUER, deadline)
        assert isinstance(found.token_endpoint, str) and isinstance(found.issuer, str)
        return found.token_endpoint
    if target == "token endpoint":
        form = {
            "grant_type": "password",
            "client_id": "fuzz-cli",
            "username": "jdoe",
            "password": FORM_PASSWORD,
        }
        return oidc.request_token(
            session,
            TOKEN_ENDPOINT,
            form,
            deadline=deadline,
            token_type=token_type,
            client_auth=("fuzz-cli", CLIENT_SECRET),
        )
    oidc_token = fake_jwt({"iss": ISSUER, "sub": "jdoe"})
    return quay.exchange(session, QUAY_URL, ROBOT, oidc_token, deadline=deadline)


@pytest.mark.parametrize("target", list(RESPONSE_TARGETS))
def test_responses(target: str) -> None:
    counter = Counter()
    keys, right = RESPONSE_TARGETS[target]
    leaks.known(FORM_PASSWORD, "password sent by the response fuzz tests")
    leaks.known(CLIENT_SECRET, "client secret sent by the response fuzz tests")
    leaks.user("fuzz-cli")

    @FUZZ
    @given(
        status=STATUS,
        headers=HEADERS,
        body=bodies(keys, right),
        token_type=st.sampled_from(["id_token", "access_token"]),
    )
    @example(status=503, headers=[(b"retry-after", b"\xb2")], body=b"", token_type="id_token")
    @example(status=200, headers=[(b"server", b"caf\xe9")], body=b"{}", token_type="id_token")
    def case(status: int, headers: list[tuple[bytes, bytes]], body: bytes, token_type: str) -> None:
        counter.cases += 1
        requests: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return httpx.Response(status, headers=headers, content=body)

        what = f"{target}: HTTP {status} {headers!r:.300} {body[:300]!r}"
        with contextlib.ExitStack() as stack:
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            stack.enter_context(hang_guard(what))
            session = stack.enter_context(httpx.Client(transport=httpx.MockTransport(answer)))
            patch.setattr(transport_module, "time", VirtualClock())
            try:
                result = call_parser(target, session, token_type)
            except QuayfedError as exc:
                message = exc.message
                assert len(message.splitlines()) == 1, f"{what}: {message!r}"
                assert len(message) <= MAX_MESSAGE, (
                    f"{what}: {len(message)} characters: {message!r}"
                )
            else:
                assert isinstance(result, str) and result, f"{what}: {result!r}"
        assert len(requests) <= transport_module.MAX_ATTEMPTS, what

    case()
    record("fuzz", target=f"response:{target}", cases=counter.cases, failures=0)
