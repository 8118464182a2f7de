"""Figures for `get`: wall time and peak memory against baselines measured in the same run.

Each round runs the baseline and the measured command back to back (alternating which goes
first), so machine noise hits both alike. Printed:

- cache-hit `get` vs `python -c pass`            (goal: time <= 1.5x, memory <= 1.3x)
- cold `get` (mint + exchange) vs `python -c "import httpx, jwt"`   (goal: time <= 1.5x)

The cold case runs against the embedded issuer and Quay emulator on loopback with TLS, so it
needs the `demo` extra (cryptography, trustme).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "bench.quay.test"


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_kib: int


def run_once(argv: Sequence[str], stdin: bytes, env: dict[str, str]) -> Sample:
    """Wall time and the child's own peak RSS (from wait4, not the cumulative RUSAGE_CHILDREN)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    process.stdin.write(stdin)
    process.stdin.close()
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({process.returncode}): {out!r} {err!r}")
    return Sample(elapsed, int(usage.ru_maxrss))


def helper_argv(explicit: str) -> list[str]:
    if explicit:
        return [explicit]
    beside = Path(sys.executable).with_name("docker-credential-quayfed")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-credential-quayfed")
    if not found:
        raise SystemExit("docker-credential-quayfed is not installed (pip install .)")
    return [found]


def fake_robot_token(lifetime: int) -> str:
    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": "quay", "sub": "org+bench", "iat": now, "exp": now + lifetime}
    return f"{segment({'alg': 'RS256', 'kid': 'k'})}.{segment(claims)}.c2ln"


def compare(
    label: str,
    baseline: tuple[Sequence[str], bytes, dict[str, str]],
    measured: tuple[Sequence[str], bytes, dict[str, str]],
    rounds: int,
    before_measured: object = None,
) -> tuple[list[Sample], list[Sample]]:
    base_samples: list[Sample] = []
    measured_samples: list[Sample] = []
    for round_number in range(rounds + 1):
        order = [0, 1] if round_number % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                sample = run_once(*baseline)
                if round_number:
                    base_samples.append(sample)
            else:
                if callable(before_measured):
                    before_measured()
                sample = run_once(*measured)
                if round_number:  # round 0 warms the page cache for both
                    measured_samples.append(sample)
    return base_samples, measured_samples


def report(
    label: str, base: list[Sample], measured: list[Sample], time_goal: float, mem_goal: float
) -> dict[str, float]:
    base_time = statistics.median(s.seconds for s in base)
    measured_time = statistics.median(s.seconds for s in measured)
    base_mem = statistics.median(s.peak_kib for s in base)
    measured_mem = statistics.median(s.peak_kib for s in measured)
    time_ratio = measured_time / base_time
    mem_ratio = measured_mem / base_mem
    print(
        f"{label}: median {measured_time * 1000:.1f} ms vs baseline {base_time * 1000:.1f} ms "
        f"-> time ratio {time_ratio:.2f} (goal <= {time_goal}); peak RSS {measured_mem / 1024:.1f}"
        f" MiB vs {base_mem / 1024:.1f} MiB -> memory ratio {mem_ratio:.2f}"
        + (f" (goal <= {mem_goal})" if mem_goal else "")
    )
    return {"time_ratio": time_ratio, "memory_ratio": mem_ratio, "ms": measured_time * 1000}


def write_config(directory: Path, body: str) -> dict[str, str]:
    config = directory / "config.toml"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(body)
    env = dict(os.environ)
    env.pop("DOCKER_CREDENTIAL_QUAYFED_DEBUG", None)
    env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"] = str(config)
    env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"] = str(directory / "cache")
    return env


def cache_hit(helper: list[str], rounds: int, workdir: Path) -> dict[str, float]:
    env = write_config(
        workdir,
        f"""[registries."{HOST}"]
robot = "org+bench"
issuer = "https://127.0.0.1:1/realms/bench"
source = "env"
token_env = "BENCH_UNUSED"
quay_url = "https://127.0.0.1:1"
""",
    )
    payload = json.dumps(
        {"ServerURL": HOST, "Username": "org+bench", "Secret": fake_robot_token(3600)}
    ).encode()
    run_once([*helper, "store"], payload, env)
    base, measured = compare(
        "cache hit",
        ([sys.executable, "-c", "pass"], b"", env),
        ([*helper, "get"], HOST.encode(), env),
        rounds,
    )
    return report("cache-hit get", base, measured, 1.5, 1.3)


def cold(helper: list[str], rounds: int, workdir: Path) -> dict[str, float] | None:
    try:
        from docker_credential_quayfed.commands.demo import DemoServers
    except ImportError as exc:
        print(f"cold get: skipped ({exc}); install the demo extra to measure it")
        return None
    with DemoServers(workdir / "servers") as servers:
        env = write_config(workdir, servers.config_toml(HOST))
        env.update(servers.environment())
        cache_dir = Path(env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"])

        def empty_cache() -> None:
            shutil.rmtree(cache_dir, ignore_errors=True)

        base, measured = compare(
            "cold",
            ([sys.executable, "-c", "import httpx, jwt"], b"", env),
            ([*helper, "get"], HOST.encode(), env),
            rounds,
            before_measured=empty_cache,
        )
    return report("cold get (mint + exchange)", base, measured, 1.5, 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--helper", default="", help="helper executable (default: installed)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--no-cold", action="store_true", help="measure the cache hit only")
    args = parser.parse_args(argv)
    helper = helper_argv(args.helper)
    print(f"python {sys.version.split()[0]}, helper {' '.join(helper)}, {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="quayfed-bench-") as temp:
        figures = {"cache_hit": cache_hit(helper, args.rounds, Path(temp) / "hit")}
        cold_figures = (
            None if args.no_cold else cold(helper, max(args.rounds // 2, 3), Path(temp) / "cold")
        )
        if cold_figures is not None:
            figures["cold"] = cold_figures
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
