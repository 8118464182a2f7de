"""The zipapp's first run: unpack the payload into a private per-build directory, compile it.

Stored in the zipapp as ``_quayfed_unpack.py`` and imported by its ``__main__`` (from inside
the archive; the sh lines before the zip hand over to ``__main__`` then) only when
``$XDG_CACHE_HOME/docker-credential-quayfed/zipapp-<build id>`` is missing, incomplete, or not
yet compiled for the running interpreter and optimization level.
Later runs only stat that directory and a marker in it, put it first on ``sys.path`` and
import the package from real files with a ``__pycache__``: no zipimport compiling every module
on every run. That is the scheme of shiv (and of PEX).

- The payload is extracted into a ``.unpack-*`` directory beside the build directory; the
  ``.complete`` marker is written last, and the directory renamed into place. A process that
  loses the rename to another uses the winner's directory.
- It is then compiled in place for this interpreter (``compileall``: ``__pycache__``,
  ``legacy=False``, the interpreter's optimization level, timestamp pycs whatever
  ``SOURCE_DATE_EPOCH`` says, independent of ``PYTHONDONTWRITEBYTECODE``), and the marker
  ``.compiled-<cache tag>-opt<level>`` written. Pythons 3.9 to 3.13 share one build directory,
  each with its own pycs and marker.
- Concurrent first runs take an advisory lock on the parent directory, so one extracts and
  compiles while the others wait (at most ``LOCK_TIMEOUT`` seconds, then they go ahead
  unlocked, which is still safe: every step is atomic or idempotent).
- Directories are 0700. The parent and the build directory must be directories of this user,
  not symlinks; otherwise ``prepare`` answers False and the zipapp runs from the archive. A
  build directory of this user without ``.complete``, or open to others, is discarded and
  extracted again.
- Leftovers of interrupted runs (``.unpack-*``, ``.discard-*``) older than ``STALE_AFTER`` are
  removed. Build directories of other builds are left alone: an older zipapp may still be in
  use, and the directory name says nothing about that.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import py_compile
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator

COMPLETE = ".complete"
# Entries of the archive that are not payload: the entry point and this module.
NOT_PAYLOAD = frozenset({"__main__.py", "_quayfed_unpack.py"})
LOCK_TIMEOUT = 60.0
STALE_AFTER = 3600.0
DEBRIS_PREFIXES = (".unpack-", ".discard-")


def prepare(archive: str, root: str, marker: str) -> bool:
    """Make ``root`` hold the payload of ``archive`` compiled for this interpreter.

    ``marker`` is the name of the file that says so for this interpreter, written last.
    True when ``root`` is ready to go on ``sys.path``; False when it cannot be used (not
    writable, a symlink, someone else's): the caller then runs from the archive.
    """
    parent = os.path.dirname(root)
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not own_directory(parent):
        return False
    with contextlib.suppress(OSError):
        if stat.S_IMODE(os.lstat(parent).st_mode) != 0o700:
            os.chmod(parent, 0o700)
    try:
        with locked(parent):
            remove_debris(parent)
            if not ensure_payload(archive, root):
                return False
            if not os.path.exists(os.path.join(root, marker)):
                compile_tree(root)
                write_marker(os.path.join(root, marker))
    except OSError:
        return False
    return True


def own_directory(path: str) -> bool:
    """``path`` is a directory (not a symlink to one) that belongs to this user."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def ensure_payload(archive: str, root: str) -> bool:
    """Extract the payload to ``root`` unless a complete private copy is there already."""
    if os.path.lexists(root):
        if not own_directory(root):
            return False  # a symlink, a file, or another user's: refuse, run from the zip
        private = stat.S_IMODE(os.lstat(root).st_mode) & 0o077 == 0
        if private and os.path.exists(os.path.join(root, COMPLETE)):
            return True
        discard(root)  # partial, damaged, or open to others: extract it again
    parent = os.path.dirname(root)
    scratch = tempfile.mkdtemp(prefix=DEBRIS_PREFIXES[0], dir=parent)  # 0700
    try:
        extract(archive, scratch)
        write_marker(os.path.join(scratch, COMPLETE))
        try:
            os.rename(scratch, root)
        except OSError:
            # Another process renamed its copy into place first (without the lock): use it.
            if not os.path.exists(os.path.join(root, COMPLETE)) or not own_directory(root):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def extract(archive: str, target: str) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            name = info.filename
            if info.is_dir() or name in NOT_PAYLOAD:
                continue
            parts = name.split("/")
            if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
                raise OSError(f"unsafe name in the archive: {name!r}")
            path = os.path.join(target, *parts)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with zipped.open(info) as source, open(path, "xb") as sink:
                shutil.copyfileobj(source, sink)


def compile_tree(root: str) -> None:
    """Byte-compile every module under ``root`` for this interpreter, into ``__pycache__``.

    A module this interpreter cannot compile is skipped (quietly: stdout is the credential
    protocol's); importing it would fail the same way from the archive.
    """
    compileall.compile_dir(
        root,
        quiet=2,
        optimize=sys.flags.optimize,
        legacy=False,
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
        workers=1,
    )
    for directory, _, _ in os.walk(root):  # compileall makes __pycache__ with the umask's mode
        if os.path.basename(directory) == "__pycache__":
            os.chmod(directory, 0o700)


def write_marker(path: str) -> None:
    with open(path, "w", encoding="ascii") as stream:
        stream.write(f"{sys.version.split()[0]} {time.time():.0f}\n")


def discard(root: str) -> None:
    """Move ``root`` aside (atomically) and delete it."""
    aside = tempfile.mkdtemp(prefix=DEBRIS_PREFIXES[1], dir=os.path.dirname(root))
    try:
        os.rename(root, aside)  # onto the empty directory: allowed, and atomic
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def remove_debris(parent: str) -> None:
    now = time.time()
    with os.scandir(parent) as entries:
        for entry in entries:
            if entry.name.startswith(DEBRIS_PREFIXES) and entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                        shutil.rmtree(entry.path, ignore_errors=True)


@contextlib.contextmanager
def locked(directory: str) -> Iterator[None]:
    """An advisory lock on ``directory``; after ``LOCK_TIMEOUT`` seconds, go on without it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: every step is safe unlocked too
        yield
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
        yield
    finally:
        os.close(fd)
