"""Can this `get` be answered from disk? The one owner of that decision.

It owns the refresh rule (:meth:`RobotToken.refresh_due`, which doctor reports), the config
snapshot (written by :func:`remember` after each full-path answer, read by
:func:`cached_answer`) and the token file format. A setting that changes freshness changes
here and in the snapshot, nowhere else.

A `get` that finds a fresh token must cost little more than starting Python, so this module
imports only what the interpreter has already loaded (posix, sys, time) and reads two small
text files: the config snapshot (which registry keys map to which cache file, valid while
config.toml is unchanged) and the token file, through a directory descriptor opened without
following a symlink, and only when both the directory and the file are private to this user.
A token's own ``exp`` claim decides its life, whatever the file says. Anything unusual returns
None, and the full path (config.py, cache.py, broker.py) takes over.
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

import posix
import time

from docker_credential_quayfed import paths

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from collections.abc import Callable

    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.config import Config

TOKEN_MAGIC = "quayfed-token 1"
SNAPSHOT_MAGIC = "quayfed-config 2"
SNAPSHOT_NAME = "config.snapshot"
MAX_FILE = 1 << 16
#: the snapshot holds a line per registry: room for thousands
MAX_SNAPSHOT = 1 << 20
#: token files are named ``<escaped key>=<identity digest>.token``; "=" never occurs in an
#: escaped key, so a name belongs to exactly one key (erase matches exactly)
KEY_SEPARATOR = "="
_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_DIGEST_CHARS = frozenset("0123456789abcdef")
DIGEST_LENGTH = 16
#: stat's S_IFMT and S_IFREG (the stat module is not imported on the fast path)
_S_IFMT, _S_IFREG = 0o170000, 0o100000
_B64URL = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)}  # fmt: skip
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

    def refresh_at(self, refresh_margin: float) -> float:
        """When a refresh becomes due: min(refresh_margin, lifetime/2) before expiry."""
        return self.expires_at - min(refresh_margin, self.lifetime / 2)

    def refresh_due(self, refresh_margin: float, now: float) -> bool:
        """The refresh rule: True once the token reaches its refresh point."""
        return now >= self.refresh_at(refresh_margin)

    def ahead_at(self, refresh_margin: float) -> float:
        """When a background refresh may start: min(2 x refresh_margin, 3/4 of the lifetime)
        before expiry (never after the refresh point)."""
        return self.expires_at - min(2 * refresh_margin, self.lifetime * 0.75)

    def ahead_due(self, refresh_margin: float, now: float) -> bool:
        """Inside the refresh-ahead window: still served, but worth refreshing now."""
        return self.ahead_at(refresh_margin) <= now < self.refresh_at(refresh_margin)

    def valid(self, now: float, skew: float = DEFAULT_SKEW) -> bool:
        return self.expires_at - now > skew


# -- token files -------------------------------------------------------------------------
def encode_token(entry: RobotToken) -> str:
    return (
        f"{TOKEN_MAGIC}\nregistry {entry.registry}\nrobot {entry.robot}\n"
        f"issued_at {entry.issued_at!r}\nexpires_at {entry.expires_at!r}\ntoken {entry.token}\n"
    )


def decode_token(
    text: str, registry: str, exp_of: "Callable[[str], float | None] | None" = None
) -> "RobotToken | None":
    """The token file's entry; None when corrupt, for another key, or its times were edited.

    ``exp_of`` reads the JWT's ``exp`` (default: the light scanner below).
    """
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
    exp = (exp_of or jwt_exp)(token)
    if exp is None or expires_at > exp:
        return None  # the file may shorten the token's life (clock skew), never lengthen it
    return RobotToken(registry, robot, token, issued_at, expires_at)


def jwt_exp(token: str) -> "float | None":
    """The ``exp`` claim of a compact JWT, read without json or base64 (a cache hit loads
    neither); None when it cannot be read unambiguously (then the full path decides)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    bits = count = 0
    payload = []
    for char in parts[1]:
        value = _B64URL.get(char)
        if value is None:
            return None
        bits = (bits << 6 | value) & 0xFFFFFF
        count += 6
        if count >= 8:
            count -= 8
            payload.append(chr(bits >> count & 0xFF))
    text = "".join(payload)
    found = text.split('"exp"')
    if len(found) != 2:
        return None  # absent, or more than one (nested): leave it to the JSON reader
    rest = found[1].lstrip(" \t\r\n")
    if not rest.startswith(":"):
        return None
    rest = rest[1:].lstrip(" \t\r\n")
    end = 0
    while end < len(rest) and rest[end] in "0123456789.eE+-":
        end += 1
    try:
        return float(rest[:end])
    except ValueError:
        return None


def key_file_prefix(registry: str) -> str:
    """The start of every file name of ``registry`` (an injective escape of the key)."""
    escaped = "".join(c if c in _NAME_SAFE else f"%{ord(c):02x}" for c in registry)
    return escaped + KEY_SEPARATOR


def token_file_name(registry: str, digest: str) -> str:
    return f"{key_file_prefix(registry)}{digest}.token"


def is_digest(text: str) -> bool:
    return len(text) == DIGEST_LENGTH and set(text) <= _DIGEST_CHARS


# -- the config snapshot -----------------------------------------------------------------
class SnapshotEntry:
    __slots__ = ("ahead", "digest", "refresh_margin", "robot")

    def __init__(self, digest: str, refresh_margin: float, robot: str, ahead: bool) -> None:
        self.digest = digest
        self.refresh_margin = refresh_margin
        self.robot = robot
        self.ahead = ahead


def fingerprint(info: posix.stat_result) -> str:
    return f"{info.st_dev} {info.st_ino} {info.st_size} {info.st_mtime_ns}"


def encode_snapshot(config_file: str, stamp: str, entries: dict[str, SnapshotEntry]) -> str:
    lines = [SNAPSHOT_MAGIC, config_file, stamp]
    for key, entry in sorted(entries.items()):
        ahead = "ahead" if entry.ahead else "-"
        lines.append(f"{key} {entry.digest} {entry.refresh_margin!r} {entry.robot} {ahead}")
    return "\n".join(lines) + "\n"


def lookup_snapshot(text: str, config_file: str, stamp: str, key: str) -> "SnapshotEntry | None":
    header = f"{SNAPSHOT_MAGIC}\n{config_file}\n{stamp}\n"
    if not text.startswith(header):
        return None
    # One search in C for the key's line, however many registries (no list of lines).
    start = text.find(f"\n{key} ", len(header) - 1)
    if start < 0:
        return None
    end = text.find("\n", start + 1)
    parts = text[start + 1 : end if end >= 0 else len(text)].split(" ")
    if len(parts) != 5 or parts[4] not in ("ahead", "-"):
        return None
    if not is_digest(parts[1]):
        return None  # a file name is built from it: nothing but a digest will do
    try:
        return SnapshotEntry(parts[1], float(parts[2]), parts[3], parts[4] == "ahead")
    except ValueError:
        return None


def remember(settings: "Config", cache: "TokenCache") -> None:
    """Record which token file answers each registry key while config.toml keeps its stamp."""
    from docker_credential_quayfed.cache import identity_digest
    from docker_credential_quayfed.sources import BY_NAME

    entries = {
        key: SnapshotEntry(
            identity_digest(r.identity), float(r.refresh_margin), r.robot, r.refresh_ahead
        )
        for key, r in settings.registries.items()
        if not BY_NAME[r.source].ambient  # its identity is the environment's: full path
    }
    text = encode_snapshot(str(settings.path), settings.stamp, entries)
    dir_fd = open_private_dir(str(cache.directory))
    current = None
    if dir_fd is not None:
        try:
            current = read_private(SNAPSHOT_NAME, dir_fd, MAX_SNAPSHOT)
        finally:
            posix.close(dir_fd)
    if current != text:
        cache.write_private(SNAPSHOT_NAME, text)


# -- reading private files -----------------------------------------------------------------
def open_private_dir(directory: str) -> "int | None":
    """A descriptor of ``directory`` when it is a real directory of ours, closed to others."""
    try:
        fd = posix.open(
            directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC
        )
    except OSError:
        return None
    info = posix.fstat(fd)
    if info.st_uid != posix.getuid() or info.st_mode & 0o077:
        posix.close(fd)
        return None
    return fd


def read_private(path: str, dir_fd: "int | None" = None, limit: int = MAX_FILE) -> "str | None":
    """A regular 0600-style file of ours, opened without following symlinks and without
    blocking (a FIFO); None for anything else."""
    try:
        fd = posix.open(
            path,
            posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK,
            dir_fd=dir_fd,
        )
    except OSError:
        return None
    try:
        info = posix.fstat(fd)
        if (info.st_mode & _S_IFMT) != _S_IFREG or info.st_uid != posix.getuid():
            return None
        if info.st_mode & 0o077:
            return None  # others could read it: not trusted, the full path replaces it
        data = posix.read(fd, min(limit, MAX_FILE))
        if len(data) == MAX_FILE < limit:  # a large snapshot: the rest, a chunk at a time
            chunks = [data]
            while sum(map(len, chunks)) < limit:
                chunk = posix.read(fd, min(MAX_FILE, limit - sum(map(len, chunks))))
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
    except OSError:
        return None
    finally:
        posix.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return None


# -- the fast path -------------------------------------------------------------------------
def cached_answer(key: str) -> "tuple[str, str, bool] | None":
    """(robot, token, refresh ahead?) for ``key`` when a fresh one is on disk and config.toml
    is unchanged; the flag says the token is inside its refresh-ahead window."""
    config_file = paths.config_file()
    try:
        stamp = fingerprint(posix.stat(config_file))
    except OSError:
        return None
    dir_fd = open_private_dir(paths.cache_dir())
    if dir_fd is None:
        return None
    try:
        snapshot = read_private(SNAPSHOT_NAME, dir_fd, MAX_SNAPSHOT)
        if snapshot is None:
            return None
        entry = lookup_snapshot(snapshot, config_file, stamp, key)
        if entry is None:
            return None
        text = read_private(token_file_name(key, entry.digest), dir_fd)
    finally:
        posix.close(dir_fd)
    if text is None:
        return None
    token = decode_token(text, key)
    if token is None or token.robot != entry.robot:
        return None
    now = time.time()
    if token.refresh_due(entry.refresh_margin, now):
        return None
    return token.robot, token.token, entry.ahead and token.ahead_due(entry.refresh_margin, now)
