"""The README's performance table is the committed benchmark JSON rendered, and the benchmark's
memory method tells programs apart. Timing goals are checked by benchmarks/bench_get.py, not here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def load(name: str) -> ModuleType:
    """A script from benchmarks/ (not a package)."""
    return load_script(BENCHMARKS / name)


report = load("report.py")


def test_the_readme_table_is_the_committed_json_rendered() -> None:
    assert report.main(["--check"]) == 0, "run: python benchmarks/report.py"


def test_every_committed_row_renders_ratio_first() -> None:
    results = json.loads((BENCHMARKS / "results.json").read_text(encoding="utf-8"))
    table = report.render_markdown(results)
    assert table.splitlines()[2] == "| ratio | goal | figure | measured | baseline |"
    for row in results["rows"]:
        assert f"| {report.cells(row)[0]} | " in table
    keys = {row["key"] for row in results["rows"]}
    assert {"cache_hit_vs_floor", "zipapp_cache_hit", "cold", "concurrent_cold"} <= keys
    assert {"method_memory", "many_registries", "peer_ecr-login", "peer_pass"} <= keys


def test_a_missed_goal_is_said_in_the_table() -> None:
    rows: list[dict[str, Any]] = [
        {"key": "a", "what": "met", "ratio": 1.0, "goal": "<= 1.15", "met": True},
        {"key": "b", "what": "missed", "ratio": 1.5, "goal": "<= 1.15", "met": False},
        {"key": "c", "what": "no goal", "ratio": None, "measured": "not installed"},
    ]
    meta = {"python": "3", "machine": "m", "rounds": 1, "date": "d", "memory": "x"}
    table = report.render_markdown({"meta": meta, "rows": rows})
    assert "| 1.00 | <= 1.15: met | met |" in table
    assert "| 1.50 | <= 1.15: NOT met | missed |" in table
    assert "|  |  | no goal | not installed |" in table


def test_replacing_the_section_keeps_the_rest_of_the_readme() -> None:
    readme = f"before\n{report.BEGIN}\nold table\n{report.END}\nafter\n"
    assert report.replace_section(readme, "new\n") == (
        f"before\n{report.BEGIN}\nnew\n{report.END}\nafter\n"
    )
    with pytest.raises(ValueError):
        report.replace_section("no markers\n", "new\n")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for benchmarks/measure.c")
def test_peak_memory_tells_a_program_that_allocates_50_mib_more(tmp_path: Path) -> None:
    """From a tiny parent, a child's peak is its own (a Python parent's would hide it)."""
    measure = load("measure.py")
    runner = measure.Runner(tmp_path)
    floor = measure.Command("floor", [sys.executable, "-I", "-S", "-c", "pass"], {})
    more = measure.Command(
        "50 MiB more", [sys.executable, "-I", "-S", "-c", "b = b'x' * (50 << 20)"], {}
    )
    measure.alternate(runner, [floor, more], 2)
    difference = more.median_peak_mib() - floor.median_peak_mib()
    assert 48 <= difference <= 55, difference
    assert floor.median_peak_mib() < 20  # this test process is far larger
