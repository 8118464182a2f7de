"""The cache-hit path and the on-disk formats it reads.

A `get` that finds a fresh token must cost little more than starting Python, so this module
imports only what the interpreter has already loaded (os, sys, time) and reads two small
text files: the config snapshot (which registry keys map to which cache file, valid while
config.toml is unchanged) and the token file. Anything unusual returns None, and the full
path (config.py, cache.py, broker.py) takes over.
"""

from __future__ import annotations

import os
import stat
import time

from docker_credential_quayfed import paths

TOKEN_MAGIC = "quayfed-token 1"
SNAPSHOT_MAGIC = "quayfed-config 1"
SNAPSHOT_NAME = "config.snapshot"
MAX_FILE = 1 << 16
# A robot token's claims are read again when it is served, so a token can never outlive exp.
DEFAULT_SKEW = 5.0


class RobotToken:
    """A Quay robot token with the times read from its own claims."""

    __slots__ = ("expires_at", "issued_at", "registry", "robot", "token")

    def __init__(
        self, registry: str, robot: str, token: str, issued_at: float, expires_at: float
    ) -> None:
        self.registry = registry
        self.robot = robot
        self.token = token
        self.issued_at = issued_at
        self.expires_at = expires_at

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RobotToken) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"RobotToken({self.registry!r}, {self.robot!r}, exp={self.expires_at:.0f})"

    def _fields(self) -> tuple[str, str, str, float, float]:
        return (self.registry, self.robot, self.token, self.issued_at, self.expires_at)

    @property
    def lifetime(self) -> float:
        return max(self.expires_at - self.issued_at, 0.0)

    def refresh_due(self, refresh_margin: float, now: float) -> bool:
        """True once no more than min(refresh_margin, lifetime/2) of the token remains."""
        return self.expires_at - now <= min(refresh_margin, self.lifetime / 2)

    def valid(self, now: float, skew: float = DEFAULT_SKEW) -> bool:
        return self.expires_at - now > skew


# -- token files -------------------------------------------------------------------------
def encode_token(entry: RobotToken) -> str:
    return (
        f"{TOKEN_MAGIC}\nregistry {entry.registry}\nrobot {entry.robot}\n"
        f"issued_at {entry.issued_at!r}\nexpires_at {entry.expires_at!r}\ntoken {entry.token}\n"
    )


def decode_token(text: str, registry: str) -> RobotToken | None:
    lines = text.split("\n")
    if len(lines) < 6 or lines[0] != TOKEN_MAGIC:
        return None
    fields = {}
    for line in lines[1:6]:
        name, _, value = line.partition(" ")
        fields[name] = value
    try:
        issued_at = float(fields["issued_at"])
        expires_at = float(fields["expires_at"])
        robot, token = fields["robot"], fields["token"]
    except (KeyError, ValueError):
        return None
    if fields.get("registry") != registry or not robot or not token or " " in token:
        return None
    return RobotToken(registry, robot, token, issued_at, expires_at)


def token_file_name(registry: str, digest: str) -> str:
    safe = "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "_" for c in registry)
    return f"{safe}-{digest}.token"


# -- the config snapshot -----------------------------------------------------------------
class SnapshotEntry:
    __slots__ = ("digest", "refresh_margin", "robot")

    def __init__(self, digest: str, refresh_margin: float, robot: str) -> None:
        self.digest = digest
        self.refresh_margin = refresh_margin
        self.robot = robot


def fingerprint(info: os.stat_result) -> str:
    return f"{info.st_dev} {info.st_ino} {info.st_size} {info.st_mtime_ns}"


def encode_snapshot(config_file: str, stamp: str, entries: dict[str, SnapshotEntry]) -> str:
    lines = [SNAPSHOT_MAGIC, config_file, stamp]
    for key, entry in sorted(entries.items()):
        lines.append(f"{key} {entry.digest} {entry.refresh_margin!r} {entry.robot}")
    return "\n".join(lines) + "\n"


def lookup_snapshot(text: str, config_file: str, stamp: str, key: str) -> SnapshotEntry | None:
    lines = text.split("\n")
    if len(lines) < 3 or lines[0] != SNAPSHOT_MAGIC or lines[1] != config_file:
        return None
    if lines[2] != stamp:
        return None
    prefix = key + " "
    for line in lines[3:]:
        if line.startswith(prefix):
            parts = line.split(" ")
            if len(parts) != 4:
                return None
            try:
                return SnapshotEntry(parts[1], float(parts[2]), parts[3])
            except ValueError:
                return None
    return None


# -- reading private files -----------------------------------------------------------------
def read_private(path: str) -> str | None:
    """A regular file of ours, opened without following symlinks; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        data = os.read(fd, MAX_FILE)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return None


# -- the fast path -------------------------------------------------------------------------
def cached_answer(key: str) -> tuple[str, str] | None:
    """(robot, token) for ``key`` when a fresh one is on disk and config.toml is unchanged."""
    config_file = paths.config_file()
    try:
        stamp = fingerprint(os.stat(config_file))
    except OSError:
        return None
    directory = paths.cache_dir()
    snapshot = read_private(os.path.join(directory, SNAPSHOT_NAME))
    if snapshot is None:
        return None
    entry = lookup_snapshot(snapshot, config_file, stamp, key)
    if entry is None:
        return None
    text = read_private(os.path.join(directory, token_file_name(key, entry.digest)))
    if text is None:
        return None
    token = decode_token(text, key)
    if token is None or token.robot != entry.robot:
        return None
    if token.refresh_due(entry.refresh_margin, time.time()):
        return None
    return token.robot, token.token
