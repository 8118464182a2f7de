"""docs/reliability.py --only: one suite's new figures go into the page, the rest stays."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reliability() -> ModuleType:
    return load_script(ROOT / "docs" / "reliability.py")


def _records(directory: Path, **kinds: list[dict[str, object]]) -> Path:
    directory.mkdir()
    for kind, rows in kinds.items():
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (directory / f"{kind}.jsonl").write_text(text)
    return directory


def _run(suite: str, code: int, seconds: float) -> dict[str, object]:
    return {"suite": suite, "command": f"pytest {suite}", "exit_code": code, "seconds": seconds}


def _isolation(examples: int, failures: int) -> dict[str, object]:
    return {"examples": examples, "steps": 7, "seconds": 2.5, "failures": failures}


def _races(processes: int) -> dict[str, object]:
    return {"processes": processes, "corrupt_reads": 0, "stuck_locks": 0}


def _leaks(checked: int) -> dict[str, object]:
    return {"bytes_checked": checked, "secrets": 3, "hits": 0}


@pytest.fixture
def old_page(reliability: ModuleType, tmp_path: Path) -> str:
    records = _records(
        tmp_path / "old",
        runs=[_run("races", 0, 11.0), _run("isolation", 0, 50.0)],
        races=[_races(40)],
        isolation=[_isolation(300, 0)],
        leaks=[_leaks(1000), _leaks(2000)],
    )
    text: str = reliability.page(records, "python docs/reliability.py")
    return text


def test_only_one_suite_replaces_its_figures_and_keeps_the_others(
    reliability: ModuleType, tmp_path: Path, old_page: str
) -> None:
    records = _records(
        tmp_path / "new",
        runs=[_run("isolation", 0, 1400.0)],
        isolation=[_isolation(10000, 0)],
        leaks=[_leaks(500)],
    )
    new_page = reliability.page(records, "python docs/reliability.py")
    spliced = reliability.splice(old_page, new_page, ["isolation"])

    assert "| races | `pytest races` | 0 | 11.0 |" in spliced  # the other suite's run stays
    assert "| isolation | `pytest isolation` | 0 | 1400.0 |" in spliced
    assert "| isolation | `pytest isolation` | 0 | 50.0 |" not in spliced
    assert "| 1 | 10000 | 7 |" in spliced and "| 1 | 300 | 7 |" not in spliced
    assert "| 1 | 40 | - | 0 | 0 |" in spliced  # the races section is untouched
    assert "| 3 | 500 | 3 | 0 |" in spliced and "| total | 3500 | 9 | 0 |" in spliced

    # A session whose record lacks a figure shows "-", and the total counts it as none.
    records = _records(tmp_path / "partial", leaks=[{"bytes_checked": 7}])
    partial = reliability.splice(spliced, reliability.page(records, "rerun"), ["isolation"])
    assert "| 4 | 7 | - | - |" in partial and "| total | 3507 | 9 | 0 |" in partial
    assert reliability.ALL_KEPT in spliced
    assert spliced.index("## Races") < spliced.index("## Isolation")  # the page keeps its order


def test_a_failing_suite_puts_its_breaches_in_the_verdict(
    reliability: ModuleType, tmp_path: Path, old_page: str
) -> None:
    records = _records(
        tmp_path / "new", runs=[_run("isolation", 1, 9.0)], isolation=[_isolation(40, 2)]
    )
    new_page = reliability.page(records, "python docs/reliability.py")
    spliced = reliability.splice(old_page, new_page, ["isolation"])

    verdict = spliced.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    assert "2 breaches of the contract:" in verdict
    assert "- isolation: 2 answers to an identity Quay would refuse" in verdict
    assert "- isolation: pytest exited with status 1" in verdict
    assert reliability.ALL_KEPT not in verdict

    # A later passing run of the same suite takes its breaches back out of the verdict.
    records = _records(
        tmp_path / "again", runs=[_run("isolation", 0, 9.0)], isolation=[_isolation(40, 0)]
    )
    again = reliability.splice(
        spliced, reliability.page(records, "python docs/reliability.py"), ["isolation"]
    )
    assert "breach" not in again and reliability.ALL_KEPT in again


def test_a_full_run_keeps_the_mutation_section_another_script_wrote() -> None:
    reliability = load_script(ROOT / "docs" / "reliability.py")
    old = (
        "# Reliability\n\n## Isolation\n\nold\n\n## Mutation (`x`)\n\ntable\n\n"
        "## Secrets in output\n"
    )
    new = "# Reliability\n\n## Isolation\n\nnew\n\n## Secrets in output\n\nrows\n"
    kept = reliability.keep_foreign_sections(old, new)
    assert "## Mutation (`x`)\n\ntable\n" in kept and "new" in kept and "old" not in kept
    assert kept.index("## Mutation") < kept.index("## Secrets in output")
