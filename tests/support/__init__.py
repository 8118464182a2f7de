"""Test support shared by the unit and end-to-end suites (servers, providers)."""

from __future__ import annotations

import ssl
from pathlib import Path


def trusting(ca_cert: Path | str) -> ssl.SSLContext:
    """An SSL context trusting only ``ca_cert`` (for ``httpx``'s ``verify=``)."""
    return ssl.create_default_context(cafile=str(ca_cert))
