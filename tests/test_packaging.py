"""Packaging stays in step with the code: man page, versions, zipapp, container entrypoint.

packaging/ci.sh runs the slower checks (wheel installs, three Pythons, rpmlint, hadolint).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import docker_credential_quayfed

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
VERSION = docker_credential_quayfed.__version__


def load(name: str) -> ModuleType:
    """A script from packaging/ (not a package: the name would shadow PyPI's `packaging`)."""
    spec = importlib.util.spec_from_file_location(f"quayfed_packaging_{name}", PACKAGING / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_zipapp_builds_and_answers_a_cache_hit(tmp_path: Path) -> None:
    build_zipapp = load("build_zipapp.py")
    smoke = load("smoke.py")
    try:
        resolver = build_zipapp.find_oldest_python()
    except build_zipapp.BuildError as exc:
        pytest.skip(str(exc))
    output = tmp_path / "docker-credential-quayfed"
    assert build_zipapp.main(["--output", str(output), "--resolve-with", resolver]) == 0
    assert output.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.stat(output).st_mode & 0o777 == 0o755
    done = smoke.check_helper([sys.executable, "-I", "-S", str(output)], VERSION)
    assert "store + cache-hit get" in done
    assert "CA bundle loads" in smoke.check_zipapp_imports(sys.executable, output)


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
