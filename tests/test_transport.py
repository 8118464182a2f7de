"""Unit tests of the transport's pure pieces."""

from __future__ import annotations

import pytest

from docker_credential_quayfed import transport


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("https://t.example/token", {"audience": "quay"}, "https://t.example/token?audience=quay"),
        (
            "https://t.example/token?api-version=2.0",
            {"audience": "quay.example.com"},
            "https://t.example/token?api-version=2.0&audience=quay.example.com",
        ),
        (
            "https://q.example/v2/auth?scope=x",
            {"service": "a b&c"},
            "https://q.example/v2/auth?scope=x&service=a+b%26c",
        ),
        ("https://t.example/token?", {"a": "1"}, "https://t.example/token?a=1"),
        ("https://t.example/token?keep=1", {}, "https://t.example/token?keep=1"),
    ],
)
def test_with_query_keeps_the_urls_own_query(
    url: str, params: dict[str, str], expected: str
) -> None:
    assert transport.with_query(url, params) == expected
