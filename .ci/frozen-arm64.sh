#!/usr/bin/env bash
# Builds the arm64 self-contained kubelet provider on this x86_64 machine:
# dist/linux-aarch64/quay-credential-provider (a link), its folder and the release tarball
# quay-credential-provider-VERSION-linux-aarch64.tar.gz with its .sha256 and SBOM.
# packaging/frozen/toolchain.sh cross-compiles CPython, OpenSSL, zlib and libffi with zig for
# aarch64-linux-gnu.2.28 (its build runs this machine's interpreter of the same version, which
# .ci/frozen.sh builds into the same cache: the two wait for each other, never build twice);
# then that interpreter runs under qemu-user to make its venv and run PyInstaller. Installs what
# it needs: qemu-user-static (registered with binfmt_misc, F flag: it works in a chroot too),
# Debian's libc6:arm64 (the loader and libc it runs with; dpkg --add-architecture arm64) and
# binutils-aarch64-linux-gnu (strip). Idempotent; the toolchain is cached under
# $QUAYFED_FROZEN_CACHE (/var/cache/quayfed-ci/frozen).
# Runs with any python3 of 3.11 or newer (PYTHON, else the one on PATH); the build fails when
# anything in the folder needs a glibc symbol version above 2.28.
#
#     bash .ci/frozen-arm64.sh [--setup-only]
#
# --setup-only: the packages and the emulation, no build (for .ci/run's package step, so that
# its apt-get runs beside no other).
set -euo pipefail
cd "$(dirname "$0")/.."
export QUAYFED_FROZEN_CACHE=${QUAYFED_FROZEN_CACHE:-/var/cache/quayfed-ci/frozen}
PYTHON=${PYTHON:-python3}
OUTPUT=${QUAYFED_FROZEN_ARM64_OUTPUT:-dist/linux-aarch64/quay-credential-provider}
export DEBIAN_FRONTEND=noninteractive
# other jobs may be installing packages meanwhile: wait for dpkg's lock rather than fail
apt_get() { apt-get -o DPkg::Lock::Timeout=900 "$@"; }

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
fi
missing=()
for package in qemu-user-static binfmt-support libc6:arm64 zlib1g:arm64 binutils-aarch64-linux-gnu \
    dpkg-dev patch binutils; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The emulation: binfmt_misc mounted (a container may not have it), qemu-aarch64 registered.
binfmt=/proc/sys/fs/binfmt_misc
[ -f "$binfmt/status" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ ! -f "$binfmt/qemu-aarch64" ]; then
    # qemu-user-static's own registration needs binfmt-support present when it is configured
    update-binfmts --display qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64
    update-binfmts --enable qemu-aarch64
fi
head -n 1 "$binfmt/qemu-aarch64" | grep -qx enabled \
    || { echo "qemu-aarch64 is registered but disabled ($binfmt/qemu-aarch64)" >&2; exit 1; }
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" \
    || { echo "qemu-aarch64 lacks binfmt's F flag: it would not run in a chroot" >&2; exit 1; }

[ "${1:-}" = --setup-only ] && exit 0
"$PYTHON" packaging/build_frozen.py --arch aarch64 --output "$OUTPUT"
