"""Reading a password or client secret from an env var, a file or a command.

The secret itself never goes into argv, a log line or an error message.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from docker_credential_quayfed import files, log, paths

if TYPE_CHECKING:
    import subprocess
from docker_credential_quayfed.errors import SecretError

COMMAND_TIMEOUT = 15.0
#: a secret, a token or a command's output larger than this is not what we asked for
MAX_SECRET = 1 << 16
#: after a command exits, how long its output may still trickle in (a background child may
#: hold the pipe open forever)
_DRAIN_AFTER_EXIT = 0.2


def resolve(
    what: str, *, env: str, file: str, command: str, where: str, timeout: float = COMMAND_TIMEOUT
) -> str:
    """The secret named by the first of env, file, command that is set.

    ``timeout`` bounds a command (pass what is left of the caller's deadline).
    """
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            raise SecretError(
                f"the {what} variable {env} is empty or not set ({where}_env)",
                f"export {env} before running the client",
            )
        return _known(value.strip())
    if file:
        return read_secret_file(what, file, where=f"{where}_file")
    if command:
        return _known(run_command(what, command, where=f"{where}_command", timeout=timeout))
    raise SecretError(
        f"no {what} is configured", f"set {where}_env, {where}_file or {where}_command"
    )


def _known(value: str) -> str:
    log.secret(value)
    return value


def read_secret_file(what: str, file: str, *, where: str, check_mode: bool = True) -> str:
    path = paths.resolve_path(file)
    try:
        raw = files.read_regular(path, MAX_SECRET)
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except files.FileRefused as exc:
        raise SecretError(
            f"the {what} file {path} ({where}) {exc}", "point it at a regular file"
        ) from None
    except OSError as exc:
        raise SecretError(
            f"cannot read the {what} file {path} ({where}): {exc.strerror}",
            "check the path and its permissions",
        ) from None
    if check_mode and mode & 0o077:
        log.warn(f"{what} file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"the {what} file {path} is not UTF-8 text", "rewrite it") from None
    if not value:
        raise SecretError(f"the {what} file {path} is empty ({where})", "put the secret in it")
    return _known(value)


def run_command(what: str, command: str, *, where: str, timeout: float) -> str:
    """Run ``command`` (split like a shell would, no shell, no stdin) and return its stdout.

    Bounded in time (``timeout``) and output (MAX_SECRET); its stderr is never shown, since a
    failing secret command may print the secret there.
    """
    import shlex
    import subprocess

    try:
        argv = shlex.split(command)
    except ValueError:
        raise SecretError(f"{where} is not a valid command line", "fix its quoting") from None
    if not argv:
        raise SecretError(f"{where} is empty", f"give a command that prints the {what}")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SecretError(f"{where}: {argv[0]} not found", "check the command and PATH") from None
    except OSError as exc:
        raise SecretError(
            f"{where} ({argv[0]}) could not run: {exc.strerror}", "check it"
        ) from None
    try:
        output = _read_output(process, timeout, what=f"{where} ({argv[0]})")
        returncode = process.wait(timeout=max(0.01, _DRAIN_AFTER_EXIT))
    except subprocess.TimeoutExpired:
        raise SecretError(
            f"{where} ({argv[0]}) did not finish in {timeout:.0f}s", "check the command"
        ) from None
    finally:
        _stop(process)
    if returncode != 0:
        raise SecretError(
            f"{where} ({argv[0]}) exited with status {returncode}",
            "run it by hand to see why",
        )
    value = output.decode("utf-8", "replace").strip()
    if not value:
        raise SecretError(f"{where} ({argv[0]}) printed nothing", f"make it print the {what}")
    return value


def _read_output(process: subprocess.Popen[bytes], timeout: float, *, what: str) -> bytes:
    import selectors
    import subprocess
    import time

    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    end = time.monotonic() + timeout
    exited_at: float | None = None
    output = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _DRAIN_AFTER_EXIT:
                break  # it exited; whatever still holds the pipe is not its answer
            if now >= end:
                raise subprocess.TimeoutExpired(what, timeout)
            if not selector.select(min(end - now, 0.05)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            output += chunk
            if len(output) > MAX_SECRET:
                raise SecretError(
                    f"{what} printed more than {MAX_SECRET >> 10} KiB",
                    "make it print only the secret",
                )
    if exited_at is None:
        process.wait(timeout=max(0.01, end - time.monotonic()))
    return bytes(output)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Close our end of the pipe; kill the command (and its group) if it is still running."""
    import contextlib
    import signal

    if process.stdout is not None:
        process.stdout.close()
    if process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
