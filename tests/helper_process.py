"""Run the installed helper executable the way clients do: action in argv, input on stdin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import leaks

EXECUTABLE = "docker-credential-quayfed"


def helper_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    beside = Path(sys.executable).with_name(EXECUTABLE)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(EXECUTABLE)
    return [found] if found else [sys.executable, "-m", "docker_credential_quayfed"]


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_helper(
    action: str,
    stdin: str | bytes = "",
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    extra_args: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> Result:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    merged = {**os.environ, **(env or {})}
    leaks.helper_input(action, data, env)
    done = subprocess.run(
        [*helper_command(), action, *extra_args],
        input=data,
        capture_output=True,
        env=merged,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
    leaks.helper_output(action, result.returncode, result.stdout, result.stderr, "helper")
    return result
