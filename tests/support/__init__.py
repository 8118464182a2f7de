"""Test support shared by the unit and end-to-end suites (servers, providers)."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest


def trusting(ca_cert: Path | str) -> ssl.SSLContext:
    """An SSL context trusting only ``ca_cert`` (for ``httpx``'s ``verify=``)."""
    return ssl.create_default_context(cafile=str(ca_cert))


def unavailable(reason: str) -> None:
    """Skip, except under CI=true, which must run these tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run it")
    pytest.skip(reason)


def go_command() -> str | None:
    """go on PATH, else where the official archive installs it."""
    fallback = "/usr/local/go/bin/go"
    return shutil.which("go") or (fallback if os.access(fallback, os.X_OK) else None)
