"""Debug and warning lines on stderr, with anything token-shaped redacted."""

from __future__ import annotations

import os
import sys

from docker_credential_quayfed.paths import APP_NAME as PROGRAM

DEBUG_ENV = "DOCKER_CREDENTIAL_QUAYFED_DEBUG"

# A JWT (base64url JSON header "eyJ..." and further dot-separated parts) never reaches output.
_TOKENISH = r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"

_said: set[str] = set()


def redact(text: str) -> str:
    if "eyJ" not in text:
        return text
    import re

    return re.sub(_TOKENISH, "<redacted>", text)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def debug(message: str) -> None:
    if debug_enabled():
        _emit(f"{PROGRAM}: debug: {message}")


def warn(message: str) -> None:
    """A warning line, said at most once per process."""
    if message in _said:
        return
    _said.add(message)
    _emit(f"{PROGRAM}: warning: {message}")


def error(message: str) -> None:
    _emit(f"{PROGRAM}: {message}")


def _emit(line: str) -> None:
    try:
        sys.stderr.write(redact(" ".join(line.split())) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
