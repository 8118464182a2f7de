"""fastpath reads a JWT's exp and writes JSON without json or base64: it must say what they say."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from docker_credential_quayfed import fastpath


def segment(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def token_with(payload: str) -> str:
    return f"{segment(json.dumps({'alg': 'RS256'}))}.{segment(payload)}.c2ln"


@settings(max_examples=1000, deadline=None)
@given(
    exp=st.one_of(st.integers(0, 2**52), st.floats(0, 1e12, allow_nan=False, allow_infinity=False)),
    others=st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=4),
    spacing=st.sampled_from([(",", ":"), (", ", ": "), (",\n  ", " :\t")]),
)
def test_jwt_exp_reads_what_json_reads(
    exp: float, others: dict[str, str], spacing: tuple[str, str]
) -> None:
    # "exp" as text elsewhere (a key or a value) is ambiguous by design: the full path decides.
    claims = {**{k: v for k, v in others.items() if "exp" not in k + v}, "exp": exp}
    payload = json.dumps(claims, separators=spacing)
    assert fastpath.jwt_exp(token_with(payload)) == float(exp)


@given(claims=st.dictionaries(st.text(max_size=6), st.integers(), max_size=4))
def test_jwt_exp_is_none_or_right_for_any_claims(claims: dict[str, int]) -> None:
    found = fastpath.jwt_exp(token_with(json.dumps(claims)))
    assert found == (float(claims["exp"]) if "exp" in claims else None) or found is None


def test_jwt_exp_refuses_what_it_cannot_read_unambiguously() -> None:
    assert fastpath.jwt_exp(token_with('{"exp": 5, "nested": {"exp": 6}}')) is None
    assert fastpath.jwt_exp(token_with('{"sub": "x"}')) is None
    assert fastpath.jwt_exp(token_with('{"exp": "soon"}')) is None
    assert fastpath.jwt_exp("a.b") is None
    assert fastpath.jwt_exp("a.b+c/d=.c") is None  # base64, not base64url
    assert fastpath.jwt_exp("..") is None
    assert fastpath.jwt_exp(token_with('{"exp": 1700000000}')) == 1700000000.0


@settings(max_examples=500)
@given(server=st.text(max_size=20), user=st.text(max_size=20), secret=st.text(max_size=40))
def test_credentials_json_is_what_clients_parse(server: str, user: str, secret: str) -> None:
    text = fastpath.credentials_json(server, user, secret)
    assert json.loads(text) == {"ServerURL": server, "Username": user, "Secret": secret}
    assert text == json.dumps({"ServerURL": server, "Username": user, "Secret": secret})
