"""Reading a file safely (regular files only, bounded) and writing one atomically."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

#: temp files older than this are left by a killed writer, never by a live one
STALE_PART_SECONDS = 60.0


class FileRefused(ValueError):
    """A file that must not be read: not a regular file (FIFO, device, directory) or too large.

    ``str(err)`` completes "the FILE ..." e.g. "is a FIFO, not a regular file".
    """


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened non-blocking, so a FIFO never hangs the caller; raises FileRefused for anything
    that is not a regular file or is larger than ``limit``, OSError when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind:
            raise FileRefused(f"is {kind}, not a regular file")
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"is larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """'' for a regular file, else what it is ("a FIFO", "a directory", ...)."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def remove_stale_parts(directory: Path, now: float | None = None) -> int:
    """Delete temp files a killed writer left in ``directory``; returns how many went."""
    now = time.time() if now is None else now
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".part")):
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PART_SECONDS:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    A symlink at ``path`` is replaced by a regular file, never followed.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
