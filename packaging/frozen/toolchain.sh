#!/usr/bin/env bash
# Builds the Python that packaging/build_frozen.py freezes the kubelet provider with: CPython
# 3.11 with OpenSSL, zlib and libffi linked statically into its extension modules, from
# Debian's source packages (pinned below), compiled by `zig cc` (PyPI's ziglang) against glibc
# 2.28's symbol versions, so that nothing it makes needs a newer glibc (RHEL 8 and 9, RHCOS,
# Amazon Linux 2023, Debian 10 and later); the build machine's headers and libraries are not
# used.
#
#     PYTHON=python3 packaging/frozen/toolchain.sh CACHE_DIR [ARCH]
#
# ARCH (x86_64 or aarch64; default: this machine's) is the machine the interpreter is for. For
# another machine's, CPython is cross-compiled (its build runs this machine's interpreter, the
# one this script builds for it, as --with-build-python) and the result is run to check it,
# which needs that machine's emulation registered with binfmt_misc (qemu-user-static) and its
# dynamic loader (libc6:arm64 for aarch64).
#
# Idempotent: what was built from the same recipe is kept under CACHE_DIR and reused (the
# interpreter keyed by this script, each library by its own recipe), what an older recipe
# built is removed; builds for the same machine wait for each other (flock). Progress goes to
# stderr; the last line of stdout is the interpreter's path.
# Needs apt-get, dpkg-source (dpkg-dev), patch, make, perl and flock.
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(...) fails the build too

CACHE=${1:?usage: toolchain.sh CACHE_DIR [ARCH]}
PYTHON=${PYTHON:-python3}  # any Python 3 to install ziglang with
# The oldest glibc whose symbol versions the interpreter and its libraries may need.
GLIBC=2.28
ZIGLANG=0.14.1
# Debian source packages (bookworm's main archive): name=version
CPYTHON_SOURCE=python3.11=3.11.2-6+deb12u8
OPENSSL_SOURCE=openssl=3.0.20-1~deb12u2
ZLIB_SOURCE=zlib=1:1.2.13.dfsg-1
LIBFFI_SOURCE=libffi=3.4.4-1
DEBIAN_MIRROR=${QUAYFED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
# From Debian's python3.11 patches: only upstream's fixes (the crash and CVE backports that
# follow this one in debian/patches/series), none of Debian's own layout (multiarch,
# dist-packages, sysconfig schemes), which a relocatable interpreter must not have.
CPYTHON_FIRST_FIX_PATCH=shutdown-deadlock.diff

build_arch=$(uname -m)
arch=${2:-$build_arch}
case $arch in
    x86_64 | aarch64) ;;
    *) printf 'toolchain: no recipe for %s (x86_64, aarch64)\n' "$arch" >&2; exit 2 ;;
esac
key=$(cat "$0" | sha256sum | cut -c1-16)
prefix="$CACHE/python-$arch-$key"
log() { printf 'toolchain: %s\n' "$*" >&2; }

kept() { [ -x "$prefix/bin/python3.11" ] && [ -f "$prefix/.complete" ]; }
if kept; then
    log "kept $prefix (built from the same pins)"
    echo "$prefix/bin/python3.11"
    exit 0
fi
mkdir -p "$CACHE"
# A cross build runs this machine's interpreter of the same version (built first, or kept).
cross=()
if [ "$arch" != "$build_arch" ]; then
    build_python=$(bash "$0" "$CACHE" "$build_arch" | tail -n 1)
    cross=(--build="$build_arch-pc-linux-gnu" --host="$arch-linux-gnu")
fi
exec 9>"$CACHE/.lock-$arch"
flock 9
if kept; then
    log "kept $prefix (built meanwhile)"
    echo "$prefix/bin/python3.11"
    exit 0
fi
started=$SECONDS
work=$(mktemp -d "$CACHE/build-XXXXXX")
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)
quietly() {  # quietly NAME COMMAND...: its output in $work/NAME.log, the end of it on failure
    local name=$1
    shift
    "$@" >>"$work/$name.log" 2>&1 || { tail -40 "$work/$name.log" >&2; log "$name failed"; exit 1; }
}

# zig: its cc links against stub libraries carrying exactly the symbol versions of the glibc
# it is told, so nothing newer can slip in; its own cache stays under CACHE.
zigvenv="$CACHE/ziglang-$ZIGLANG"
if [ ! -x "$zigvenv/bin/python" ] || ! "$zigvenv/bin/python" -m ziglang version >/dev/null 2>&1; then
    log "ziglang $ZIGLANG from PyPI"
    rm -rf "$zigvenv"
    "$PYTHON" -m venv "$zigvenv"
    "$zigvenv/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG" >&2
fi
zig=$("$zigvenv/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
export ZIG_GLOBAL_CACHE_DIR="$CACHE/zig-cache" ZIG_LOCAL_CACHE_DIR="$CACHE/zig-cache"
mkdir -p "$work/bin"
# no UBSan traps (zig's default without -O), no debug info (PyInstaller strips it); __DATE__
# comes from SOURCE_DATE_EPOCH, which zig's -Werror=date-time does not know about
cc_flags="-target $arch-linux-gnu.$GLIBC -fno-sanitize=undefined -g0 -Wno-error=date-time"
cat >"$work/bin/cc" <<CC
#!/bin/sh
# zig's linker knows -soname, not its short form -h (CPython's link of libpython)
for arg; do
    shift
    case \$arg in -Wl,-h*) arg="-Wl,-soname,\${arg#-Wl,-h}" ;; esac
    set -- "\$@" "\$arg"
done
exec '$zig' cc $cc_flags "\$@"
CC
for tool in ar ranlib; do
    printf '#!/bin/sh\nexec %s %s "$@"\n' "'$zig'" "$tool" >"$work/bin/$tool"
done
chmod +x "$work/bin/"*
export CC="$work/bin/cc" AR="$work/bin/ar" RANLIB="$work/bin/ranlib" SOURCE_DATE_EPOCH=315532800

# Sources: apt-get source with a private list of Debian's deb-src lines (the machine's apt
# configuration is left alone); apt checks each file against the signed Sources index.
log "Debian sources: $CPYTHON_SOURCE $OPENSSL_SOURCE $ZLIB_SOURCE $LIBFFI_SOURCE"
apt_dir="$CACHE/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$CACHE/sources"
printf 'deb-src %s %s main\n' "$DEBIAN_MIRROR" "$DEBIAN_SUITE" >"$apt_dir/sources.list"
apt_options=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o APT::Sandbox::User=root
)
fetch_source() {  # fetch_source NAME=VERSION: its files in $CACHE/sources (kept once fetched)
    local name=${1%%=*} version=${1#*=}
    version=${version#*:}
    if ! ls "$apt_dir/lists/"*Sources* >/dev/null 2>&1; then
        apt-get "${apt_options[@]}" update -qq >&2
    fi
    if [ ! -f "$CACHE/sources/${name}_$version.dsc" ]; then
        (cd "$CACHE/sources" && apt-get "${apt_options[@]}" source --download-only -qq "$1") >&2 \
            || (apt-get "${apt_options[@]}" update -qq >&2 \
                && cd "$CACHE/sources" && apt-get "${apt_options[@]}" source --download-only -qq "$1" >&2) \
            || { log "cannot fetch the source package $1: is $DEBIAN_SUITE still at that version? (apt-cache showsrc ${name})"; exit 1; }
    fi
    echo "$CACHE/sources/${name}_$version.dsc"
}
unpack() {  # unpack DSC DIR [--skip-patches]: the source, Debian's patches applied unless told
    quietly sources dpkg-source -x ${3:+--skip-patches} "$1" "$2"
}
unpack "$(fetch_source "$CPYTHON_SOURCE")" "$work/cpython" --skip-patches
(
    cd "$work/cpython"
    for patch in $(sed -n "/^$CPYTHON_FIRST_FIX_PATCH\$/,\$p" debian/patches/series); do
        patch -p1 -s --no-backup-if-mismatch <"debian/patches/$patch"
    done
)
# Two edits of the source, each checked to apply once:
# - setup.py adds the build machine's /usr/local and multiarch directories (where glibc 2.36's
#   headers are) to every extension module's compile: none here;
# - Debian builds pyexpat into the interpreter, and its backport of the CVE-2026-4224 fix has
#   pyexpat include an internal header: as a shared module it must say it is a core module.
"$PYTHON" - "$work/cpython" <<'PY'
import sys
from pathlib import Path

source = Path(sys.argv[1])
edits = {
    "setup.py": [
        ("        self.add_multiarch_paths()\n", "        pass  # no multiarch paths\n"),
        ("            add_dir_to_list(self.compiler.library_dirs, '/usr/local/lib')\n", "            pass\n"),
        ("            add_dir_to_list(self.compiler.include_dirs, '/usr/local/include')\n", "            pass\n"),
    ],
    "Modules/pyexpat.c": [
        ('#include "Python.h"\n#include "pycore_ceval.h"',
         '#ifndef Py_BUILD_CORE_BUILTIN\n#  define Py_BUILD_CORE_MODULE 1\n#endif\n'
         '#include "Python.h"\n#include "pycore_ceval.h"'),
    ],
}
for name, replacements in edits.items():
    path = source / name
    text = path.read_text()
    for old, new in replacements:
        if text.count(old) != 1:
            sys.exit(f"toolchain: {name}: expected once: {old!r}")
        text = text.replace(old, new)
    path.write_text(text)
PY

# zlib, OpenSSL and libffi: static and position-independent, linked into the extension modules
# that use them; each kept under CACHE apart from the interpreter, keyed by its recipe (the
# function's text), its source pin and the compiler.
build_zlib() {  # PREFIX
    unpack "$(fetch_source "$ZLIB_SOURCE")" "$work/zlib"
    cd "$work/zlib"
    CFLAGS="-O2 -fPIC" quietly zlib ./configure --static --prefix="$1"
    quietly zlib make -j"$jobs" libz.a
    quietly zlib make install
}
build_openssl() {  # PREFIX: the libraries only; its config file where Debian's is
    unpack "$(fetch_source "$OPENSSL_SOURCE")" "$work/openssl"
    cd "$work/openssl"
    quietly openssl ./Configure "linux-$arch" --prefix="$1" --libdir=lib \
        --openssldir=/usr/lib/ssl no-shared no-tests no-engine no-legacy no-comp -fPIC -O2
    quietly openssl make -j"$jobs" build_libs
    quietly openssl make install_dev
}
build_libffi() {  # PREFIX: for ctypes, which PyInstaller imports
    unpack "$(fetch_source "$LIBFFI_SOURCE")" "$work/libffi"
    cd "$work/libffi"
    CFLAGS="-O2" quietly libffi ./configure "${cross[@]}" --prefix="$1" --libdir="$1/lib" \
        --disable-shared --enable-static --with-pic --disable-docs --disable-multi-os-directory \
        --disable-exec-static-tramp
    quietly libffi make -j"$jobs"
    quietly libffi make install
}
library() {  # library NAME SOURCE: its prefix, built now unless kept
    local recipe
    recipe=$(printf '%s\n' "$(declare -f "build_$1")" "$2" "$ZIGLANG" "$cc_flags" | sha256sum)
    local prefix="$CACHE/$1-$arch-${recipe:0:16}"
    if [ -f "$prefix/.complete" ]; then
        log "kept $1 ($prefix)"
    else
        log "$1 (static)"
        rm -rf "$prefix"
        ("build_$1" "$prefix") >&2 || exit 1
        touch "$prefix/.complete"
    fi
    echo "$prefix"
}
zlib=$(library zlib "$ZLIB_SOURCE")
openssl=$(library openssl "$OPENSSL_SOURCE")
libffi=$(library libffi "$LIBFFI_SOURCE")
# Nothing from the build machine: no pkg-config hits in /usr, no system headers or libraries.
export PKG_CONFIG_LIBDIR="$zlib/lib/pkgconfig:$openssl/lib/pkgconfig:$libffi/lib/pkgconfig"
export PKG_CONFIG_PATH=
log "CPython (shared libpython, for PyInstaller)"
(
    cd "$work/cpython"
    # Modules the provider never imports and whose libraries are not built here: left out.
    for module in _tkinter _sqlite3 _bz2 _lzma readline _curses _curses_panel _dbm _gdbm \
        _uuid nis _crypt _ctypes_test _testcapi _testinternalcapi _testbuffer \
        _testimportmultiple _testmultiphase _xxtestfuzz xxlimited xxlimited_35; do
        export "py_cv_module_$module=n/a"
    done
    if [ ${#cross[@]} -gt 0 ]; then
        # What configure cannot find out by running a program: the answers for Linux.
        export ac_cv_file__dev_ptmx=yes ac_cv_file__dev_ptc=no ac_cv_buggy_getaddrinfo=no
        cross+=(--with-build-python="$build_python")
    fi
    OPT="-DNDEBUG -fwrapv -O2" CPPFLAGS="-I$zlib/include -I$libffi/include" \
        LDFLAGS="-L$zlib/lib -L$libffi/lib" \
        quietly cpython ./configure "${cross[@]}" --prefix="$prefix" --enable-shared \
        --with-openssl="$openssl" --with-ensurepip=no
    # No libpython3.so (the stable-ABI stub: zig cannot link a library of no objects). Only
    # the interpreter's executable gets a search path to its libpython: libpython and the
    # extension modules, which are what gets frozen, none (a node has no such directory).
    make_options=(PY3LIBRARY= LINKFORSHARED="-Xlinker -export-dynamic -Wl,-rpath,$prefix/lib")
    quietly cpython make -j"$jobs" "${make_options[@]}"
    rm -rf "$prefix"
    quietly cpython make install "${make_options[@]}"
)
"$prefix/bin/python3.11" -c 'import ssl, zlib, hashlib, pyexpat, _elementtree, math, _decimal, ctypes
print(ssl.OPENSSL_VERSION, "zlib", zlib.ZLIB_VERSION)' >&2
touch "$prefix/.complete"
# What an older version of this script built for this machine (or before builds named one) is
# of no further use here.
for built in "$CACHE"/{python,zlib,openssl,libffi}-{"$arch"-*,????????????????}; do
    case $built in "$prefix" | "$zlib" | "$openssl" | "$libffi") ;; *) rm -rf "$built" ;; esac
done
log "built $prefix in $((SECONDS - started))s"
echo "$prefix/bin/python3.11"
