"""Robot tokens on disk: one 0600 file per registry key and identity in a 0700 directory.

Standard library only (a cache hit must not import httpx or jwt). Writes go to a temp file
that is fsynced and renamed; reads never follow a symlink (neither the directory nor the
file) and trust only private files whose expiry is the token's own; a lock file serialises
refreshes; a ``.failed`` file remembers a recent network failure so that later pulls fail fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from docker_credential_quayfed import claims, fastpath, files, log
from docker_credential_quayfed.errors import CacheError

__all__ = [
    "RobotToken",
    "TokenCache",
    "decode_token",
    "encode_token",
    "robot_token_from_jwt",
    "write_snapshot",
]

if TYPE_CHECKING:
    from docker_credential_quayfed.identity import CredentialKey

FAILURE_MAGIC = "quayfed-failure 1"
#: the largest robot token kept: its token file (with the header lines) must fit what a read
#: takes in, or it would be written on every get and never served
MAX_TOKEN = fastpath.MAX_FILE - 1024
#: an iat this far in our future means the issuer's clock is ahead of ours
CLOCK_TOLERANCE = 2.0


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
        """When a refresh becomes due: fastpath's rule, min(refresh_margin, lifetime/2)
        before expiry."""
        return fastpath.refresh_at(self.issued_at, self.expires_at, refresh_margin)

    def refresh_due(self, refresh_margin: float, now: float) -> bool:
        """The refresh rule: True once the token reaches its refresh point."""
        return now >= self.refresh_at(refresh_margin)

    def ahead_at(self, refresh_margin: float) -> float:
        """When a background refresh may start: min(2 x refresh_margin, 3/4 of the lifetime)
        before expiry (never after the refresh point)."""
        return fastpath.ahead_at(self.issued_at, self.expires_at, refresh_margin)

    def ahead_due(self, refresh_margin: float, now: float) -> bool:
        """Inside the refresh-ahead window: still served, but worth refreshing now."""
        return self.ahead_at(refresh_margin) <= now < self.refresh_at(refresh_margin)

    def valid(self, now: float, skew: float = fastpath.DEFAULT_SKEW) -> bool:
        return self.expires_at - now > skew


# -- token files ----------------------------------------------------------------------
def encode_token(entry: RobotToken) -> str:
    return (
        f"{fastpath.TOKEN_MAGIC}\nregistry {entry.registry}\nrobot {entry.robot}\n"
        f"issued_at {entry.issued_at!r}\nexpires_at {entry.expires_at!r}\ntoken {entry.token}\n"
    )


def decode_token(
    text: str, registry: str, exp_of: Callable[[str], float | None] | None = None
) -> RobotToken | None:
    """The token file's entry; None when corrupt, for another key, or its times were edited
    (``exp_of`` reads the JWT's ``exp``; default: fastpath's light scanner)."""
    found = fastpath.read_token_file(text, registry, exp_of)
    return None if found is None else RobotToken(registry, *found)


# -- the config snapshot ------------------------------------------------------------
class SnapshotEntry:
    """A registry's line in the snapshot: its key digest, or how to compute it from the JWT
    in a token file (``jwt_file``: Quay URL, audience asked of the issuer, token file)."""

    __slots__ = ("ahead", "digest", "jwt_file", "refresh_margin", "robot")

    def __init__(
        self,
        digest: str,
        refresh_margin: float,
        robot: str,
        ahead: bool,
        jwt_file: tuple[str, str, str] | None = None,
    ) -> None:
        self.digest = fastpath.FROM_TOKEN_FILE if jwt_file is not None else digest
        self.refresh_margin = refresh_margin
        self.robot = robot
        self.ahead = ahead
        self.jwt_file = jwt_file


def encode_snapshot(config_file: str, stamp: str, entries: dict[str, SnapshotEntry]) -> str:
    lines = [fastpath.SNAPSHOT_MAGIC, config_file, stamp]
    for key, entry in sorted(entries.items()):
        ahead = "ahead" if entry.ahead else "-"
        line = f"{key} {entry.digest} {entry.refresh_margin!r} {entry.robot} {ahead}"
        if entry.jwt_file is not None:
            line += " " + " ".join(fastpath.escape_field(field) for field in entry.jwt_file)
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_snapshot(
    cache: TokenCache, config_file: str, stamp: str, entries: dict[str, SnapshotEntry]
) -> None:
    """Record which token file answers each registry key while config.toml keeps its stamp
    (written only when it changed)."""
    text = encode_snapshot(config_file, stamp, entries)
    dir_fd = fastpath.open_private_dir(str(cache.directory))
    current = None
    if dir_fd is not None:
        try:
            current = fastpath.read_private(fastpath.SNAPSHOT_NAME, dir_fd, fastpath.MAX_SNAPSHOT)
        finally:
            os.close(dir_fd)
    if current != text:
        cache.write_private(fastpath.SNAPSHOT_NAME, text)


def forget_snapshot(cache: TokenCache) -> None:
    """Drop the snapshot: the next get takes the full path and computes every key again."""
    cache.remove(fastpath.SNAPSHOT_NAME)


#: how long an erase waits for a mint under way (a get's default timeout, 25 s, and some)
ERASE_WAIT = 30.0


class LockTimeout(CacheError):
    """Another process held the refresh lock for longer than we may wait."""


def robot_token_from_jwt(registry: str, robot: str, token: str, now: float) -> RobotToken:
    """The token with its times, its life kept within what Quay issues; raises
    claims.NotAJWT, or ValueError when it has no usable ``exp`` or is too large to keep."""
    if len(token) > MAX_TOKEN:
        raise ValueError(f"it is {len(token)} bytes, more than the {MAX_TOKEN} kept")
    token_claims = claims.unverified_claims(token)
    expires_at = claims.numeric_claim(token_claims, "exp")
    if expires_at is None:
        raise ValueError("the token has no usable exp claim")
    issued_at = claims.numeric_claim(token_claims, "iat")
    if issued_at is None or issued_at > expires_at:
        issued_at = min(now, expires_at)
    ahead = issued_at - now
    if ahead > CLOCK_TOLERANCE:
        # Issued in our future: the issuer's clock is ahead and it will stop accepting the
        # token that much earlier by our clock. Its life is counted from our "now" instead.
        issued_at, expires_at = now, expires_at - ahead
    if expires_at - issued_at > fastpath.MAX_ROBOT_TOKEN_LIFETIME:
        # Quay's tokens live an hour: a far exp is not believed (nor cached for ever).
        expires_at = min(expires_at, max(issued_at, now) + fastpath.MAX_ROBOT_TOKEN_LIFETIME)
        issued_at = max(issued_at, expires_at - fastpath.MAX_ROBOT_TOKEN_LIFETIME)
    return RobotToken(registry, robot, token, issued_at, expires_at)


class TokenCache:
    """Token files under ``directory``, each under its :class:`~.identity.CredentialKey`."""

    def __init__(self, directory: Path, chosen_by: str = fastpath.CACHE_DIR_ENV) -> None:
        self.directory = directory
        #: what chose the directory (a variable, or the kubelet provider's --cache-dir): the
        #: hints of its errors name that, and nothing the running executable lacks
        self.chosen_by = chosen_by

    # -- paths -----------------------------------------------------------------------------
    def path_for(self, key: CredentialKey) -> Path:
        return self.directory / fastpath.token_file_name(key.registry, key.digest)

    # -- reading ---------------------------------------------------------------------------
    def read(self, key: CredentialKey) -> RobotToken | None:
        """The cached token, or None; a symlink, a foreign, a readable-by-others, an edited or
        a corrupt file is discarded (the next refresh replaces it), and so is one for another
        robot."""
        registry = key.registry
        path = self.path_for(key)
        dir_fd = self._open_directory()
        if dir_fd is None:
            return None
        try:
            text = fastpath.read_private(path.name, dir_fd)
            entry = decode_token(text, registry, claims.expiry) if text is not None else None
            if entry is not None and entry.robot != key.robot:
                entry = None
            if entry is None and os.path.lexists(path):
                log.debug(f"cache file {path} is not a private, intact token file; discarding it")
                with contextlib.suppress(OSError):
                    os.unlink(path.name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        if entry is not None:
            log.secret(entry.token, user=entry.robot)
        return entry

    def _open_directory(self) -> int | None:
        """The cache directory, opened without following a symlink; tightened to 0700."""
        try:
            info = os.lstat(self.directory)
        except OSError:
            return None
        mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        if mine and stat.S_IMODE(info.st_mode) & 0o077:
            with contextlib.suppress(OSError):
                os.chmod(self.directory, 0o700)
        return fastpath.open_private_dir(str(self.directory))

    # -- remembering a failure ---------------------------------------------------------------
    def note_failure(self, key: CredentialKey, settings: str, message: str) -> None:
        """Remember that refreshing failed at the network level just now (best effort)."""
        text = f"{FAILURE_MAGIC}\n{settings}\n{time.time()!r}\n{' '.join(message.split())}\n"
        with contextlib.suppress(OSError, CacheError):
            self._write_private(self._failure_path(key), text)

    def recent_failure(
        self, key: CredentialKey, settings: str, window: float
    ) -> tuple[float, str] | None:
        """(seconds ago, message) of a failure noted within ``window`` for the same settings."""
        dir_fd = self._open_directory()
        if dir_fd is None:
            return None
        try:
            text = fastpath.read_private(self._failure_path(key).name, dir_fd)
        finally:
            os.close(dir_fd)
        lines = (text or "").split("\n")
        if len(lines) < 4 or lines[0] != FAILURE_MAGIC or lines[1] != settings:
            return None
        try:
            age = time.time() - float(lines[2])
        except ValueError:
            return None
        return (age, lines[3]) if 0 <= age < window else None

    def clear_failure(self, key: CredentialKey) -> None:
        self._discard(self._failure_path(key))

    def _failure_path(self, key: CredentialKey) -> Path:
        return self.path_for(key).with_suffix(".failed")

    # -- writing ---------------------------------------------------------------------------
    def write(self, key: CredentialKey, entry: RobotToken) -> Path:
        if (entry.registry, entry.robot) != (key.registry, key.robot):
            raise ValueError("a robot token is written under its own registry and robot only")
        path = self.path_for(key)
        self._write_private(path, encode_token(entry))
        return path

    def write_private(self, name: str, text: str) -> None:
        """Replace the file ``name`` in the cache directory atomically, private to this user."""
        self._write_private(self.directory / name, text)

    def read_private(self, name: str) -> str | None:
        """The text of the file ``name`` in the cache directory when it is ours and 0600."""
        dir_fd = self._open_directory()
        if dir_fd is None:
            return None
        try:
            return fastpath.read_private(name, dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self, name: str) -> bool:
        """Remove the file ``name`` from the cache directory; True if it was there."""
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            return False
        except OSError:
            return False
        return True

    def _write_private(self, path: Path, text: str) -> None:
        self._ensure_directory()
        files.atomic_write(path, text.encode("ascii"), 0o600)

    def erase(self, registry: str) -> int:
        """Drop every cached token for ``registry``; returns how many files went."""
        removed = 0
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        prefix = fastpath.key_file_prefix(registry)
        for name in names:
            if not name.startswith(prefix):
                continue
            if name.endswith(".failed"):
                self._discard(self.directory / name)
            elif name.endswith(".token"):
                self._discard(self.directory / name)
                removed += 1
        return removed

    def erase_when_idle(self, registry: str, timeout: float = ERASE_WAIT) -> int:
        """``erase``, once every mint under way for ``registry`` (a get, the refresh-ahead
        child) is done: each of its credentials' locks is held while the tokens go, so none
        is written after the erase. ``timeout`` bounds the whole wait, however many locks: one
        not given up by then (a hung process) is not waited for."""
        prefix = fastpath.key_file_prefix(registry)
        try:
            names = sorted(
                name
                for name in os.listdir(self.directory)
                if name.startswith(prefix) and name.endswith(".lock")
            )
        except OSError:
            names = []
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as held:
            for name in names:
                try:
                    left = max(0.0, deadline - time.monotonic())
                    held.enter_context(self.lock_file(name, left))
                except CacheError as exc:
                    log.debug(f"erasing {registry} without waiting: {exc.message}")
            return self.erase(registry)

    def lock(self, key: CredentialKey, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock for this key; raises CacheError after ``timeout`` seconds."""
        return self.lock_file(self.path_for(key).with_suffix(".lock").name, timeout)

    @contextlib.contextmanager
    def lock_file(self, name: str, timeout: float) -> Iterator[None]:
        """Hold an exclusive lock on the file ``name`` in the cache directory."""
        self._ensure_directory()
        lock_path = self.directory / name
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            raise CacheError(
                f"cannot open the lock file {lock_path}: {exc.strerror}",
                f"remove it, or point {self.chosen_by} at a private directory",
            ) from None
        try:
            deadline = time.monotonic() + timeout
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"another docker-credential-quayfed held the lock {lock_path} "
                            f"for {timeout:.0f}s",
                            "retry; if it persists, look for a hung process",
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.1)
            yield
        finally:
            os.close(fd)

    # -- internals -------------------------------------------------------------------------
    def _ensure_directory(self) -> Path:
        directory = self.directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(directory)
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache directory {directory}: {exc.strerror}",
                f"point {self.chosen_by} at a writable private directory",
            ) from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise CacheError(
                f"the cache directory {directory} is a symlink or not a directory",
                f"remove it, or point {self.chosen_by} at a private directory",
            )
        if info.st_uid != os.getuid():
            raise CacheError(
                f"the cache directory {directory} belongs to another user",
                f"point {self.chosen_by} at a directory you own",
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(directory, 0o700)
        files.remove_stale_parts(directory)
        return directory

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
