"""Reading a JWT's header and claims without verifying it (standard library only).

The cache-hit path uses this, so it must not import jwt or httpx.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from docker_credential_quayfed.text import printable


class NotAJWT(ValueError):
    """The text is not a compact JWS with a JSON header and JSON object claims."""


def _part(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeError, RecursionError) as exc:
        raise NotAJWT("not a JWT") from exc
    if not isinstance(value, dict):
        raise NotAJWT("not a JWT")
    return value


def split(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT, unverified."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise NotAJWT("not a JWT")
    if not all(set(part) <= _BASE64URL for part in parts):
        raise NotAJWT("not a JWT")  # a compact JWS is base64url text, the signature included
    return _part(parts[0]), _part(parts[1])


_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def unverified_claims(token: str) -> dict[str, Any]:
    return split(token)[1]


def numeric_claim(claims: dict[str, Any], name: str) -> float | None:
    """A time claim (``exp``, ``iat``) as a finite float; None when absent or no time at all
    (a string, infinity, NaN, an integer beyond a float)."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if number - number == 0.0 else None  # false for infinity and NaN


def expiry(token: str) -> float | None:
    """The one reader of a JWT's ``exp`` (unverified): None when it is no JWT or its exp is no
    time. The fast path's light scanner (``fastpath.jwt_exp``) must agree or say it cannot."""
    try:
        return numeric_claim(unverified_claims(token), "exp")
    except NotAJWT:
        return None


def describe(claims: dict[str, Any]) -> str:
    """The claims a person needs to see (never the token): iss, sub, aud, exp."""
    shown = []
    for name in ("iss", "sub", "aud", "exp"):
        if name in claims:
            shown.append(f"{name}={printable(str(claims[name]))}")
    return " ".join(shown) if shown else "no iss/sub/aud/exp claims"
