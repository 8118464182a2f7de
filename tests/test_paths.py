"""paths reads the environment through posix (in fastpath), for speed: it must say what os.path
would."""

from __future__ import annotations

import os
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docker_credential_quayfed import fastpath, paths


@settings(max_examples=1000, deadline=None)
@given(
    path=st.text(alphabet="/.~ab", max_size=12),
    home=st.sampled_from(["/home/u", "/home/u/", "/", "//x"]),
)
def test_user_and_absolute_paths_match_os_path(path: str, home: str) -> None:
    saved = os.environ.get("HOME")
    os.environ["HOME"] = home
    try:
        assert fastpath._expand_user(path) == posixpath.expanduser(path)
        if path:
            assert fastpath._absolute(path) == posixpath.abspath(path)
    finally:
        if saved is not None:
            os.environ["HOME"] = saved


def test_locations_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)
    monkeypatch.delenv(paths.CACHE_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/u")
    assert paths.config_file() == "/home/someone/.config/docker-credential-quayfed/config.toml"
    assert paths.cache_dir() == "/var/cache/u/docker-credential-quayfed"
    monkeypatch.setenv(paths.CONFIG_ENV, "~/quay.toml")
    monkeypatch.setenv(paths.CACHE_DIR_ENV, " relative/cache ")
    assert paths.config_file() == "/home/someone/quay.toml"
    assert paths.cache_dir() == os.path.abspath("relative/cache")
