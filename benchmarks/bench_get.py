"""Figures for `get`, each a ratio to a baseline measured alternately in the same run.

    python benchmarks/bench_get.py [--rounds N] [--helper PATH] [--zipapp PATH] [--frozen PATH]
                                   [--concurrent N] [--no-cold] [--json PATH] [--strict]

Prints one table, ratio first (``benchmarks/report.py`` renders the same table into the
README from the JSON that ``--json`` writes). Times are medians of wall time; peak memory is
each command's own ``ru_maxrss``, taken by a tiny C parent (see ``measure.py``). Groups:

- cache hit, all alternated round-robin: the helper's `get` answered from its cache, the
  interpreter floor ``python -I -S -c pass``, ``python -c pass``, the same `get` with 500
  registries configured, the single-file zipapp (``--zipapp``), two Go helpers from Debian
  (``peers.py``), and two method checks: programs that allocate 50 MiB more and sleep 20 ms
  more than the floor must read that much more;
- the kubelet provider's start-up (``--frozen``): the self-contained executable that needs no
  Python, the zipapp under the provider's name and the installed launcher, alternated, on a
  request answered from the configuration alone; and the two files' sizes;
- cold `get` (discovery, password grant, exchange over loopback TLS against the embedded
  issuer and Quay emulator; needs the ``demo`` extra) against ``python -c "import httpx, jwt"``;
- ``--concurrent`` cold `get`s started at once: the issuer and the emulator count the token
  requests and exchanges, every process must answer, and the slowest answer is reported.

Goals are reported, met or not (``--strict``: exit 1 when one is missed). A method check on
memory that fails, or a measured command that answers wrongly, makes the run exit 1: its
figures would mean nothing.

To add a figure, write a function that takes the :class:`Bench` and returns :class:`Row`
objects, and append it to ``FIGURES``; the table and the README follow. A figure measured
against the cache hit alternates its command with a cache-hit `get` of its own (as the
500-registry row does inside :func:`cache_hit_figures`), never against figures of another
group.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import peers
import report
from measure import Command, MeasureError, Runner, alternate

if TYPE_CHECKING:
    from docker_credential_quayfed.commands.demo import DemoServers

HOST = "bench.quay.test"
IMAGE = f"{HOST}/org/app:1"
PROVIDER = "quay-credential-provider"
ROBOT = "org+bench"
MANY_REGISTRIES = 500
ALLOCATED_MIB = 50
SLEPT_MS = 20
METHOD_TOLERANCE = (0.9, 1.2)


@dataclass(frozen=True)
class Row:
    """One line of the table: the ratio, its goal, and the figures it comes from."""

    key: str
    what: str
    ratio: float | None
    goal: str = ""
    met: bool | None = None  # None: no goal
    measured: str = ""
    baseline: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    runner: Runner
    workdir: Path
    python: str
    helper: list[str]
    #: the median cold `get` in seconds, once measured
    cold_seconds: float | None = None
    #: the measurement cannot be trusted: the run exits 1
    failures: list[str] = field(default_factory=list)
    #: what a missed goal said, printed after the table
    notes: list[str] = field(default_factory=list)


def at_most(ratio: float, limit: float) -> tuple[str, bool]:
    return f"<= {limit:g}", ratio <= limit


def within(ratio: float, low: float, high: float) -> tuple[str, bool]:
    return f"{low:g} to {high:g}", low <= ratio <= high


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timing(command: Command) -> str:
    peak = command.median_peak_mib()
    memory = f", {peak:.1f} MiB" if peak is not None else ""
    return f"{ms(command.median_seconds())}{memory}"


def time_row(key: str, what: str, measured: Command, baseline: Command, goal: float = 0) -> Row:
    ratio = measured.median_seconds() / baseline.median_seconds()
    text, met = at_most(ratio, goal) if goal else ("", None)
    return Row(
        key,
        what,
        ratio,
        text,
        met,
        f"{measured.label}: {timing(measured)}",
        f"{baseline.label}: {timing(baseline)}",
    )


def memory_row(
    key: str, what: str, measured: Command, baseline: Command, goal: float = 0
) -> Row | None:
    measured_mib = measured.median_peak_mib()
    baseline_mib = baseline.median_peak_mib()
    if measured_mib is None or baseline_mib is None:
        return None
    ratio = measured_mib / baseline_mib
    text, met = at_most(ratio, goal) if goal else ("", None)
    return Row(
        key,
        what,
        ratio,
        text,
        met,
        f"{measured.label}: {measured_mib:.1f} MiB",
        f"{baseline.label}: {baseline_mib:.1f} MiB",
    )


# -- setup ---------------------------------------------------------------------------------
def helper_argv(explicit: str) -> list[str]:
    if explicit:
        return [os.path.abspath(shutil.which(explicit) or explicit)]
    beside = Path(sys.executable).with_name("docker-credential-quayfed")
    if beside.exists():
        return [str(beside)]
    installed = shutil.which("docker-credential-quayfed")
    if not installed:
        raise SystemExit("docker-credential-quayfed is not installed (pip install .)")
    return [os.path.abspath(installed)]


def interpreter_of(helper: str) -> str:
    """The python3 an installed launcher starts (the one beside it), else this one."""
    beside = Path(os.path.realpath(helper)).with_name("python3")
    return str(beside) if os.access(beside, os.X_OK) else sys.executable


def robot_token_at(issued: float, expires: float) -> str:
    claims = {"iss": "quay", "sub": ROBOT, "iat": int(issued), "exp": int(expires)}
    return unsigned_jwt(claims)


def unsigned_jwt(claims: dict[str, object]) -> str:
    header = _segment({"alg": "RS256", "kid": "k"})
    return f"{header}.{_segment(claims)}.c2ln"


def fake_robot_token(lifetime: int) -> str:
    now = time.time()
    return robot_token_at(now, now + lifetime)


def registry_toml(host: str) -> str:
    """A registry whose source is not ambient (its token may be answered from the cache); the
    issuer and Quay are a closed port, so only a cache hit can answer."""
    return (
        f'[registries."{host}"]\nrobot = "{ROBOT}"\nissuer = "https://127.0.0.1:1/realms/bench"\n'
        'client_id = "bench"\nsource = "password"\nusername = "bench"\n'
        'password_env = "QUAYFED_BENCH_UNUSED"\nquay_url = "https://127.0.0.1:1"\n'
    )


def token_file_toml(host: str, token_file: Path) -> str:
    """A registry whose JWT is in a file: a hit reads who that JWT names to find its key."""
    return (
        f'[registries."{host}"]\nrobot = "{ROBOT}"\nissuer = "https://127.0.0.1:1/realms/bench"\n'
        f'source = "file"\ntoken_file = "{token_file}"\nquay_url = "https://127.0.0.1:1"\n'
    )


def service_account_jwt() -> str:
    """A projected service-account token's shape: nested claims and an audience list."""
    claims = {
        "aud": ["quay.bench.test", "https://kubernetes.default.svc"],
        "exp": int(time.time()) + 86400,
        "iat": int(time.time()),
        "iss": "https://127.0.0.1:1/realms/bench",
        "kubernetes.io": {
            "namespace": "ci",
            "pod": {"name": "builder-7d9f", "uid": "0d6c0b7e-6b1e-4c1b-9a55-3f1c2b0e9a41"},
            "serviceaccount": {"name": "builder", "uid": "5f2c9d1e-8a7b-4c3d-9e0f-1a2b3c4d5e6f"},
        },
        "nbf": int(time.time()),
        "sub": "system:serviceaccount:ci:builder",
    }
    return unsigned_jwt(claims)


def _segment(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def helper_env(directory: Path, config: str) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(config, encoding="utf-8")
    env = dict(os.environ)
    for name in [n for n in env if n.startswith(("DOCKER_CREDENTIAL_QUAYFED_", "PYTHON"))]:
        del env[name]
    env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"] = str(directory / "config.toml")
    env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"] = str(directory / "cache")
    env["XDG_CACHE_HOME"] = str(directory / "xdg-cache")  # where the zipapp unpacks itself
    return env


def store_token(helper: Sequence[str], env: dict[str, str]) -> None:
    payload = {"ServerURL": HOST, "Username": ROBOT, "Secret": fake_robot_token(86400)}
    done = subprocess.run(
        [*helper, "store"], input=json.dumps(payload).encode(), env=env, capture_output=True
    )
    if done.returncode != 0:
        raise MeasureError(f"store failed ({done.returncode}): {done.stdout!r} {done.stderr!r}")


def answers_credentials(out: bytes) -> bool:
    return out.startswith(b'{"ServerURL": "' + HOST.encode() + b'"') and b'"Secret": "' in out


def python_command(bench: Bench, label: str, *args: str) -> Command:
    return Command(label, [bench.python, *args], helper_env(bench.workdir / "python", ""))


@contextlib.contextmanager
def demo_helper(bench: Bench, name: str) -> Iterator[tuple[DemoServers, dict[str, str], Path]]:
    """The embedded issuer and Quay emulator, a helper environment configured for them, and
    that helper's cache directory."""
    from docker_credential_quayfed.commands.demo import DemoServers

    with DemoServers(bench.workdir / name) as servers:
        env = helper_env(bench.workdir / f"{name}-helper", servers.config_toml(HOST))
        env.update(servers.environment())
        yield servers, env, Path(env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])


def demo_missing() -> str:
    """Why the demo servers cannot run here ("" when they can)."""
    try:
        from docker_credential_quayfed.commands import demo  # noqa: F401
    except ImportError as exc:
        return f"skipped: {exc} (the demo extra)"
    return ""


# -- figures -------------------------------------------------------------------------------
def cache_hit_figures(bench: Bench) -> list[Row]:
    env = helper_env(bench.workdir / "hit", registry_toml(HOST))
    store_token(bench.helper, env)
    others = "".join(registry_toml(f"r{n}.quay.test") for n in range(MANY_REGISTRIES - 1))
    many_env = helper_env(bench.workdir / "many", others + registry_toml(HOST))
    store_token(bench.helper, many_env)

    token_file = bench.workdir / "projected-token"
    token_file.write_text(service_account_jwt())
    file_env = helper_env(bench.workdir / "file", token_file_toml(HOST, token_file))
    store_token(bench.helper, file_env)

    floor = python_command(bench, "python -I -S -c pass", "-I", "-S", "-c", "pass")
    plain = python_command(bench, "python -c pass", "-c", "pass")
    # A hit leaves without the interpreter's teardown: this start does the same, so the row
    # against it shows what the helper's own work costs.
    bare = python_command(
        bench, "python -I -S, posix._exit(0)", "-I", "-S", "-c", "import posix; posix._exit(0)"
    )
    allocating = python_command(
        bench,
        f"floor + {ALLOCATED_MIB} MiB",
        "-I",
        "-S",
        "-c",
        f"b = b'x' * ({ALLOCATED_MIB} << 20)",
    )
    sleeping = python_command(
        bench,
        f"floor + {SLEPT_MS} ms sleep",
        *("-I", "-S", "-c", f"import time; time.sleep({SLEPT_MS / 1000})"),
    )
    hit = Command("get", [*bench.helper, "get"], env, HOST.encode(), answer_ok=answers_credentials)
    many = Command(
        f"get, {MANY_REGISTRIES} registries",
        [*bench.helper, "get"],
        many_env,
        HOST.encode(),
        answer_ok=answers_credentials,
    )
    from_file = Command(
        "get, source = file",
        [*bench.helper, "get"],
        file_env,
        HOST.encode(),
        answer_ok=answers_credentials,
    )
    commands = [floor, plain, bare, hit, many, from_file, allocating, sleeping]
    zipapp = None
    if bench.args.zipapp:
        zipapp_env = {**env, "PATH": f"{Path(bench.python).parent}{os.pathsep}{env['PATH']}"}
        path = os.path.abspath(bench.args.zipapp)
        zipapp = Command(
            "zipapp get", [path, "get"], zipapp_env, HOST.encode(), answer_ok=answers_credentials
        )
        bench.runner.run(zipapp)  # the first run unpacks it: not what is measured
        commands.append(zipapp)
    unmeasured: list[Row] = []
    measured_peers = []
    for peer in peers.peers(bench.workdir):
        if peer.command is None:
            note = f"not installed (apt-get install {peer.package})"
            unmeasured.append(Row(peer.key, f"against `{peer.label}`", None, measured=note))
            continue
        try:
            bench.runner.run(peer.command)
        except MeasureError as exc:  # a peer that cannot answer is reported, not measured
            unmeasured.append(Row(peer.key, f"against `{peer.label}`", None, measured=str(exc)))
            continue
        measured_peers.append(peer)
        commands.append(peer.command)
    alternate(bench.runner, commands, bench.args.rounds)

    rows = method_rows(bench, floor, allocating, sleeping)
    rows.append(
        time_row(
            "cache_hit_vs_floor",
            "cache-hit `get`, time, against the interpreter floor",
            hit,
            floor,
            1.15,
        )
    )
    rows.append(
        time_row(
            "cache_hit_vs_bare_start",
            "cache-hit `get`, time, against the floor without its teardown (as a hit leaves)",
            hit,
            bare,
        )
    )
    rows.append(
        time_row(
            "cache_hit_vs_python", "cache-hit `get`, time, against `python -c pass`", hit, plain
        )
    )
    memory = memory_row(
        "cache_hit_memory", "cache-hit `get`, peak memory, against the floor", hit, floor, 1.3
    )
    if memory is not None:
        rows.append(memory)
    rows.append(
        time_row(
            "many_registries",
            f"cache-hit `get` with {MANY_REGISTRIES} registries configured, against one",
            many,
            hit,
            1.05,
        )
    )
    rows.append(
        time_row(
            "token_file_hit",
            "cache-hit `get` whose key is read from a token file's JWT (`source = file`), "
            "against a hit keyed by the configuration",
            from_file,
            hit,
            1.1,
        )
    )
    if zipapp is not None:
        rows.append(
            time_row(
                "zipapp_cache_hit",
                "single-file zipapp, cache-hit `get` (after its one-time unpack)"
                ", against `python -c pass`",
                zipapp,
                plain,
                1.5,
            )
        )
    for peer in measured_peers:
        assert peer.command is not None
        rows.append(
            time_row(
                peer.key,
                f"cache-hit `get` against `{peer.label}` ({peer.asked})",
                hit,
                peer.command,
            )
        )
    return rows + unmeasured


def method_rows(bench: Bench, floor: Command, allocating: Command, sleeping: Command) -> list[Row]:
    """Programs that cost a known amount more must read that much more."""
    rows = []
    low, high = METHOD_TOLERANCE
    floor_mib = floor.median_peak_mib()
    allocating_mib = allocating.median_peak_mib()
    if floor_mib is not None and allocating_mib is not None:
        ratio = (allocating_mib - floor_mib) / ALLOCATED_MIB
        goal, met = within(ratio, low, high)
        rows.append(
            Row(
                "method_memory",
                f"method check: a program that allocates {ALLOCATED_MIB} MiB more "
                "(measured difference / 50 MiB)",
                ratio,
                goal,
                met,
                f"{allocating_mib:.1f} MiB",
                f"floor: {floor_mib:.1f} MiB",
            )
        )
        if not met:
            bench.failures.append(
                f"peak memory cannot tell programs apart: +{ALLOCATED_MIB} MiB read as "
                f"+{allocating_mib - floor_mib:.1f} MiB"
            )
    slept = sleeping.median_seconds() - floor.median_seconds()
    ratio = slept / (SLEPT_MS / 1000)
    goal, met = within(ratio, low, high)
    rows.append(
        Row(
            "method_time",
            f"method check: a program that sleeps {SLEPT_MS} ms more "
            f"(measured difference / {SLEPT_MS} ms)",
            ratio,
            goal,
            met,
            ms(sleeping.median_seconds()),
            f"floor: {ms(floor.median_seconds())}",
        )
    )
    return rows


def cold_figures(bench: Bench) -> list[Row]:
    if bench.args.no_cold:
        return []
    missing = demo_missing()
    if missing:
        return [Row("cold", "cold `get`", None, measured=missing)]
    with demo_helper(bench, "cold") as (servers, env, cache_dir):

        def empty_cache() -> None:
            shutil.rmtree(cache_dir, ignore_errors=True)

        baseline = Command(
            'python -c "import httpx, jwt"', [bench.python, "-c", "import httpx, jwt"], env
        )
        httpx_only = Command('python -c "import httpx"', [bench.python, "-c", "import httpx"], env)
        cold = Command(
            "cold get", [*bench.helper, "get"], env, HOST.encode(), empty_cache, answers_credentials
        )
        alternate(bench.runner, [baseline, httpx_only, cold], max(bench.args.rounds // 2, 3))
        bench.cold_seconds = cold.median_seconds()
        rows = [
            time_row(
                "cold",
                "cold `get` (discovery, password grant, exchange, over TLS), time, against "
                '`python -c "import httpx, jwt"`',
                cold,
                baseline,
                1.5,
            ),
            time_row(
                "cold_vs_httpx",
                'cold `get`, time, against `python -c "import httpx"` (a cold get imports no '
                "jwt: it reads the OIDC JWT with the standard library)",
                cold,
                httpx_only,
            ),
        ]
        memory = memory_row(
            "cold_memory", "cold `get`, peak memory, against the same", cold, baseline
        )
        if memory is not None:
            rows.append(memory)
        if bench.args.concurrent:
            empty_cache()
            begun = time.monotonic()
            rows.append(concurrent_row(bench, servers, env, bench.args.concurrent))
            print(f"concurrent gets: {time.monotonic() - begun:.1f} s", flush=True)
    return rows


def lowest_priority() -> None:
    """The issuer and Quay run in this process's threads, where in use they run elsewhere: the
    helpers must not starve them of this machine's CPU."""
    os.nice(19)


def concurrent_row(bench: Bench, servers: DemoServers, env: dict[str, str], count: int) -> Row:
    """``count`` cold gets at once: one token request, one exchange, every one answers."""
    issuer, quay = servers.issuer, servers.quay
    token_requests = issuer.token_requests
    exchanges = quay.counters_snapshot()["exchanges_attempted"]
    stdin = bench.workdir / "concurrent-stdin"
    stdin.write_bytes(HOST.encode())
    outputs = [bench.workdir / f"concurrent-{n}.out" for n in range(count)]
    started: dict[int, float] = {}
    answered: dict[int, tuple[float, int]] = {}
    processes: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
    for index, output in enumerate(outputs):
        errors = output.with_suffix(".err")
        with stdin.open("rb") as i, output.open("wb") as o, errors.open("wb") as e:
            started[index] = time.perf_counter()
            process = subprocess.Popen(
                [*bench.helper, "get"],
                stdin=i,
                stdout=o,
                stderr=e,
                env=env,
                preexec_fn=lowest_priority,
            )
        processes[process.pid] = (index, process)
    while len(answered) < count:
        pid, status = os.wait()
        if pid in processes:
            index, process = processes[pid]
            process.returncode = os.waitstatus_to_exitcode(status)
            answered[index] = (time.perf_counter(), process.returncode)
    slowest = max(answered[n][0] - started[n] for n in range(count))
    answers = {outputs[n].read_bytes() for n in range(count) if answered[n][1] == 0}
    ok = sum(
        1
        for n in range(count)
        if answered[n][1] == 0 and answers_credentials(outputs[n].read_bytes())
    )
    token_requests = issuer.token_requests - token_requests
    exchanges = quay.counters_snapshot()["exchanges_attempted"] - exchanges
    met = ok == count and token_requests == 1 and exchanges == 1 and len(answers) == 1
    if not met:
        said = sorted({o.with_suffix(".err").read_text(errors="replace").strip() for o in outputs})
        bench.notes.append(
            f"{count} concurrent cold gets: {ok} answered, {token_requests} token requests, "
            f"{exchanges} exchanges, {len(answers)} different answers; they said: "
            + " / ".join(said)[:1500]
        )
    single = bench.cold_seconds or float("nan")
    return Row(
        "concurrent_cold",
        f"{count} concurrent cold `get`s: slowest answer against one cold `get`",
        slowest / single,
        "1 token request, 1 exchange, all answer",
        met,
        f"{ok}/{count} answered, {token_requests} token request(s), {exchanges} exchange(s); "
        f"slowest {slowest * 1000:.0f} ms",
        f"one cold get: {ms(single)}",
    )


def refresh_ahead_figures(bench: Bench) -> list[Row]:
    """A `get` inside the refresh-ahead window (it answers from the cache and starts the
    detached refresh) against a plain cache hit, alternated."""
    now = time.time()
    # A one-hour token 590 s from expiry: past min(2 x 300, 2700) s before it, not yet at 300.
    window = robot_token_at(now - 3010, now + 590)
    env = helper_env(bench.workdir / "window", registry_toml(HOST))
    payload = {"ServerURL": HOST, "Username": ROBOT, "Secret": window}
    done = subprocess.run(
        [*bench.helper, "store"], input=json.dumps(payload).encode(), env=env, capture_output=True
    )
    if done.returncode != 0:
        raise MeasureError(f"store failed ({done.returncode}): {done.stdout!r}")
    hit_env = helper_env(bench.workdir / "window-hit", registry_toml(HOST))
    store_token(bench.helper, hit_env)

    def settle() -> None:
        time.sleep(0.2)  # untimed: the previous sample's background refresh ends first

    inside = Command(
        "get in the window",
        [*bench.helper, "get"],
        env,
        HOST.encode(),
        settle,
        answers_credentials,
    )
    hit = Command(
        "cache-hit get",
        [*bench.helper, "get"],
        hit_env,
        HOST.encode(),
        settle,
        answers_credentials,
    )
    alternate(bench.runner, [hit, inside], bench.args.rounds)
    started = (Path(env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"]) / "background.log").exists()
    if not started:
        bench.failures.append("no get inside the window started a background refresh")
    return [
        time_row(
            "refresh_ahead",
            "`get` inside the refresh-ahead window (answers from the cache, starts the "
            "background refresh), against a cache-hit `get`",
            inside,
            hit,
            1.15,
        )
    ]


def round_trip_figures(bench: Bench) -> list[Row]:
    """What one cold `get` costs on the wire once the discovery document is kept: connections
    and requests counted at the embedded issuer and Quay (the helper's own, by User-Agent)."""
    if bench.args.no_cold:
        return []
    missing = demo_missing()
    if missing:
        return [Row("round_trips", "cold `get`", None, measured=missing)]
    with demo_helper(bench, "wire") as (servers, env, cache_dir):
        agent = "docker-credential-quayfed/"

        def traffic() -> tuple[int, int]:
            counted = [s.traffic(agent) for s in (servers.issuer_server, servers.quay_server)]
            return sum(c for c, _ in counted), sum(r for _, r in counted)

        def cold_get() -> tuple[int, int]:
            before = traffic()
            done = subprocess.run(
                [*bench.helper, "get"], input=HOST.encode(), env=env, capture_output=True
            )
            if not answers_credentials(done.stdout):
                raise MeasureError(f"cold get failed: {done.stdout[:200]!r}")
            after = traffic()
            return after[0] - before[0], after[1] - before[1]

        first = cold_get()
        for pattern in ("*.token", "@jwt-*"):
            for path in cache_dir.glob(pattern):
                path.unlink()
        kept = cold_get()
    met = kept == (2, 2)
    return [
        Row(
            "round_trips",
            "cold `get` with the discovery document kept: TLS connections and requests, "
            "against the first ever (discovery fetched)",
            kept[1] / first[1],
            "2 connections, 2 requests",
            met,
            f"{kept[0]} connection(s), {kept[1]} request(s)",
            f"first ever: {first[0]} connection(s), {first[1]} request(s)",
        )
    ]


def provider_request() -> bytes:
    """A node-identity CredentialProviderRequest for a registry the node has not configured:
    answered without auth, from the configuration alone (start-up and nothing else)."""
    from docker_credential_quayfed import kubelet

    body = {"apiVersion": kubelet.API_VERSION, "kind": kubelet.REQUEST_KIND, "image": IMAGE}
    return json.dumps(body).encode()


def answers_without_auth(out: bytes) -> bool:
    try:
        response = json.loads(out)
    except ValueError:
        return False
    return response.get("kind") == "CredentialProviderResponse" and "auth" not in response


def size_of(path: str) -> int:
    """A file's size; for the self-contained provider's link, its whole folder's."""
    folder = Path(path + ".d")
    if os.path.islink(path) and folder.is_dir():
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return os.path.getsize(path)


def mib(path: str) -> str:
    return f"{size_of(path) / (1 << 20):.1f} MiB"


def frozen_figures(bench: Bench) -> list[Row]:
    """The self-contained provider (``--frozen``, packaging/build_frozen.py) against the
    zipapp installed under the provider's name, alternated: its size, and its start-up on a
    request answered from the configuration; the installed launcher is measured beside them."""
    if not bench.args.frozen:
        return []
    env = helper_env(bench.workdir / "provider", "")
    env["PATH"] = f"{Path(bench.python).parent}{os.pathsep}{env['PATH']}"
    request = provider_request()
    frozen_path = os.path.abspath(bench.args.frozen)
    frozen = Command("frozen provider", [frozen_path], env, request, answer_ok=answers_without_auth)
    commands = [frozen]
    zipapp = None
    if bench.args.zipapp:
        # Installed under the provider's name, the zipapp runs the provider.
        link = bench.workdir / "provider-bin" / PROVIDER
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(os.path.abspath(bench.args.zipapp))
        zipapp = Command(
            "zipapp as provider", [str(link)], env, request, answer_ok=answers_without_auth
        )
        bench.runner.run(zipapp)  # the first run unpacks it: not what is measured
        commands.append(zipapp)
    launcher_path = Path(bench.helper[0]).with_name(PROVIDER)
    launcher = None
    if launcher_path.exists():
        launcher = Command(
            "installed provider", [str(launcher_path)], env, request, answer_ok=answers_without_auth
        )
        commands.append(launcher)
    alternate(bench.runner, commands, bench.args.rounds)
    rows = []
    if zipapp is not None:
        zipapp_path = os.path.abspath(bench.args.zipapp)
        rows.append(
            Row(
                "frozen_size",
                f"self-contained `{PROVIDER}` (PyInstaller, needs no Python), folder size, "
                "against the zipapp (needs python3)",
                size_of(frozen_path) / os.path.getsize(zipapp_path),
                measured=f"frozen provider: {mib(frozen_path)}",
                baseline=f"zipapp: {mib(zipapp_path)}",
            )
        )
        rows.append(
            time_row(
                "frozen_start",
                f"self-contained `{PROVIDER}`, start-up (a node-identity request for an "
                "unconfigured registry), against the zipapp as the provider",
                frozen,
                zipapp,
            )
        )
        memory = memory_row(
            "frozen_memory",
            "self-contained provider, peak memory, against the zipapp",
            frozen,
            zipapp,
        )
        if memory is not None:
            rows.append(memory)
    if launcher is not None:
        rows.append(
            time_row(
                "frozen_vs_launcher",
                f"self-contained `{PROVIDER}`, the same request, against the installed "
                f"launcher (python3 -S)",
                frozen,
                launcher,
            )
        )
    return rows


FIGURES: list[Callable[[Bench], list[Row]]] = [
    cache_hit_figures,
    frozen_figures,
    refresh_ahead_figures,
    cold_figures,
    round_trip_figures,
]


# -- main ------------------------------------------------------------------------------------
def results(bench: Bench, rows: list[Row]) -> dict[str, object]:
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
            "rounds": bench.args.rounds,
            "memory": "ru_maxrss from a tiny C parent"
            if bench.runner.memory_measured
            else "not measured (no C compiler)",
        },
        "rows": [asdict(row) for row in rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="samples per command (%(default)s)")
    parser.add_argument("--helper", default="", help="helper executable (default: installed)")
    parser.add_argument("--zipapp", default="", help="the single-file zipapp to measure too")
    parser.add_argument(
        "--frozen", default="", help="the self-contained quay-credential-provider to measure too"
    )
    parser.add_argument("--concurrent", type=int, default=200, help="%(default)s; 0: skip")
    parser.add_argument("--no-cold", action="store_true", help="no cold or concurrent gets")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quayfed-bench-") as temp:
        workdir = Path(temp)
        helper = helper_argv(args.helper)
        bench = Bench(args, Runner(workdir), workdir, interpreter_of(helper[0]), helper)
        print(
            f"python {platform.python_version()} ({bench.python}), helper "
            f"{' '.join(bench.helper)}, {args.rounds} rounds"
        )
        rows: list[Row] = []
        try:
            for figure in FIGURES:
                begun = time.monotonic()
                rows += figure(bench)
                print(f"{figure.__name__}: {time.monotonic() - begun:.1f} s", flush=True)
        except MeasureError as exc:
            print(f"bench_get: {exc}", file=sys.stderr)
            return 1
        figures = results(bench, rows)
    print(report.render_text(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    for note in bench.notes:
        print(f"bench_get: {note}")
    for failure in bench.failures:
        print(f"bench_get: {failure}", file=sys.stderr)
    missed = [row.key for row in rows if row.met is False]
    if missed and args.strict:
        print(f"bench_get: goals not met: {', '.join(missed)}", file=sys.stderr)
    return 1 if bench.failures or (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
