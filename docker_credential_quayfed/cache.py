"""Robot tokens on disk: one 0600 file per registry key and identity in a 0700 directory.

Standard library only (a cache hit must not import httpx or jwt). Writes go to a temp file
that is fsynced and renamed; reads never follow a symlink; a lock file serialises refreshes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from docker_credential_quayfed import claims, files, hot, log
from docker_credential_quayfed.errors import CacheError
from docker_credential_quayfed.hot import RobotToken

__all__ = ["RobotToken", "TokenCache", "robot_token_from_jwt"]


def robot_token_from_jwt(registry: str, robot: str, token: str, now: float) -> RobotToken:
    """The token with its times; raises claims.NotAJWT, or ValueError when it has no ``exp``."""
    token_claims = claims.unverified_claims(token)
    expires_at = claims.numeric_claim(token_claims, "exp")
    if expires_at is None:
        raise ValueError("the token has no exp claim")
    issued_at = claims.numeric_claim(token_claims, "iat")
    if issued_at is None or issued_at > expires_at:
        issued_at = min(now, expires_at)
    return RobotToken(registry, robot, token, issued_at, expires_at)


class TokenCache:
    """Token files under ``directory``, keyed by registry key and credential identity."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- paths -----------------------------------------------------------------------------
    def path_for(self, registry: str, identity: str) -> Path:
        return self.directory / hot.token_file_name(registry, identity_digest(identity))

    # -- reading ---------------------------------------------------------------------------
    def read(self, registry: str, identity: str) -> RobotToken | None:
        """The cached token, or None; a symlink, a foreign or a corrupt file is discarded."""
        path = self.path_for(registry, identity)
        text = hot.read_private(str(path))
        entry = hot.decode_token(text, registry) if text is not None else None
        if entry is None and os.path.lexists(path):
            log.debug(f"cache file {path} is a symlink, not ours, or corrupt; discarding it")
            self._discard(path)
        return entry

    # -- writing ---------------------------------------------------------------------------
    def write(self, identity: str, entry: RobotToken) -> Path:
        path = self.path_for(entry.registry, identity)
        self._write_private(path, hot.encode_token(entry))
        return path

    def write_snapshot(
        self, config_file: str, stamp: str, entries: dict[str, tuple[str, float, str]]
    ) -> None:
        """Record which cache file serves each registry key while config.toml keeps ``stamp``.

        ``entries`` maps a registry key to (identity, refresh_margin, robot).
        """
        snapshot = {
            key: hot.SnapshotEntry(identity_digest(identity), margin, robot)
            for key, (identity, margin, robot) in entries.items()
        }
        text = hot.encode_snapshot(config_file, stamp, snapshot)
        path = self.directory / hot.SNAPSHOT_NAME
        if hot.read_private(str(path)) != text:
            self._write_private(path, text)

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
        prefix = hot.token_file_name(registry, "")[: -len(".token")]
        for name in names:
            if name.startswith(prefix) and name.endswith(".token"):
                self._discard(self.directory / name)
                removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self, registry: str, identity: str, timeout: float) -> Iterator[None]:
        """Hold an exclusive lock for this key; raises CacheError after ``timeout`` seconds."""
        self._ensure_directory()
        lock_path = self.path_for(registry, identity).with_suffix(".lock")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            raise CacheError(
                f"cannot open the lock file {lock_path}: {exc.strerror}",
                "remove it, or point DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR at a private directory",
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
                        raise CacheError(
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
                "set DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR to a writable private directory",
            ) from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise CacheError(
                f"the cache directory {directory} is a symlink or not a directory",
                "remove it, or set DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR to a private directory",
            )
        if info.st_uid != os.getuid():
            raise CacheError(
                f"the cache directory {directory} belongs to another user",
                "set DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR to a directory you own",
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(directory, 0o700)
        return directory

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def identity_digest(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
