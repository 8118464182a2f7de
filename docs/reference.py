"""The README's settings and sources tables, made from the code's own declarations.

python docs/reference.py          # rewrite the tables in README.md
python docs/reference.py --check  # exit 1 when README.md's tables are stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- reference:begin (docs/reference.py) -->", "<!-- reference:end -->"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from docker_credential_quayfed.config import settings_reference
    from docker_credential_quayfed.sources import BY_NAME, SOURCES

    lines = ["| key | meaning | default | needed |", "|---|---|---|---|"]
    for name, meaning, default, need in settings_reference(BY_NAME):
        lines.append(f"| `{name}` | {meaning} | `{default}` | {need} |")
    lines += ["", "| source | where the JWT comes from | settings it reads |", "|---|---|---|"]
    for source in SOURCES:
        read = ", ".join(f"`{name}`" for name in source.settings()) or "none"
        lines.append(f"| `{source.name}` | {source.summary} | {read} |")
    return "\n".join([BEGIN, *lines, END])


def updated(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--check", action="store_true", help="fail when README.md is stale")
    args = cli.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    fresh = updated(current)
    if args.check:
        if fresh != current:
            print("README.md's reference tables are stale: run python docs/reference.py")
            return 1
        print("README.md's reference tables are up to date")
        return 0
    README.write_text(fresh, encoding="utf-8")
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
