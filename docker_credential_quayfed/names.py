"""Quay's grammar for robot names (standard library only, no package imports)."""

from __future__ import annotations

import re

# Quay's validate_username (util/validation.py), which it applies to a namespace and to a
# robot's short name alike; the full name is one 255-character username column.
_NAME_PART = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
MIN_PART_LENGTH = 2
MAX_ROBOT_LENGTH = 255
#: the grammar in words, for the fix of a refused name
ROBOT_GRAMMAR = (
    "namespace+shortname, each 2-255 lowercase letters or digits, '.', '_' or '-' only between them"
)


def is_robot_name(name: str) -> bool:
    """True when ``name`` is a full robot name Quay can have: ``namespace+shortname``."""
    namespace, plus, short = name.partition("+")
    return bool(
        plus
        and len(name) <= MAX_ROBOT_LENGTH
        and all(
            len(part) >= MIN_PART_LENGTH and _NAME_PART.fullmatch(part)
            for part in (namespace, short)
        )
    )
