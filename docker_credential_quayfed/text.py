"""Text made safe for a terminal or a log (standard library only, no package imports)."""

from __future__ import annotations


def printable(value: str) -> str:
    """``value`` with every non-printable character written as its escape (ESC as ``\\x1b``).

    Robot names, claims and server text come from others: raw, an ESC or BEL in them could
    rewrite the terminal or forge lines in the kubelet's log.
    """
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def clipped(value: str, limit: int) -> str:
    """``value`` made printable, then cut to ``limit`` characters (``...`` ends a cut one).

    Escaping comes first: an escape is four characters, so text cut before it could grow to
    four times the limit."""
    shown = printable(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
