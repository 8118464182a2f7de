from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docker_credential_quayfed import protocol
from docker_credential_quayfed.errors import UsageError


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("quay.example.com", "quay.example.com"),
        ("  quay.example.com\n", "quay.example.com"),
        ("https://quay.example.com", "quay.example.com"),
        ("http://quay.example.com:8443/", "quay.example.com:8443"),
        ("HTTPS://Quay.Example.COM/v2/", "quay.example.com"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("quay.example.com/org/repo", "quay.example.com"),
    ],
)
def test_registry_key_normalises_what_clients_send(sent: str, key: str) -> None:
    assert protocol.registry_key(sent) == key


@pytest.mark.parametrize("sent", ["", "   \n", "https://", "a b"])
def test_registry_key_rejects_empty_or_spaced_input(sent: str) -> None:
    with pytest.raises(UsageError):
        protocol.registry_key(sent)


@given(st.text(max_size=200))
def test_registry_key_never_raises_anything_but_usage_error(text: str) -> None:
    try:
        key = protocol.registry_key(text)
    except UsageError:
        return
    assert key == key.strip().lower()
    assert "/" not in key
    assert not any(c.isspace() for c in key)


def test_credentials_json_uses_the_exact_field_names() -> None:
    encoded = protocol.Credentials("quay.example.com", "org+bot", "tok").to_json()
    assert json.loads(encoded) == {
        "ServerURL": "quay.example.com",
        "Username": "org+bot",
        "Secret": "tok",
    }


def test_parse_store_normalises_server_url() -> None:
    payload = json.dumps(
        {"ServerURL": "https://Quay.Example.com/", "Username": "org+bot", "Secret": "s"}
    )
    parsed = protocol.parse_store(payload)
    assert parsed == protocol.Credentials("quay.example.com", "org+bot", "s")


@pytest.mark.parametrize(
    "payload",
    ["not json", "[]", '{"ServerURL": "x"}', '{"ServerURL": "x", "Username": 1, "Secret": "s"}'],
)
def test_parse_store_refuses_malformed_payloads(payload: str) -> None:
    with pytest.raises(UsageError):
        protocol.parse_store(payload)


def test_list_is_a_sorted_json_object() -> None:
    assert protocol.encode_list({"b.example": "o+b", "a.example": "o+a"}) == (
        '{"a.example": "o+a", "b.example": "o+b"}'
    )


@given(st.text())
def test_json_string_is_byte_for_byte_json_dumps(text: str) -> None:
    # Any str, including lone surrogates, control characters and astral code points.
    assert protocol.json_string(text) == json.dumps(text)


def test_credentials_json_is_byte_for_byte_json_dumps() -> None:
    answer = protocol.Credentials("quay.example.com", "org+robot", 'tok\u00e9n"\\\n\U0001f600')
    expected = json.dumps(
        {"ServerURL": "quay.example.com", "Username": "org+robot", "Secret": answer.secret}
    )
    assert answer.to_json() == expected
