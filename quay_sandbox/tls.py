"""A throw-away certificate authority and server certificate for tests (``trustme``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TestPKI:
    """Paths of a test CA certificate and of a server certificate chain and key signed by it."""

    __test__ = False  # not a pytest test class despite the name

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def make_test_pki(
    directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1")
) -> TestPKI:
    """Create ``ca.crt``, ``server.crt`` (leaf then chain) and ``server.key`` in ``directory``.

    Keys are written 0600, certificates 0644. Existing files are overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*hosts)
    pki = TestPKI(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    _write(pki.ca_cert, ca.cert_pem.bytes(), 0o644)
    _write(pki.server_cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems), 0o644)
    _write(pki.server_key, leaf.private_key_pem.bytes(), 0o600)
    return pki


def load_or_make_test_pki(directory: Path) -> TestPKI:
    """The PKI already in ``directory`` if all three files exist, else a new one."""
    directory = Path(directory)
    existing = TestPKI(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    if all(p.is_file() for p in (existing.ca_cert, existing.server_cert, existing.server_key)):
        return existing
    return make_test_pki(directory)
