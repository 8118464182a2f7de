"""configure / unconfigure through the installed executable, on files in a temp home."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_credential_quayfed import config
from docker_credential_quayfed.sources import BY_NAME
from tests.helper_process import Result, run_helper

HOST = "quay.example.com"
ARGS = (
    HOST,
    "--robot", "quay_federation+rhbk_user",
    "--issuer", "https://rhbk.example.com/realms/quay",
    "--client-id", "quay-access",
    "--source", "password",
    "--username", "jdoe",
    "--password-env", "OIDC_PASSWORD",
)  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "containers" / "auth.json"),
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(tmp_path / "quayfed" / "config.toml"),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
    }


def configure(env: dict[str, str], *args: str) -> Result:
    return run_helper("configure", env=env, extra_args=args)


def test_configure_writes_config_and_both_client_files(home: dict[str, str]) -> None:
    result = configure(home, *ARGS)
    assert result.returncode == 0, result
    loaded = config.load(BY_NAME, Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]))
    registry = loaded.registry(HOST)
    assert registry.robot == "quay_federation+rhbk_user"
    assert registry.password_env == "OIDC_PASSWORD"
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        path = Path(home[name]) / "config.json" if name == "DOCKER_CONFIG" else Path(home[name])
        assert json.loads(path.read_text())["credHelpers"] == {HOST: "quayfed"}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "created" in result.stdout


def test_configure_is_idempotent_and_keeps_other_keys_and_mode(home: dict[str, str]) -> None:
    docker = Path(home["DOCKER_CONFIG"]) / "config.json"
    docker.parent.mkdir()
    original = {
        "auths": {"other.example.com": {"auth": "dXNlcjpwYXNz"}},
        "credHelpers": {"gcr.io": "gcloud"},
        "psFormat": "table {{.ID}}",
    }
    docker.write_text(json.dumps(original))
    os.chmod(docker, 0o640)
    assert configure(home, *ARGS).returncode == 0
    again = configure(home, *ARGS)
    assert again.returncode == 0
    assert "unchanged" in again.stdout and "updated" not in again.stdout
    written = json.loads(docker.read_text())
    assert written["auths"] == original["auths"]
    assert written["psFormat"] == original["psFormat"]
    assert written["credHelpers"] == {"gcr.io": "gcloud", HOST: "quayfed"}
    assert stat.S_IMODE(docker.stat().st_mode) == 0o640
    assert json.loads(docker.with_name("config.json.bak").read_text()) == original


def test_configure_updates_only_the_given_keys_and_keeps_comments(home: dict[str, str]) -> None:
    path = Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])
    path.parent.mkdir()
    path.write_text(
        '# our registries\n[registries."other.example.com"]\nrobot = "ab+cd"\n'
        'issuer = "https://i.example.com"\nsource = "env"\ntoken_env = "T"\n'
    )
    assert configure(home, *ARGS).returncode == 0
    assert configure(home, HOST, "--refresh-margin", "120", "--podman").returncode == 0
    text = path.read_text()
    assert text.startswith("# our registries\n")
    loaded = config.load(BY_NAME, path)
    assert loaded.registry("other.example.com").token_env == "T"
    assert loaded.registry(HOST).refresh_margin == 120
    assert loaded.registry(HOST).username == "jdoe"


def test_configure_refuses_an_unparsable_client_file(home: dict[str, str]) -> None:
    docker = Path(home["DOCKER_CONFIG"]) / "config.json"
    docker.parent.mkdir()
    docker.write_text("{not json")
    result = configure(home, *ARGS, "--docker")
    assert result.returncode == 1
    assert "not valid JSON" in result.stderr
    assert docker.read_text() == "{not json"
    assert "Traceback" not in result.stderr


def test_configure_refuses_settings_that_would_not_load(home: dict[str, str]) -> None:
    result = configure(home, HOST, "--robot", "org+bot", "--issuer", "https://i.example",
                       "--source", "env", "--token-env", "T", "--timeout", "600")  # fmt: skip
    assert result.returncode == 1
    assert "timeout must be 1 to 120" in result.stderr
    assert not Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).exists()


def test_configure_names_every_missing_flag_at_once(home: dict[str, str]) -> None:
    result = configure(home, HOST, "--source", "password")
    assert result.returncode == 2
    for flag in ("--robot", "--issuer", "--client-id", "--username",
                 "--password-env|--password-file|--password-command"):  # fmt: skip
        assert flag in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).exists()


def test_configure_with_an_unknown_source_lists_the_sources(home: dict[str, str]) -> None:
    result = configure(home, HOST, "--source", "bogus")
    assert result.returncode == 2
    assert "password" in result.stderr and "github_actions" in result.stderr


def test_configure_writes_booleans_and_lists_as_toml(home: dict[str, str]) -> None:
    result = configure(home, *ARGS, "--endpoint-hosts", "tok.example.com", "a.example.com")
    assert result.returncode == 0, result.stderr
    text = Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]).read_text()
    assert 'endpoint_hosts = ["tok.example.com", "a.example.com"]' in text


def test_configure_warns_when_helper_is_not_on_path(home: dict[str, str]) -> None:
    result = configure({**home, "PATH": "/usr/bin:/bin"}, *ARGS)
    assert result.returncode == 0
    assert "not on PATH" in result.stderr


def test_unconfigure_undoes_configure(home: dict[str, str]) -> None:
    assert configure(home, *ARGS).returncode == 0
    result = run_helper("unconfigure", env=home, extra_args=(HOST,))
    assert result.returncode == 0, result
    assert (
        HOST not in config.load(BY_NAME, Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"])).registries
    )
    docker = json.loads((Path(home["DOCKER_CONFIG"]) / "config.json").read_text())
    assert "credHelpers" not in docker
    auth = json.loads(Path(home["REGISTRY_AUTH_FILE"]).read_text())
    assert HOST not in auth.get("credHelpers", {})


def test_default_auth_file_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from docker_credential_quayfed import config_files as edit

    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert edit.containers_auth_path() == tmp_path / "cfg" / "containers" / "auth.json"
    (tmp_path / "run").mkdir()
    assert edit.containers_auth_path() == tmp_path / "run" / "containers" / "auth.json"


def test_a_fifo_as_a_client_file_is_refused_at_once(home: dict[str, str]) -> None:
    docker = Path(home["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    os.mkfifo(docker / "config.json")
    result = configure(home, *ARGS, "--docker")
    assert result.returncode == 1
    assert "is a FIFO, not a regular file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- symlinked files (a dotfiles repository) and the .bak's mode -------------------------------
def test_symlinked_client_files_and_config_stay_links_with_the_new_content(
    home: dict[str, str], tmp_path: Path
) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    links = {
        Path(home["DOCKER_CONFIG"]) / "config.json": dotfiles / "docker-config.json",
        Path(home["REGISTRY_AUTH_FILE"]): dotfiles / "auth.json",
        Path(home["DOCKER_CREDENTIAL_QUAYFED_CONFIG"]): dotfiles / "quayfed.toml",
    }
    for link, target in links.items():
        target.write_text("" if target.suffix == ".toml" else '{"auths": {}}')
        target.chmod(0o640)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    result = configure(home, *ARGS)

    assert result.returncode == 0, result
    for link, target in links.items():
        assert link.is_symlink() and link.resolve() == target, link
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        assert not link.with_name(link.name + ".bak").is_symlink()
        assert not list(dotfiles.glob(".*.part"))
    for name in ("docker-config.json", "auth.json"):
        document = json.loads((dotfiles / name).read_text())
        assert document == {"auths": {}, "credHelpers": {HOST: "quayfed"}}
    assert config.load(BY_NAME, dotfiles / "quayfed.toml").registry(HOST).robot == ARGS[2]


def bak_modes_while(action: Callable[[], object], directory: Path) -> list[int]:
    """Every mode a ``*.bak*`` file in ``directory`` shows at each audited OS call of ``action``:
    the first observation after a file is created is the mode it was created with."""
    seen: list[int] = []
    state = {"active": True, "inside": False}

    def observe(event: str, args: tuple[object, ...]) -> None:
        if not state["active"] or state["inside"] or not event.startswith(("os.", "open")):
            return
        state["inside"] = True
        try:
            for entry in os.scandir(directory):
                if ".bak" in entry.name:
                    seen.append(stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode))
        finally:
            state["inside"] = False

    sys.addaudithook(observe)  # hooks cannot be removed: this one switches itself off
    try:
        action()
    finally:
        state["active"] = False
    return seen


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_bak_has_the_originals_mode_from_its_creation(tmp_path: Path, umask: int) -> None:
    from docker_credential_quayfed import config_files

    path = tmp_path / "config.json"
    path.write_text('{"auths": {}}')
    path.chmod(0o600)
    previous = os.umask(umask)
    try:
        modes = bak_modes_while(lambda: config_files.set_cred_helper(path, HOST), tmp_path)
    finally:
        os.umask(previous)

    assert modes, "the .bak was never observed"
    assert set(modes) == {0o600}
    assert stat.S_IMODE((tmp_path / "config.json.bak").stat().st_mode) == 0o600
    assert (tmp_path / "config.json.bak").read_text() == '{"auths": {}}'
