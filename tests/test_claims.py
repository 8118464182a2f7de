from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docker_credential_quayfed import claims
from tests.jwt_factory import fake_jwt


def test_split_returns_header_and_claims() -> None:
    header, body = claims.split(fake_jwt({"sub": "a", "exp": 10}))
    assert header["kid"] == "test"
    assert body == {"sub": "a", "exp": 10}


@pytest.mark.parametrize("text", ["", "abc", "a.b", "a.b.c", "e30.W10.x", "....", "%%.%%.%%"])
def test_non_jwts_are_refused(text: str) -> None:
    with pytest.raises(claims.NotAJWT):
        claims.unverified_claims(text)


@given(st.text(max_size=300))
def test_arbitrary_text_is_a_jwt_or_refused_cleanly(text: str) -> None:
    try:
        result = claims.unverified_claims(text)
    except claims.NotAJWT:
        return
    assert isinstance(result, dict)


def test_numeric_claim_ignores_booleans_and_strings() -> None:
    assert claims.numeric_claim({"exp": 5}, "exp") == 5.0
    assert claims.numeric_claim({"exp": True}, "exp") is None
    assert claims.numeric_claim({"exp": "5"}, "exp") is None
    assert claims.numeric_claim({}, "exp") is None


def test_describe_shows_identity_claims_only() -> None:
    shown = claims.describe({"iss": "https://i", "sub": "u", "exp": 9, "secret": "x"})
    assert shown == "iss=https://i sub=u exp=9"
