"""The benchmark table, from the JSON that ``bench_get.py --json`` writes, into the README.

    python benchmarks/report.py [--json benchmarks/results.json] [--readme README.md] [--check]

Rewrites the part of the README between the two marker lines with the table rendered from
the JSON (``--check``: exit 1 when the README differs instead). The table is never typed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results.json"
DEFAULT_README = ROOT / "README.md"
BEGIN = "<!-- benchmark table: written by benchmarks/report.py from benchmarks/results.json -->"
END = "<!-- end of benchmark table -->"
COLUMNS = ("ratio", "goal", "figure", "measured", "baseline")


def cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    ratio = row.get("ratio")
    goal = row.get("goal") or ""
    met = row.get("met")
    if goal and met is not None:
        goal = f"{goal}: {'met' if met else 'NOT met'}"
    return (
        "" if ratio is None else f"{ratio:.2f}",
        goal,
        str(row["what"]),
        str(row.get("measured", "")),
        str(row.get("baseline", "")),
    )


def caption(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    return (
        f"Python {meta['python']}, {meta['machine']}, {meta['rounds']} rounds, {meta['date']}; "
        f"median wall time; peak memory: {meta['memory']}."
    )


def render_markdown(results: Mapping[str, Any]) -> str:
    lines = [caption(results), "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    for row in results["rows"]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |")
    return "\n".join(lines) + "\n"


def render_text(results: Mapping[str, Any]) -> str:
    rows = [COLUMNS, *(cells(row) for row in results["rows"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 2)]
    lines = [caption(results)]
    for row in rows:
        fixed = [row[i].ljust(widths[i]) for i in range(len(widths))]
        lines.append("  ".join([*fixed, row[-2] + ("  |  " + row[-1] if row[-1] else "")]))
    return "\n".join(lines)


def replace_section(readme: str, table: str) -> str:
    start = readme.find(BEGIN)
    stop = readme.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"the README has no '{BEGIN}' ... '{END}' section")
    return readme[: start + len(BEGIN)] + "\n" + table + readme[stop:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="%(default)s")
    parser.add_argument("--readme", type=Path, default=DEFAULT_README, help="%(default)s")
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text(encoding="utf-8"))
    readme = args.readme.read_text(encoding="utf-8")
    try:
        updated = replace_section(readme, render_markdown(results))
    except ValueError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if updated != readme:
            print(f"report: {args.readme} is not {args.json} rendered; run benchmarks/report.py")
            return 1
        return 0
    if updated != readme:
        args.readme.write_text(updated, encoding="utf-8")
        print(f"updated {args.readme} from {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
