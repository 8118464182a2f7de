"""Figures the reliability runs leave behind for ``docs/reliability.py`` to gather.

When ``$QUAYFED_RELIABILITY_OUT`` names a directory, ``record(kind, **fields)`` appends one
JSON line to ``<dir>/<kind>.jsonl``; otherwise it does nothing, so ordinary test runs leave no
files. Writers in several processes may append at once: each line is one ``write``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OUT_ENV = "QUAYFED_RELIABILITY_OUT"


def out_dir() -> Path | None:
    value = os.environ.get(OUT_ENV, "").strip()
    return Path(value) if value else None


def record(kind: str, **fields: Any) -> None:
    directory = out_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    line = json.dumps(fields, sort_keys=True) + "\n"
    fd = os.open(directory / f"{kind}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(directory: Path, kind: str) -> list[dict[str, Any]]:
    path = directory / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
