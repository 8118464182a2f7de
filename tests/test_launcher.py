"""The installed launchers start without `site` where the layout allows it, and otherwise start
the ordinary way: the wheel installed into a venv, reached through a link (pipx, uv), a
Debian-like /usr layout, a package reachable only through a .pth file, no interpreter beside
the launcher, and PYTHONPATH. Each run is a real `store` then a cache-hit `get`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = "docker-credential-quayfed"
PROVIDER = "quay-credential-provider"
PACKAGE = "docker_credential_quayfed"
REGISTRY = "launcher.quay.test"
ROBOT = "org+launcher"
VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
# What a cache hit must never load.
HEAVY = {"httpx", "jwt", "httpcore", "anyio", "tomllib", "tomli", "platformdirs", "json"}


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / VERSION / "site-packages"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the tree (a build leaves files behind)."""
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(scratch), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = scratch.glob("*.whl")
    return found


def toml_reader() -> list[str]:
    """Before Python 3.11, `store` reads the config with tomli (tomllib is 3.11's): the same
    version this interpreter has."""
    if sys.version_info >= (3, 11):
        return []
    from importlib.metadata import version

    return [f"tomli=={version('tomli')}"]


def copy_packages(source: Path, destination: Path) -> None:
    """The package, and tomli where `store` needs it, into another layout."""
    for name in (PACKAGE, *(["tomli"] if sys.version_info < (3, 11) else [])):
        shutil.copytree(source / name, destination / name)


def make_venv(root: Path, wheel: Path | None) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = Venv(root)
    if wheel is not None:
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv.bin / "python3"),
                "install",
                "-q",
                "--no-deps",
                str(wheel),
                *toml_reader(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel installed by pip into a venv (no dependencies: a cache hit needs none)."""
    return make_venv(tmp_path_factory.mktemp("venv") / "venv", wheel)


def fake_jwt(lifetime: int = 3600, age: int = 0) -> str:
    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    issued = int(time.time()) - age
    claims = {"sub": ROBOT, "iat": issued, "exp": issued + lifetime}
    return f"{segment({'alg': 'none'})}.{segment(claims)}.c2ln"


def helper_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[registries."{REGISTRY}"]\nrobot = "{ROBOT}"\nissuer = "https://127.0.0.1:1/realms/x"\n'
        'client_id = "x"\nsource = "password"\nusername = "x"\n'
        'password_env = "QUAYFED_LAUNCHER_UNUSED"\nquay_url = "https://127.0.0.1:1"\n',
        encoding="utf-8",
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "DOCKER_CREDENTIAL_QUAYFED_", "VIRTUAL_ENV"))
    }
    env["DOCKER_CREDENTIAL_QUAYFED_CONFIG"] = str(config)
    env["DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"] = str(tmp_path / "cache")
    return {**env, **extra}


@dataclass(frozen=True)
class Start:
    """A `store` then a cache-hit `get`, the second under -X importtime and -v."""

    modules: set[str]
    verbose: str

    @property
    def without_site(self) -> bool:
        return "site" not in self.modules

    def loaded_from(self, directory: Path) -> bool:
        return f"{directory}/{PACKAGE}/__pycache__/fastpath." in self.verbose

    @property
    def fastpath_alone(self) -> bool:
        """Answered by the launcher's load of fastpath: no module of the package imported."""
        return not {m for m in self.modules if m.split(".")[0] == PACKAGE}


def import_order(stderr: str) -> list[str]:
    """Module names from ``-X importtime`` lines, in the order their imports finished."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]


def cache_hit(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> Start:
    token = fake_jwt()
    stored = {"ServerURL": REGISTRY, "Username": ROBOT, "Secret": token}
    done = subprocess.run(
        [*argv, "store"],
        input=json.dumps(stored),
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    traced = {**env, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONVERBOSE": "1"}
    done = subprocess.run(
        [*argv, "get"],
        input=REGISTRY,
        capture_output=True,
        text=True,
        env=traced,
        timeout=60,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == stored
    modules = set(import_order(done.stderr))
    assert f"/{PACKAGE}/__pycache__/fastpath." in done.stderr  # what answered
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    return Start(modules, done.stderr)


def test_the_installed_launcher_starts_without_site(venv: Venv, tmp_path: Path) -> None:
    launcher = venv.bin / LAUNCHER
    assert launcher.read_bytes().startswith(b"#!/bin/sh\n")  # the installer left it alone
    start = cache_hit([str(launcher)], helper_env(tmp_path))
    assert start.without_site
    assert start.loaded_from(venv.site_packages)
    assert start.fastpath_alone


def test_a_link_on_path_starts_without_site(venv: Venv, tmp_path: Path) -> None:
    """pipx and uv put a symbolic link to the venv's launcher in ~/.local/bin."""
    links = tmp_path / "local-bin"
    links.mkdir()
    (links / LAUNCHER).symlink_to(venv.bin / LAUNCHER)
    (links / "python3").symlink_to(sys.executable)  # not the interpreter that has the package
    env = helper_env(tmp_path, PATH=f"{links}{os.pathsep}{os.environ['PATH']}")
    start = cache_hit([LAUNCHER], env)  # found on PATH, as clients run it
    assert start.without_site
    assert start.loaded_from(venv.site_packages)
    assert start.fastpath_alone


def test_a_debian_layout_starts_without_site(venv: Venv, tmp_path: Path) -> None:
    """/usr/bin/python3 and /usr/lib/python3/dist-packages, in a scratch prefix."""
    prefix = tmp_path / "usr"
    (prefix / "bin").mkdir(parents=True)
    dist_packages = prefix / "lib" / "python3" / "dist-packages"
    copy_packages(venv.site_packages, dist_packages)
    (prefix / "bin" / "python3").symlink_to(base_interpreter())
    shutil.copy2(venv.bin / LAUNCHER, prefix / "bin" / LAUNCHER)
    start = cache_hit([str(prefix / "bin" / LAUNCHER)], helper_env(tmp_path))
    assert start.without_site
    assert start.loaded_from(dist_packages)
    assert start.fastpath_alone
    # The .deb's launcher: the first line rewritten as packaging/debian/rules does, no sh.
    launcher = prefix / "bin" / LAUNCHER
    text = launcher.read_text(encoding="utf-8")
    launcher.write_text(f"#!{prefix}/bin/python3 -S\n" + text.split("\n", 1)[1])
    (tmp_path / "deb").mkdir()
    start = cache_hit([str(launcher)], helper_env(tmp_path / "deb"))
    assert start.without_site
    assert start.loaded_from(dist_packages)
    assert start.fastpath_alone


def test_an_older_installation_found_first_starts_the_ordinary_way(
    wheel: Path, tmp_path: Path
) -> None:
    """A fastpath.py without `answer_or_decline` where the launcher looks first (here a venv's
    local/lib/.../dist-packages): the launcher does not guess, it starts with `site`."""
    other = make_venv(tmp_path / "venv", wheel)
    older = other.root / "local" / "lib" / VERSION / "dist-packages" / PACKAGE
    older.mkdir(parents=True)
    (older / "fastpath.py").write_text(
        '"""an older fastpath: its launch, of other rules, is never called"""\n'
        "def launch(site, args=None):\n    raise SystemExit('an older launch ran')\n"
    )
    start = cache_hit([str(other.bin / LAUNCHER)], helper_env(tmp_path))
    assert not start.without_site
    assert start.loaded_from(other.site_packages)


def test_a_package_found_only_through_site_starts_the_ordinary_way(
    venv: Venv, tmp_path: Path
) -> None:
    """An editable install: the package is elsewhere, named by a .pth file in site-packages."""
    other = make_venv(tmp_path / "editable", None)
    elsewhere = tmp_path / "checkout"
    copy_packages(venv.site_packages, elsewhere)
    other.site_packages.mkdir(parents=True, exist_ok=True)
    (other.site_packages / "checkout.pth").write_text(f"{elsewhere}\n", encoding="utf-8")
    shutil.copy2(venv.bin / LAUNCHER, other.bin / LAUNCHER)
    start = cache_hit([str(other.bin / LAUNCHER)], helper_env(tmp_path))
    assert not start.without_site
    assert start.loaded_from(elsewhere)
    assert not start.fastpath_alone  # imported through cli, the ordinary way


def test_no_interpreter_beside_the_launcher_runs_python3_from_path(
    venv: Venv, tmp_path: Path
) -> None:
    """pip install --user: the launcher in ~/.local/bin, the interpreter elsewhere."""
    user_bin = tmp_path / "user-bin"
    user_bin.mkdir()
    shutil.copy2(venv.bin / LAUNCHER, user_bin / LAUNCHER)
    env = helper_env(tmp_path, PATH=f"{venv.bin}{os.pathsep}{os.environ['PATH']}")
    start = cache_hit([str(user_bin / LAUNCHER)], env)
    assert not start.without_site
    assert start.loaded_from(venv.site_packages)


def test_pythonpath_starts_the_ordinary_way_with_its_sitecustomize(
    venv: Venv, tmp_path: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "sitecustomize-ran"
    (hooks / "sitecustomize.py").write_text(
        f"open({str(marker)!r}, 'a').close()\n", encoding="utf-8"
    )
    start = cache_hit([str(venv.bin / LAUNCHER)], helper_env(tmp_path, PYTHONPATH=str(hooks)))
    assert not start.without_site
    assert marker.exists()


def test_a_dependency_outside_the_package_directory_is_found_through_site(
    wheel: Path, tmp_path: Path
) -> None:
    """Started without `site`, an import that nothing finds runs `site` once and looks again:
    here httpx is reachable only through a .pth file (like a venv's system site-packages)."""
    other = make_venv(tmp_path / "venv", wheel)
    dependencies = Path(sysconfig.get_paths()["purelib"])
    assert (dependencies / "httpx").is_dir()
    (other.site_packages / "dependencies.pth").write_text(f"{dependencies}\n", encoding="utf-8")
    env = helper_env(tmp_path, PYTHONVERBOSE="1")
    done = subprocess.run(
        [str(other.bin / LAUNCHER), "get"],  # no token cached: the full path, whose
        input=REGISTRY,  # issuer is a closed port
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert f"{dependencies}/httpx/__pycache__/" in done.stderr
    assert "internal error" not in done.stdout + done.stderr
    assert "ModuleNotFoundError" not in done.stderr


def test_a_get_inside_the_refresh_ahead_window_refreshes_from_the_fast_path(
    wheel: Path, tmp_path: Path
) -> None:
    """The launcher answers from fastpath alone and leaves; its detached child imports the rest
    of the package (and httpx, through a late `site`) and logs its failure: the issuer is a
    closed port."""
    other = make_venv(tmp_path / "venv", wheel)
    dependencies = Path(sysconfig.get_paths()["purelib"])
    (other.site_packages / "dependencies.pth").write_text(f"{dependencies}\n", encoding="utf-8")
    env = helper_env(tmp_path)
    # 450 s left of 3600: past 2 x refresh_margin (600 s) before expiry, not yet at 300 s
    token = fake_jwt(3600, age=3150)
    stored = {"ServerURL": REGISTRY, "Username": ROBOT, "Secret": token}
    launcher = str(other.bin / LAUNCHER)
    done = subprocess.run(
        [launcher, "store"], input=json.dumps(stored), capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    traced = {**env, "PYTHONVERBOSE": "1"}
    done = subprocess.run(
        [launcher, "get"], input=REGISTRY, capture_output=True, text=True, env=traced, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == stored
    assert f"{other.site_packages}/{PACKAGE}/__pycache__/fastpath." in done.stderr
    # The answer waits for one fork, not for imports: the rest runs in the detached child,
    # whose stderr is /dev/null.
    for module in ("__init__", "cli", "background"):
        assert f"{other.site_packages}/{PACKAGE}/__pycache__/{module}." not in done.stderr
    log = tmp_path / "cache" / "background.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "refreshing ahead failed" not in (
        log.read_text(encoding="utf-8") if log.exists() else ""
    ):
        time.sleep(0.2)
    text = log.read_text(encoding="utf-8")
    assert f"{REGISTRY}: refreshing ahead failed" in text
    assert "internal error" not in text and "ModuleNotFoundError" not in text


@pytest.mark.parametrize("stdin", ["empty", "closed"])
def test_a_get_without_input_says_so_in_one_line(venv: Venv, tmp_path: Path, stdin: str) -> None:
    done = subprocess.run(
        [str(venv.bin / LAUNCHER), "get"],
        stdin=subprocess.DEVNULL if stdin == "empty" else None,
        preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
        capture_output=True,
        text=True,
        env=helper_env(tmp_path),
        timeout=60,
    )
    assert done.returncode != 0
    said = (done.stdout + done.stderr).strip()
    assert "no registry host name on stdin" in said
    assert "Traceback" not in said and len(said.splitlines()) == 1


def test_the_kubelet_provider_starts_the_same_way(venv: Venv, tmp_path: Path) -> None:
    env = {**helper_env(tmp_path), "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        [str(venv.bin / PROVIDER)], input="{}", capture_output=True, text=True, env=env
    )
    order = import_order(done.stderr)
    assert f"{PACKAGE}.kubelet" in order
    # Without dependencies in this venv, `site` may run late (for httpx), never at the start.
    assert "site" not in order[: order.index(f"{PACKAGE}.cli")]
    assert "Traceback" not in done.stderr


def test_the_launchers_differ_only_in_their_command_line() -> None:
    main = (ROOT / "bin" / LAUNCHER).read_text(encoding="utf-8").splitlines()
    provider = (ROOT / "bin" / PROVIDER).read_text(encoding="utf-8").splitlines()
    only_main = [line for line in main if line not in provider]
    only_provider = [line for line in provider if line not in main]
    assert only_main == ["_args = None  # the command line after the program's name: sys.argv[1:]"]
    assert only_provider[-1] == '_args = ["kubelet", *sys.argv[1:]]'
    assert all(line.startswith("# ") for line in only_provider[:-1])  # why, in comments


def base_interpreter() -> str:
    """The real interpreter behind this (maybe venv) one."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_zipapp = load_script(ROOT / "packaging" / "build_zipapp.py")
    try:
        resolver = build_zipapp.find_oldest_python()
    except build_zipapp.BuildError as exc:
        pytest.skip(str(exc))
    output = tmp_path_factory.mktemp("zipapp") / LAUNCHER
    assert build_zipapp.main(["--output", str(output), "--resolve-with", resolver]) == 0
    return output


def test_the_zipapp_starts_its_unpacked_copy_from_sh(zipapp: Path, tmp_path: Path) -> None:
    """Run as clients run it (its first line is sh): the first run unpacks, a later one
    imports from the unpacked copy with no site, zipimport or runpy."""
    assert zipapp.read_bytes().startswith(b"#!/bin/sh\n")
    here = tmp_path / "working-directory"
    here.mkdir()
    (here / "json.py").write_text("raise SystemExit('imported from the working directory')\n")
    env = helper_env(
        tmp_path,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
    )
    subprocess.run([str(zipapp), "version"], env=env, cwd=here, check=True, capture_output=True)
    start = cache_hit([str(zipapp)], env, cwd=here)
    assert start.without_site
    assert not {"runpy", "zipfile"} & start.modules
    (root,) = (tmp_path / "xdg" / LAUNCHER).glob("zipapp-*")
    assert start.loaded_from(root)
    ordinary = cache_hit([str(zipapp)], {**env, "PYTHONPATH": str(tmp_path / "nothing")}, cwd=here)
    assert not ordinary.without_site
    assert "runpy" in ordinary.modules
