"""Many helper processes on one registry key at once, some killed at random moments.

200 runs of the installed helper (get, erase and store mixed) go against nanoidp and the Quay
emulator, 16 at a time; about 20 are killed with SIGKILL: most at a random moment, the rest in
the middle of writing the cache (a ``sitecustomize`` given to those processes only pauses
before the rename that publishes a written file, and the test kills them there).

What must hold:

- every ``get`` that finishes answers a valid robot token (signed by the emulator, ``exp`` in
  the future, for the configured robot) or the not-found line: never a corrupt read, never a
  traceback;
- afterwards nothing is left locked: ``flock(LOCK_EX | LOCK_NB)`` succeeds on every lock file
  and a last ``get`` answers promptly;
- at most one exchange per refresh window. The cache needs refilling once at the start and
  after each ``erase`` (one killed at any moment may already have removed the token); a ``get``
  killed after Quay answered but before it wrote the cache used up an exchange without
  filling it (a ``store`` only ever leaves a fresh token). So exchanges <= 1 + erases run
  (finished or killed) + gets killed. That sum is loose, so each exchange is also checked on
  the clock: between any two, an erase must have run or a get been killed (a lock that does
  not lock fails this at once, the sum not always).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from docker_credential_quayfed.protocol import NOT_FOUND
from quay_sandbox.quay import QuayEmulator
from tests.helper_process import helper_command, run_helper
from tests.support import leaks
from tests.support.oidc_provider import OIDCProvider
from tests.support.records import record

# Heavy: run by the README's test command and docs/reliability.py, not on every Python.
pytestmark = pytest.mark.reliability

ROBOT = "quay_federation+rhbk_user"
PASSWORD_ENV = "QUAYFED_RACE_PASSWORD"
PROCESSES = 200
PARALLEL = 16
MIX = {"get": 140, "erase": 40, "store": 20}
KILLED_AT_RANDOM = 14
#: of each action, how many are told to pause before their rename and are killed there
KILLED_MID_WRITE = {"store": 6, "get": 4}
KILL_WINDOW = (0.0, 0.4)
WRITE_PAUSE = 0.5
#: a process still running after this long is hung
RUN_LIMIT = 60.0
#: a last get on an intact cache needs one refill at most
PROMPT = 5.0

SITECUSTOMIZE = '''\
"""Loaded by the race test's mid-write processes only: pause before publishing a write."""
import os

_markers = os.environ.get("QUAYFED_RACE_PAUSE_DIR")
if _markers:
    import time

    _replace = os.replace

    def _paused_replace(src, dst, *args, **kwargs):
        with open(os.path.join(_markers, str(os.getpid())), "w"):
            pass
        time.sleep(float(os.environ.get("QUAYFED_RACE_PAUSE", "0.5")))
        return _replace(src, dst, *args, **kwargs)

    os.replace = _paused_replace
'''


@dataclass
class Run:
    index: int
    action: str
    stdin: bytes
    env: dict[str, str]
    kill_after: float | None = None
    kill_mid_write: bool = False
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ended: float = 0.0
    killed: str = ""
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""

    def describe(self) -> str:
        how = f", killed {self.killed}" if self.killed else ""
        return (
            f"#{self.index} {self.action}{how}: exit {self.returncode}, "
            f"stdout {self.stdout[:300]!r}, stderr {self.stderr[:300]!r}"
        )


@dataclass
class Tally:
    corrupt_reads: list[str]
    not_found: list[str]
    problems: list[str]


def plan(rng: random.Random, env: dict[str, str], stores: list[str], pause: Path) -> list[Run]:
    actions = [action for action, count in MIX.items() for _ in range(count)]
    rng.shuffle(actions)
    assert len(actions) == PROCESSES
    runs = []
    for index, action in enumerate(actions):
        stdin = json.dumps(
            {"ServerURL": env["QUAYFED_RACE_KEY"], "Username": ROBOT, "Secret": stores.pop()}
        ) if action == "store" else env["QUAYFED_RACE_KEY"]  # fmt: skip
        runs.append(Run(index, action, stdin.encode(), env))
    for action, count in KILLED_MID_WRITE.items():
        for run in rng.sample([r for r in runs if r.action == action], count):
            run.kill_mid_write = True
            run.env = {
                **env,
                "PYTHONPATH": str(pause.parent),
                "QUAYFED_RACE_PAUSE_DIR": str(pause),
                "QUAYFED_RACE_PAUSE": str(WRITE_PAUSE),
            }
    for run in rng.sample([r for r in runs if not r.kill_mid_write], KILLED_AT_RANDOM):
        run.kill_after = rng.uniform(*KILL_WINDOW)
    return runs


def start(run: Run) -> None:
    leaks.helper_input(run.action, run.stdin, run.env)
    run.process = subprocess.Popen(
        [*helper_command(), run.action],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **run.env},
    )
    run.started = time.monotonic()
    assert run.process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        run.process.stdin.write(run.stdin)
    with contextlib.suppress(BrokenPipeError):
        run.process.stdin.close()


def kill(run: Run, how: str) -> None:
    assert run.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(run.process.pid, signal.SIGKILL)
    run.killed = how


def finish(run: Run) -> None:
    assert run.process is not None and run.process.stdout and run.process.stderr
    run.returncode = run.process.wait()
    run.ended = time.monotonic()
    run.stdout = run.process.stdout.read().decode("utf-8", "replace")
    run.stderr = run.process.stderr.read().decode("utf-8", "replace")
    run.process.stdout.close()
    run.process.stderr.close()
    if run.killed and run.returncode != -signal.SIGKILL:
        run.killed = ""  # it had finished before the signal landed
    stdout = run.stdout
    if run.killed and run.action == "get":
        # Killed while answering, it leaves (part of) its answer: that is no leak.
        for token in leaks.JWT_PATTERN.findall(stdout):
            leaks.known(token, "robot token answered by get")
        stdout = leaks.JWT_PATTERN.sub("<answer>", stdout)
    where = "race helper (killed)" if run.killed else "race helper"
    leaks.helper_output(run.action, run.returncode, stdout, run.stderr, where)


def drive(runs: list[Run], pause: Path) -> None:
    """Run everything, PARALLEL at a time, killing as planned."""
    pending = deque(runs)
    running: list[Run] = []
    try:
        while pending or running:
            while pending and len(running) < PARALLEL:
                run = pending.popleft()
                start(run)
                running.append(run)
            time.sleep(0.002)
            for run in list(running):
                assert run.process is not None
                age = time.monotonic() - run.started
                if run.process.poll() is not None:
                    finish(run)
                    running.remove(run)
                elif run.killed:
                    continue
                elif run.kill_after is not None and age >= run.kill_after:
                    kill(run, f"after {age:.2f}s")
                elif run.kill_mid_write and (pause / str(run.process.pid)).exists():
                    kill(run, "mid-write")
                elif age > RUN_LIMIT:
                    kill(run, "as hung")
    finally:
        for run in running:
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()


def check_get(run: Run, quay: QuayEmulator, key: str, tally: Tally) -> None:
    if run.returncode == 1 and run.stdout.strip() == NOT_FOUND:
        tally.not_found.append(run.describe())
        return
    try:
        answer = json.loads(run.stdout)
        assert run.returncode == 0
        assert answer["ServerURL"] == key and answer["Username"] == ROBOT
        public_key = quay.instance_key.private_key.public_key()
        token_claims = jwt.decode(
            answer["Secret"],
            public_key,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "sub"]},
        )
        assert token_claims["sub"] == ROBOT and token_claims["exp"] > time.time()
    except (AssertionError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        tally.corrupt_reads.append(f"{run.describe()} ({type(exc).__name__}: {exc})")


def stuck_locks(cache_dir: Path) -> list[str]:
    stuck = []
    for path in sorted(cache_dir.glob("*.lock")):
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            stuck.append(path.name)
        finally:
            os.close(fd)
    return stuck


@pytest.fixture
def race_env(
    quay: QuayEmulator, oidc_provider: OIDCProvider, quay_ca: Path, tmp_path: Path
) -> dict[str, str]:
    """A password-grant configuration for the emulator's key, robot federated to jdoe."""
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "jdoe")])
    settings: dict[str, Any] = {
        "robot": ROBOT,
        "issuer": oidc_provider.issuer,
        "quay_url": quay.url,
        "ca_bundle": str(quay_ca),
        "source": "password",
        "client_id": oidc_provider.public_client,
        "username": "jdoe",
        "password_env": PASSWORD_ENV,
    }
    lines = [f"[registries.{json.dumps(quay.host)}]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    config = tmp_path / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    return {
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        PASSWORD_ENV: oidc_provider.users["jdoe"],
        "QUAYFED_RACE_KEY": quay.host,
    }


def unexplained_exchanges(issued: list[float], runs: list[Run]) -> list[float]:
    """Exchanges (times Quay issued a robot token) with no reason to refill since the one before.

    A refill after an earlier one is explained only by an erase that ran in between (finished
    or killed) or by a get killed around the earlier exchange (it may have died before writing).
    """
    erases = [(run.started, run.ended) for run in runs if run.action == "erase"]
    killed_gets = [(run.started, run.ended) for run in runs if run.action == "get" and run.killed]
    unexplained = []
    for before, after in zip(issued, issued[1:]):
        erased = any(start < after and end > before for start, end in erases)
        lost = any(start <= before <= end for start, end in killed_gets)
        if not (erased or lost):
            unexplained.append(after)
    return unexplained


def test_two_hundred_processes_with_kills(
    quay: QuayEmulator,
    race_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = int(os.environ.get("QUAYFED_RACE_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    key = quay.host
    pause = tmp_path / "site" / "paused"
    pause.mkdir(parents=True)
    (pause.parent / "sitecustomize.py").write_text(SITECUSTOMIZE)
    stores = [quay.issue_robot_token(ROBOT) for _ in range(MIX["store"])]
    runs = plan(rng, race_env, stores, pause)
    issued: list[float] = []
    issue = quay.issue_robot_token

    def timed_issue(robot: str, **kwargs: Any) -> str:
        issued.append(time.monotonic())  # the exchange's moment, on the test's clock
        return issue(robot, **kwargs)

    monkeypatch.setattr(quay, "issue_robot_token", timed_issue)
    started = time.monotonic()
    drive(runs, pause)
    took = time.monotonic() - started
    monkeypatch.undo()
    unexplained = unexplained_exchanges(sorted(issued), runs)

    tally = Tally([], [], [])
    for run in runs:
        if run.killed:
            continue
        if "Traceback" in run.stdout + run.stderr or "internal error" in run.stdout + run.stderr:
            tally.problems.append(run.describe())
        elif len(run.stderr.splitlines()) > 1:
            tally.problems.append(f"more than one stderr line: {run.describe()}")
        if run.action == "get":
            check_get(run, quay, key, tally)
        elif run.returncode != 0:
            tally.problems.append(run.describe())
    killed = [run for run in runs if run.killed]
    mid_write = [run for run in killed if run.killed == "mid-write"]
    hung = [run.describe() for run in killed if run.killed == "as hung"]
    counters = quay.counters_snapshot()
    exchanges = int(counters["exchanges_succeeded"])
    erases_run = sum(1 for run in runs if run.action == "erase")
    gets_killed = sum(1 for run in killed if run.action == "get")
    refresh_windows = 1 + erases_run + gets_killed
    cache_dir = Path(race_env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])
    stuck = stuck_locks(cache_dir)
    parts = sorted(p.name for p in cache_dir.iterdir() if p.name.endswith(".part"))

    final_started = time.monotonic()
    final = run_helper("get", key, env=race_env, timeout=60)
    final_took = time.monotonic() - final_started
    final_tally = Tally([], [], [])
    final_run = Run(-1, "get", b"", race_env, returncode=final.returncode, stdout=final.stdout)
    check_get(final_run, quay, key, final_tally)

    record(
        "races",
        processes=len(runs),
        killed=len(killed),
        corrupt_reads=len(tally.corrupt_reads),
        stuck_locks=len(stuck),
        exchanges=exchanges,
        refresh_windows=refresh_windows,
        unexplained_exchanges=len(unexplained),
        mid_write_kills=len(mid_write),
        not_found=len(tally.not_found),
        seconds=round(took, 1),
        seed=seed,
    )
    seen = (
        f"seed {seed} ({took:.1f}s): {len(killed)} killed ({len(mid_write)} mid-write), "
        f"exchanges {exchanges} of at most {refresh_windows} (counters {counters}), "
        f"{len(unexplained)} with no erase or killed get since the one before, "
        f"not found {len(tally.not_found)}, temp files left {parts}"
    )
    assert not hung, f"{seen}; hung: {hung}"
    assert not tally.corrupt_reads, f"{seen}; corrupt reads: {tally.corrupt_reads}"
    assert not tally.problems, f"{seen}; problems: {tally.problems}"
    assert not stuck, f"{seen}; locks still held: {stuck}"
    assert final.returncode == 0 and not final_tally.corrupt_reads, f"{seen}; last get: {final}"
    assert final_took < PROMPT, f"{seen}; the last get took {final_took:.1f}s"
    assert exchanges <= refresh_windows, seen
    assert len(issued) == exchanges, seen
    assert not unexplained, seen
    assert counters["exchanges_attempted"] == counters["exchanges_succeeded"], seen
