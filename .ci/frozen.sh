#!/usr/bin/env bash
# Builds the self-contained kubelet provider (packaging/build_frozen.py): dist/quay-credential-
# provider (a link), its folder dist/quay-credential-provider.d/ and the release tarball. The
# interpreter it freezes with (CPython, OpenSSL and zlib from Debian's sources, compiled against
# glibc 2.28 by zig cc; packaging/frozen/toolchain.sh) is built once into a cache directory that
# survives on one machine and reused: 6 to 7 minutes the first time on a shared 2-core machine,
# about 12 seconds after.
# Runs with any python3 of 3.11 or newer (PYTHON, else the one on PATH); the build fails when
# anything in the folder needs a glibc symbol version above 2.28.
set -euo pipefail
cd "$(dirname "$0")/.."
export QUAYFED_FROZEN_CACHE=${QUAYFED_FROZEN_CACHE:-/var/cache/quayfed-ci/frozen}
PYTHON=${PYTHON:-python3}

# dpkg-source unpacks Debian's source packages, patch applies CPython's fixes, readelf reads
# the glibc versions needed.
missing=()
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
command -v patch >/dev/null || missing+=(patch)
command -v readelf >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$PYTHON" packaging/build_frozen.py
