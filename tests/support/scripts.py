"""Load one of the project's scripts (benchmarks/, docs/, packaging/) as a module: those folders
are no packages (``packaging`` would shadow PyPI's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent


def load_script(path: Path) -> ModuleType:
    """``path`` (under the project's root) run as a module named after it, registered in
    ``sys.modules`` (dataclasses look their module up there)."""
    relative = path.resolve().relative_to(ROOT).with_suffix("")
    name = "quayfed_script_" + "_".join(relative.parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
