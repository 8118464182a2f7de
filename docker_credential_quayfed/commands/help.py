"""What every command's parser shares."""

from __future__ import annotations

import textwrap


def describe(text: str, width: int = 79) -> str:
    """A description paragraph wrapped for the terminal (the formatter keeps it as given)."""
    return textwrap.fill(" ".join(text.split()), width=width)
