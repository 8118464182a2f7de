"""Unsigned-looking JWTs for unit tests of pure logic (no signature is ever checked there)."""

from __future__ import annotations

import base64
import json
from typing import Any


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def fake_jwt(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    head = {"alg": "RS256", "typ": "JWT", "kid": "test", **(header or {})}
    return f"{_segment(head)}.{_segment(claims)}.c2lnbmF0dXJl"
