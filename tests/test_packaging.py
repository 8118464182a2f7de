"""Packaging stays in step with the code: man page, versions, zipapp, container entrypoint.

packaging/ci.sh runs the slower checks (wheel installs, three Pythons, rpmlint, hadolint).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import docker_credential_quayfed
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
VERSION = docker_credential_quayfed.__version__


def load(name: str) -> ModuleType:
    """A script from packaging/ (not a package: the name would shadow PyPI's `packaging`)."""
    return load_script(PACKAGING / name)


def test_man_page_is_generated_from_the_current_parser() -> None:
    make_manpage = load("make_manpage.py")
    committed = (PACKAGING / "docker-credential-quayfed.1").read_text(encoding="utf-8")
    assert make_manpage.render() == committed, "run: python packaging/make_manpage.py"


def test_man_page_has_the_sections_from_the_help_text() -> None:
    page = (PACKAGING / "docker-credential-quayfed.1").read_text(encoding="utf-8")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "ENVIRONMENT"):
        assert f"\n.SH {heading}\n" in page or f'\n.SH "{heading}"\n' in page
    assert '.SH "EXIT STATUS"' in page
    assert "DOCKER_CREDENTIAL_QUAYFED_CONFIG" in page


def test_rpm_spec_version_is_the_package_version() -> None:
    spec = (PACKAGING / "rpm" / "docker-credential-quayfed.spec").read_text(encoding="utf-8")
    match = re.search(r"^Version:\s*(\S+)$", spec, re.M)
    assert match is not None
    assert match.group(1) == VERSION, "set Version: in the spec to __version__"
    assert re.search(rf"^\* .* - {re.escape(VERSION)}-\d+$", spec, re.M), "add a %changelog entry"


def test_changelog_has_an_entry_for_the_package_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.M)
    assert re.search(rf"^\[{re.escape(VERSION)}\]: https://", changelog, re.M)


def test_containerfile_does_not_repeat_the_version() -> None:
    containerfile = (PACKAGING / "Containerfile").read_text(encoding="utf-8")
    assert VERSION not in containerfile
    assert 'org.opencontainers.image.version="${VERSION}"' in containerfile


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/docker-credential-quayfed built once for this module, in a temporary directory."""
    build_zipapp = load("build_zipapp.py")
    try:
        resolver = build_zipapp.find_oldest_python()
    except build_zipapp.BuildError as exc:
        pytest.skip(str(exc))
    output = tmp_path_factory.mktemp("zipapp") / "docker-credential-quayfed"
    assert build_zipapp.main(["--output", str(output), "--resolve-with", resolver]) == 0
    return output


def run_zipapp(
    zipapp: Path, cache_home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -I -S -v ZIPAPP ARGS`` with XDG_CACHE_HOME=cache_home; must exit 0."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-v", str(zipapp), *args],
        env={**os.environ, "XDG_CACHE_HOME": str(cache_home), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def imported_from_zip(result: subprocess.CompletedProcess[str], module: str) -> bool:
    """Whether ``python -v`` says ``module`` came from the archive (3.9 and 3.10+ word it apart)."""
    return (
        f"import '{module}' # <zipimporter object" in result.stderr  # 3.10+
        or f"import {module} # loaded from Zip" in result.stderr  # 3.9
    )


def loaded_from_zip(result: subprocess.CompletedProcess[str]) -> bool:
    return imported_from_zip(result, "docker_credential_quayfed.cli")


def unpacked_now(result: subprocess.CompletedProcess[str]) -> bool:
    """The first-run unpacking module ran (its name only, in any version's -v wording)."""
    return "import '_quayfed_unpack'" in result.stderr or "import _quayfed_unpack " in result.stderr


def test_zipapp_builds_and_answers_a_cache_hit(zipapp: Path, tmp_path: Path) -> None:
    smoke = load("smoke.py")
    assert zipapp.read_bytes().startswith(b"#!/bin/sh\n")
    assert os.stat(zipapp).st_mode & 0o777 == 0o755
    helper = [sys.executable, "-I", "-S", str(zipapp)]
    done = smoke.check_helper(helper, VERSION, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert "store + cache-hit get" in done
    assert "CA bundle loads" in smoke.check_zipapp_imports(sys.executable, zipapp)


def test_zipapp_leaves_the_test_doubles_out(zipapp: Path) -> None:
    names = zipfile.ZipFile(zipapp).namelist()
    assert any(name.startswith("docker_credential_quayfed/") for name in names)
    assert not [name for name in names if "quay_sandbox" in name or "emulator" in name]


def test_zipapp_build_id_is_a_hash_of_the_payload(zipapp: Path) -> None:
    smoke = load("smoke.py")
    build_id = smoke.build_id(zipapp)
    assert re.fullmatch(r"[0-9a-f]{16}", build_id)
    main = zipfile.ZipFile(zipapp).read("__main__.py").decode()
    # The entry point imports os and sys, nothing else, at module level.
    imports = set(re.findall(r"^ *(?:import|from) (\S+)", main, re.M))
    assert imports == {"os", "sys", "_quayfed_unpack", "docker_credential_quayfed.cli"}


def test_zipapp_unpacks_on_first_run_and_later_runs_import_from_there(
    zipapp: Path, tmp_path: Path
) -> None:
    smoke = load("smoke.py")
    cache_home = tmp_path / "xdg"
    first = run_zipapp(zipapp, cache_home, "version")
    assert unpacked_now(first)
    # unpacked, compiled, 0700; a later run loads the pycs and imports no unpacking machinery
    assert "a later run loads" in smoke.check_unpacked(sys.executable, zipapp, cache_home)
    root = smoke.unpacked_root(zipapp, cache_home)
    for directory in (root, root / "docker_credential_quayfed" / "__pycache__"):
        assert os.stat(directory).st_mode & 0o777 == 0o700
    assert (root / "certifi" / "cacert.pem").is_file()
    assert not (root / "__main__.py").exists()


def test_zipapp_without_a_usable_cache_directory_runs_from_the_zip(
    zipapp: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # XDG_CACHE_HOME and HOME under a regular file: nothing can be created there
    result = run_zipapp(zipapp, a_file / "xdg", "version", env={"HOME": str(a_file)})
    assert result.stdout.strip() == f"docker-credential-quayfed {VERSION}"
    assert loaded_from_zip(result)
    # a relative XDG_CACHE_HOME and HOME: not used
    result = run_zipapp(zipapp, Path("relative"), "version", env={"HOME": "relative"})
    assert loaded_from_zip(result)
    assert not (Path.cwd() / "relative").exists()


def test_zipapp_refuses_a_symlinked_build_directory(zipapp: Path, tmp_path: Path) -> None:
    smoke = load("smoke.py")
    cache_home = tmp_path / "xdg"
    root = smoke.unpacked_root(zipapp, cache_home)
    root.parent.mkdir(parents=True, mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root.symlink_to(elsewhere)
    assert loaded_from_zip(run_zipapp(zipapp, cache_home, "version"))
    assert root.is_symlink()
    assert list(elsewhere.iterdir()) == []


def test_zipapp_refuses_a_symlinked_parent_directory(zipapp: Path, tmp_path: Path) -> None:
    cache_home = tmp_path / "xdg"
    cache_home.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (cache_home / "docker-credential-quayfed").symlink_to(elsewhere)
    assert loaded_from_zip(run_zipapp(zipapp, cache_home, "version"))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_zipapp_refuses_a_build_directory_of_another_user(zipapp: Path, tmp_path: Path) -> None:
    smoke = load("smoke.py")
    cache_home = tmp_path / "xdg"
    run_zipapp(zipapp, cache_home, "version")
    root = smoke.unpacked_root(zipapp, cache_home)
    os.chown(root, 65534, 65534)
    assert loaded_from_zip(run_zipapp(zipapp, cache_home, "version"))
    assert os.stat(root).st_uid == 65534  # left as it is


def test_zipapp_extracts_again_over_a_partial_or_open_directory(
    zipapp: Path, tmp_path: Path
) -> None:
    smoke = load("smoke.py")
    cache_home = tmp_path / "xdg"
    run_zipapp(zipapp, cache_home, "version")
    root = smoke.unpacked_root(zipapp, cache_home)
    cli = root / "docker_credential_quayfed" / "cli.py"
    # an interrupted copy: no .complete, a module missing
    (root / ".complete").unlink()
    cli.unlink()
    shutil.rmtree(root / "httpx")
    result = run_zipapp(zipapp, cache_home, "version")
    assert unpacked_now(result)
    assert (root / ".complete").is_file() and cli.is_file() and (root / "httpx").is_dir()
    # files deleted under a complete copy: this run falls back to the zip, the next extracts
    cli.unlink()
    result = run_zipapp(zipapp, cache_home, "version")
    assert loaded_from_zip(result)
    assert not (root / ".complete").exists()
    run_zipapp(zipapp, cache_home, "version")
    assert (root / ".complete").is_file() and cli.is_file()
    assert "a later run loads" in smoke.check_unpacked(sys.executable, zipapp, cache_home)
    # open to the group: discarded and extracted again, private
    os.chmod(root, 0o770)
    (root / "planted.py").write_text("")
    run_zipapp(zipapp, cache_home, "version")
    assert os.stat(root).st_mode & 0o777 == 0o700
    assert not (root / "planted.py").exists()


def test_zipapp_leaves_other_builds_and_removes_stale_debris(zipapp: Path, tmp_path: Path) -> None:
    cache_home = tmp_path / "xdg"
    parent = cache_home / "docker-credential-quayfed"
    old_build = parent / "zipapp-0123456789abcdef"
    stale, fresh = parent / ".unpack-stale", parent / ".discard-fresh"
    for directory in (old_build, stale, fresh):
        directory.mkdir(parents=True, mode=0o700)
    parent.chmod(0o700)
    long_ago = time.time() - 2 * 3600
    os.utime(stale, (long_ago, long_ago))
    run_zipapp(zipapp, cache_home, "version")
    assert old_build.is_dir() and fresh.is_dir()
    assert not stale.exists()


def test_zipapp_concurrent_first_runs(zipapp: Path, tmp_path: Path) -> None:
    smoke = load("smoke.py")
    config = tmp_path / "config.toml"
    config.write_text(smoke.CONFIG, encoding="utf-8")
    env = {
        **os.environ,
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "tokens"),
        "XDG_CACHE_HOME": str(tmp_path / "unusable" / "x"),
    }
    (tmp_path / "unusable").write_text("")
    helper = [sys.executable, "-I", "-S", str(zipapp)]
    stored = {"ServerURL": smoke.REGISTRY, "Username": smoke.ROBOT, "Secret": smoke.fake_jwt()}
    smoke.run([*helper, "store"], env, json.dumps(stored))  # from the zip: nothing unpacked
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    processes = [
        subprocess.Popen(
            [*helper, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(16)
    ]
    for process in processes:
        out, err = process.communicate(smoke.REGISTRY + "\n", timeout=120)
        assert process.returncode == 0, err
        assert json.loads(out) == stored
    parent = tmp_path / "xdg" / "docker-credential-quayfed"
    assert [p.name for p in parent.iterdir()] == [
        smoke.unpacked_root(zipapp, tmp_path / "xdg").name
    ]
    assert "a later run loads" in smoke.check_unpacked(sys.executable, zipapp, tmp_path / "xdg")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_container_entrypoint_configures_the_helper_and_runs_the_command(tmp_path: Path) -> None:
    helper = tmp_path / "helper"
    helper.write_text(
        f'#!/bin/sh\nexec {sys.executable} -m docker_credential_quayfed "$@"\n', encoding="utf-8"
    )
    helper.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "containers" / "auth.json"),
        "QUAYFED_HELPER": str(helper),
        "QUAYFED_REGISTRY": "quay.example.com, quay2.example.com:8443",
        "QUAYFED_ROBOT": "org+bot",
        "QUAYFED_ISSUER": "https://idp.example.com/realms/quay",
        "QUAYFED_SOURCE": "file",
        "QUAYFED_TOKEN_FILE": "/var/run/secrets/tokens/quay",
        "QUAYFED_REFRESH_MARGIN": "120",
    }
    result = subprocess.run(
        ["bash", str(PACKAGING / "container" / "entrypoint.sh"), "printf", "%s|", "ran", "it"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran|it|"
    config = (tmp_path / "config" / "docker-credential-quayfed" / "config.toml").read_text()
    assert '[registries."quay.example.com"]' in config
    assert '[registries."quay2.example.com:8443"]' in config
    assert 'token_file = "/var/run/secrets/tokens/quay"' in config
    assert "refresh_margin = 120" in config
    auth = (tmp_path / "containers" / "auth.json").read_text()
    assert '"quay.example.com": "quayfed"' in auth
    assert '"quay2.example.com:8443": "quayfed"' in auth


COMPLETIONS = PACKAGING / "completions"
BASH_COMPLETION = COMPLETIONS / "bash" / "docker-credential-quayfed"
FISH_COMPLETION = COMPLETIONS / "fish" / "docker-credential-quayfed.fish"
ZSH_COMPLETION = COMPLETIONS / "zsh" / "_docker-credential-quayfed"
# Sources the script, finds the function bash registered for the command, and prints what it
# offers for the words given (the last one is the word being completed).
BASH_COMPLETE = r"""
source "$1"; shift
function=$(complete -p docker-credential-quayfed | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
"$function" docker-credential-quayfed "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    from docker_credential_quayfed.commands import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no commands")


def long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if "--" in flag}


def test_completions_are_generated_from_the_current_parser() -> None:
    pytest.importorskip("shtab", reason="shtab comes with the dev extra")
    make_completions = load("make_completions.py")
    for shell, name in make_completions.SCRIPTS.items():
        committed = (COMPLETIONS / name).read_text(encoding="utf-8")
        assert make_completions.render(shell) == committed, (
            "run: python packaging/make_completions.py"
        )


def test_wheel_installs_the_committed_completions() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for directory, script in (
        ("share/bash-completion/completions", BASH_COMPLETION),
        ("share/zsh/site-functions", ZSH_COMPLETION),
        ("share/fish/vendor_completions.d", FISH_COMPLETION),
    ):
        assert f'"{directory}" = ["{script.relative_to(ROOT)}"]' in pyproject


def complete_in_bash(*words: str) -> set[str]:
    result = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            BASH_COMPLETE,
            "bash",
            str(BASH_COMPLETION),
            *words,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    return set(result.stdout.split())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_the_commands_and_their_flags() -> None:
    commands = command_parsers()
    assert {"get", "configure", "doctor", "token"} <= set(commands)
    assert complete_in_bash("docker-credential-quayfed", "") == set(commands)
    assert complete_in_bash("docker-credential-quayfed", "conf") == {"configure"}
    configure_flags = long_flags(commands["configure"])
    assert {"--robot", "--issuer", "--source", "--podman"} <= configure_flags
    offered = complete_in_bash("docker-credential-quayfed", "configure", "--")
    assert offered == configure_flags
    sources = complete_in_bash("docker-credential-quayfed", "configure", "--source", "")
    assert {"password", "client_credentials", "file", "env"} <= sources


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish (apt-get install fish)")
def test_fish_completion_offers_the_commands_and_their_flags() -> None:
    def complete(line: str) -> set[str]:
        script = f"source {FISH_COMPLETION}; complete -C '{line}'"
        result = subprocess.run(
            ["fish", "--no-config", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0 and not result.stderr, result.stderr
        return {line.split("\t")[0] for line in result.stdout.splitlines()}

    commands = command_parsers()
    assert complete("docker-credential-quayfed ") == set(commands)
    assert long_flags(commands["configure"]) <= complete("docker-credential-quayfed configure --")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh (apt-get install zsh)")
def test_zsh_completion_parses_and_names_the_command() -> None:
    result = subprocess.run(
        ["zsh", "-n", str(ZSH_COMPLETION)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    script = ZSH_COMPLETION.read_text(encoding="utf-8")
    assert script.startswith("#compdef docker-credential-quayfed\n")
    assert all(f"{name}:" in script for name in command_parsers())


def requirement_floors(requirements: list[str]) -> dict[str, str]:
    """{"httpx": "0.23.3", ...} for each "name>=version" (or "name==version") requirement."""
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(
            r"([A-Za-z0-9_.-]+)\s*(?:>=|==)\s*([0-9][^;,\s]*)\s*(?:;.*)?", requirement
        )
        assert match is not None, f"no lower bound in {requirement!r}"
        floors[match.group(1).lower()] = match.group(2)
    return floors


def test_pyproject_lower_bounds_are_the_versions_ci_tests() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = (ROOT / ".ci" / "minimum-versions.txt").read_text(encoding="utf-8").splitlines()
    tested = requirement_floors([line for line in lines if line and not line.startswith("#")])
    assert requirement_floors(project["dependencies"]) == tested
    # The Debian package depends on Debian's packages of the same versions or newer.
    control = (PACKAGING / "debian" / "control").read_text(encoding="utf-8")
    debian_names = {"httpx": "python3-httpx", "pyjwt": "python3-jwt"}
    for name in ("httpx", "pyjwt", "platformdirs"):
        package = debian_names.get(name, f"python3-{name}")
        assert f"{package} (>= {tested[name]})" in control, package


def test_debian_changelog_version_is_the_package_version() -> None:
    changelog = (PACKAGING / "debian" / "changelog").read_text(encoding="utf-8")
    match = re.match(r"docker-credential-quayfed \(([^)-]+)-(\d+)\) ", changelog)
    assert match is not None
    assert match.group(1) == VERSION, "add a debian/changelog entry for __version__ (dch -v)"
