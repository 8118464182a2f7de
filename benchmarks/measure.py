"""Wall time and peak memory of commands, run alternately from a tiny parent.

Each sample is one run of ``measure.c`` (compiled on first use): it forks, execs the command
and reports the child's wall time and its ``ru_maxrss``. Run from this Python process instead,
the peak would start at this process's own size, because Linux keeps the pre-exec peak of a
forked child. Without a C compiler, times come from here and memory is not measured.

:func:`alternate` runs a group of commands round-robin, rotating the order every round, so
machine noise hits every command of a group alike; round 0 warms the page cache and is dropped.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("measure.c")
MIB = 1024.0


class MeasureError(Exception):
    """A measured command failed or answered wrongly: the figures would mean nothing."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_kib: int | None  # None: not measured (no C compiler)
    cpu_seconds: float | None = None  # user + system


@dataclass
class Command:
    """One measured command: argv (argv[0] an absolute path), its stdin and environment."""

    label: str
    argv: Sequence[str]
    env: Mapping[str, str]
    stdin: bytes = b""
    #: run before each sample, untimed (e.g. empty the cache before a cold get)
    before: Callable[[], None] | None = None
    #: says whether stdout is the right answer; a wrong answer stops the benchmark
    answer_ok: Callable[[bytes], bool] | None = None
    samples: list[Sample] = field(default_factory=list)

    def median_seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    def median_cpu_seconds(self) -> float | None:
        cpu = [s.cpu_seconds for s in self.samples if s.cpu_seconds is not None]
        return statistics.median(cpu) if cpu else None

    def median_peak_mib(self) -> float | None:
        peaks = [s.peak_kib for s in self.samples if s.peak_kib is not None]
        return statistics.median(peaks) / MIB if peaks else None


class Runner:
    """Runs commands one at a time through ``measure`` (or, without a compiler, from here)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.measure = compile_measure(workdir)

    @property
    def memory_measured(self) -> bool:
        return self.measure is not None

    def run(self, command: Command) -> Sample:
        stdin = self.workdir / "stdin"
        stdout = self.workdir / "stdout"
        stderr = self.workdir / "stderr"
        stdin.write_bytes(command.stdin)
        if command.before is not None:
            command.before()
        if self.measure is None:
            sample, status = self._run_here(command, stdin, stdout, stderr)
        else:
            argv = [self.measure, str(stdin), str(stdout), str(stderr), *command.argv]
            done = subprocess.run(
                argv, env=dict(command.env), capture_output=True, text=True, check=False
            )
            fields = done.stdout.split()
            if done.returncode != 0 or len(fields) != 4:
                raise MeasureError(f"measure failed for {command.label}: {done.stderr.strip()}")
            sample = Sample(int(fields[0]) / 1e9, int(fields[1]), int(fields[3]) / 1e6)
            status = os.waitstatus_to_exitcode(int(fields[2]))
        answer = stdout.read_bytes()
        if status != 0 or (command.answer_ok is not None and not command.answer_ok(answer)):
            error = stderr.read_bytes().decode(errors="replace").strip()[-500:]
            raise MeasureError(
                # stdout may hold a token: its size only
                f"{command.label} ({' '.join(command.argv)}) exited {status} with "
                f"{len(answer)} bytes on stdout that are not the expected answer; stderr {error!r}"
            )
        return sample

    @staticmethod
    def _run_here(command: Command, stdin: Path, stdout: Path, stderr: Path) -> tuple[Sample, int]:
        with stdin.open("rb") as i, stdout.open("wb") as o, stderr.open("wb") as e:
            started = time.perf_counter()
            status = subprocess.call(
                list(command.argv), stdin=i, stdout=o, stderr=e, env=dict(command.env)
            )
            return Sample(time.perf_counter() - started, None), status


def compile_measure(workdir: Path) -> str | None:
    """``measure.c`` built with the system's C compiler, or None when there is none."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    binary = workdir / "measure"
    done = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MeasureError(f"{compiler} could not build {SOURCE}: {done.stderr.strip()}")
    return str(binary)


def alternate(runner: Runner, commands: Sequence[Command], rounds: int) -> None:
    """``rounds`` samples of each command, round-robin in a rotating order, after a warm-up."""
    for round_number in range(rounds + 1):
        shift = round_number % len(commands)
        for command in [*commands[shift:], *commands[:shift]]:
            sample = runner.run(command)
            if round_number:
                command.samples.append(sample)
