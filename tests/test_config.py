from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import pytest

from docker_credential_quayfed import broker, config
from docker_credential_quayfed.errors import ConfigError, NotConfiguredError
from docker_credential_quayfed.sources import BY_NAME, SOURCES
from tests.support.requests import request_here

GOOD = """
[registries."quay.example.com"]
robot = "quay_federation+rhbk_user"
issuer = "https://rhbk.example.com/realms/quay"
client_id = "quay-access"
source = "password"
username = "jdoe"
password_env = "OIDC_PASSWORD"

[registries."127.0.0.1:5000"]
robot = "org+ci"
issuer = "https://kube.example.com"
source = "file"
token_file = "/var/run/secrets/tokens/quay"
refresh_margin = 60
on_failure = "error"
timeout = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    loaded = config.load(BY_NAME, write(tmp_path, GOOD))
    quay = loaded.registry("quay.example.com")
    assert quay.robot == "quay_federation+rhbk_user"
    assert quay.scope == "openid"
    assert quay.token_type == "id_token"
    assert quay.refresh_margin == 300
    assert quay.on_failure == "anonymous"
    assert quay.quay_base_url == "https://quay.example.com"
    local = loaded.registry("127.0.0.1:5000")
    assert local.refresh_margin == 60
    assert local.timeout == 10.0
    assert local.on_failure == "error"


def test_identity_differs_by_user_and_robot(tmp_path: Path) -> None:
    loaded = config.load(BY_NAME, write(tmp_path, GOOD))
    a = loaded.registry("quay.example.com")
    b = config.load(BY_NAME, write(tmp_path, GOOD.replace('"jdoe"', '"other"'))).registry(
        "quay.example.com"
    )
    assert broker.key_for(a, request_here()) != broker.key_for(b, request_here())


def test_unconfigured_registry_is_named(tmp_path: Path) -> None:
    loaded = config.load(BY_NAME, write(tmp_path, GOOD))
    with pytest.raises(NotConfiguredError, match=r"other\.example\.com"):
        loaded.registry("other.example.com")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[registries", "[[registries"), "not valid TOML"),
        (('source = "password"', 'source = "magic"'), "not a known token source"),
        (('robot = "quay_federation+rhbk_user"\n', ""), "missing robot"),
        (('username = "jdoe"\n', ""), "missing username"),
        (("refresh_margin = 60", 'refresh_margin = "60"'), "refresh_margin must be a number"),
        (
            ("refresh_margin = 60", "refresh_margin = -1"),
            "refresh_margin must be 0 to 86400 seconds",
        ),
        (('password_env = "OIDC_PASSWORD"', 'pasword_env = "X"'), "did you mean 'password_env'"),
        (
            ('password_env = "OIDC_PASSWORD"\n', ""),
            "has none of password_env, password_file, password_command",
        ),
        (('"quay_federation+rhbk_user"', '"rhbk_user"'), "not a full robot name"),
        (('"quay.example.com"]', '"https://quay.example.com"]'), "not in the form clients send"),
        (('on_failure = "error"', 'on_failure = "panic"'), "on_failure"),
        (('issuer = "https://kube.example.com"', 'issuer = "kube.example.com"'), "not a URL"),
        (("timeout = 10", "timeout = 600"), "timeout must be"),
    ],
)
def test_broken_files_get_one_line_naming_file_key_and_fix(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        config.load(BY_NAME, path)
    message = caught.value.message
    assert expected in message
    assert str(path) in message
    assert "\n" not in message
    assert "; " in message  # the fix follows the problem


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration file"):
        config.load(BY_NAME, tmp_path / "absent.toml")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe[registries]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(BY_NAME, path)


def test_paths_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "c.toml"))
    monkeypatch.setenv(config.CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert config.default_config_path() == tmp_path / "c.toml"
    assert config.default_cache_dir() == tmp_path / "cache"


def test_default_paths_use_platform_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.delenv(config.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cch"))
    assert config.default_config_path() == (
        tmp_path / "cfg" / "docker-credential-quayfed" / "config.toml"
    )
    assert config.default_cache_dir() == tmp_path / "cch" / "docker-credential-quayfed"


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[registries."a.example.com"]\nsource = "password"\nrobot = "x"\n'
        '[registries."b.example.com"]\nrobot = "ab+cd"\nissuer = "https://i"\nsource = "bogus"\n'
    )
    with pytest.raises(ConfigError) as caught:
        config.load(BY_NAME, path)
    message = caught.value.message
    for expected in ("is missing issuer", "missing client_id", "not a full robot name",
                     "'bogus' is not a known token source"):  # fmt: skip
        assert expected in message
    assert "problems:" in message and "\n" not in message


def test_default_port_table_hints_the_name_clients_send(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[registries."Quay.io:443"]\nrobot = "org+robot"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(BY_NAME, path)
    assert '[registries."quay.io"]' in caught.value.message


def test_a_directory_as_the_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(BY_NAME, tmp_path)
    assert "is a directory" in caught.value.message


def test_settings_describe_every_field_in_order() -> None:
    names = [f.name for f in fields(config.RegistryConfig) if f.name not in ("key", "config_file")]
    assert [setting.name for setting in config.SETTINGS] == names


def test_every_source_setting_is_a_known_setting() -> None:
    known = {setting.name for setting in config.SETTINGS}
    for source in SOURCES:
        assert set(source.settings()) <= known, source.name
        assert set(source.secret_keys) <= set(source.settings()), source.name
        assert not source.identity_key or source.identity_key in known


def test_readme_tables_are_generated_from_the_declarations() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "docs" / "reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    readme = (root / "README.md").read_text(encoding="utf-8")
    for source in SOURCES:
        assert f"| `{source.name}` |" in readme


def test_a_config_too_slow_to_parse_is_refused_in_one_line(tmp_path: Path) -> None:
    """tomllib is quadratic in a very deeply dotted key (found by the 10,000-case fuzz run): a
    1 MB file of one such key would hold every pull up for minutes."""
    path = tmp_path / "config.toml"
    path.write_bytes((b"1T." * 113534)[:1000000])
    with pytest.raises(ConfigError) as raised:
        config.load(BY_NAME, path)
    assert "took over 2s to parse" in raised.value.message
    assert "\n" not in raised.value.message


def test_parsing_sets_aside_and_restores_a_callers_timer(tmp_path: Path) -> None:
    import signal

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        path = tmp_path / "config.toml"
        path.write_text('[registries."quay.example.com"]\nrobot = "ab+cd"\n')
        with pytest.raises(ConfigError):  # incomplete table: parsed, then refused
            config.load(BY_NAME, path)
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 25 < left <= 30
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        time.sleep(0.2)
        assert fired == [signal.SIGALRM], "the caller's handler is back in place"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
