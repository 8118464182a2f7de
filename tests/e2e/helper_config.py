"""The helper's TOML configuration, written the way a user would write it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Union

Value = Union[str, int, float]


def _toml_value(value: Value) -> str:
    if isinstance(value, bool):
        raise TypeError("the helper config has no boolean keys")
    if isinstance(value, (int, float)):
        return str(value)
    # A JSON string with only printable characters is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render(registries: Mapping[str, Mapping[str, Value]]) -> str:
    """One `[registries."HOST"]` table per registry key."""
    blocks = []
    for key, settings in registries.items():
        lines = [f"[registries.{json.dumps(key)}]"]
        lines += [f"{name} = {_toml_value(value)}" for name, value in settings.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write(path: Path, registries: Mapping[str, Mapping[str, Value]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(registries))
    return path
