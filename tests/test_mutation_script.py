"""docs/mutation.py: every mutant applies to the package as it is (loudly when it no longer
does), and its section goes into the reliability page without touching the others."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutation() -> ModuleType:
    return load_script(ROOT / "docs" / "mutation.py")


def test_every_mutant_applies_once_and_changes_the_package(
    mutation: ModuleType, tmp_path: Path
) -> None:
    for mutant in mutation.MUTANTS:
        package = tmp_path / mutant.name
        shutil.copytree(ROOT / mutation.PACKAGE, package)
        mutation.apply(package, mutant)
        for name, old, new in mutant.replacements:
            text = (package / name).read_text()
            assert new in text and (old not in text or old in new), (mutant.name, name)


def test_a_mutant_whose_text_is_gone_stops_the_run(mutation: ModuleType, tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(ROOT / mutation.PACKAGE, package)
    mutant = mutation.Mutant("gone", "text that is not there", (("cli.py", "no such text", "x"),))
    with pytest.raises(mutation.SnippetMissing, match="occurs 0 times in"):
        mutation.apply(package, mutant)


def test_the_section_replaces_its_own_and_keeps_the_others(mutation: ModuleType) -> None:
    page = "# Reliability\n\n## Isolation\n\nkept\n\n## Secrets in output\n\nalso kept\n"
    killed = mutation.Outcome("key-without-sub", True, 12, 4.1, "rule", "the check")
    baseline = [mutation.Outcome("unmutated", False, 200, 60.0)]
    first = mutation.splice(page, mutation.section([[killed]], baseline, 200))
    assert first.index("## Isolation") < first.index(mutation.HEADING)
    assert first.index(mutation.HEADING) < first.index("## Secrets in output")
    assert "| `key-without-sub` |" in first and "| 1 | yes | 12 | 4.1 | rule |" in first
    survived = mutation.Outcome("key-without-sub", False, 200, 70.0)
    second = mutation.splice(first, mutation.section([[survived]], baseline, 200))
    assert second.count(mutation.HEADING) == 1 and "| 1 | yes |" not in second
    assert "Survived at least once: `key-without-sub`." in second
    assert "kept\n" in second and "also kept\n" in second
