"""Reading a password or client secret from an env var, a file or a command.

The secret itself never goes into argv, a log line or an error message.
"""

from __future__ import annotations

import os
import stat

from docker_credential_quayfed import log
from docker_credential_quayfed.errors import SecretError

COMMAND_TIMEOUT = 15.0


def resolve(what: str, *, env: str, file: str, command: str, where: str) -> str:
    """The secret named by the first of env, file, command that is set."""
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            raise SecretError(
                f"the {what} variable {env} is empty or not set ({where}_env)",
                f"export {env} before running the client",
            )
        return value.strip()
    if file:
        return read_secret_file(what, file, where=f"{where}_file")
    if command:
        return _run(what, command, where=f"{where}_command")
    raise SecretError(
        f"no {what} is configured", f"set {where}_env, {where}_file or {where}_command"
    )


def read_secret_file(what: str, file: str, *, where: str, check_mode: bool = True) -> str:
    path = os.path.expanduser(file)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SecretError(
            f"cannot read the {what} file {path} ({where}): {exc.strerror}",
            "check the path and its permissions",
        ) from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        raw = handle.read(1 << 20)
    if check_mode and mode & 0o077:
        log.warn(f"{what} file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"the {what} file {path} is not UTF-8 text", "rewrite it") from None
    if not value:
        raise SecretError(f"the {what} file {path} is empty ({where})", "put the secret in it")
    return value


def _run(what: str, command: str, *, where: str) -> str:
    import shlex
    import subprocess

    try:
        argv = shlex.split(command)
    except ValueError:
        raise SecretError(f"{where} is not a valid command line", "fix its quoting") from None
    if not argv:
        raise SecretError(f"{where} is empty", "give a command that prints the secret")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise SecretError(f"{where}: {argv[0]} not found", "check the command and PATH") from None
    except subprocess.TimeoutExpired:
        raise SecretError(
            f"{where} ({argv[0]}) did not finish in {COMMAND_TIMEOUT:.0f}s", "check the command"
        ) from None
    except OSError as exc:
        raise SecretError(
            f"{where} ({argv[0]}) could not run: {exc.strerror}", "check it"
        ) from None
    if done.returncode != 0:
        raise SecretError(
            f"{where} ({argv[0]}) exited with status {done.returncode}",
            "run it by hand to see why",
        )
    value = done.stdout.decode("utf-8", "replace").strip()
    if not value:
        raise SecretError(f"{where} ({argv[0]}) printed nothing", "make it print the secret")
    return value
