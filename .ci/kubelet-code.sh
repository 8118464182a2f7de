#!/usr/bin/env bash
# Builds tests/kubelet_code (the kubelet's own credential provider code) once for each pinned
# Kubernetes release (go.mod: the newest, k8s-*.mod: the others) into $QUAYFED_KUBELET_CODE_DIR
# (default /var/cache/quayfed-ci/kubelet-code/bin) and prints each binary's path, for
# tests/test_kubelet_code.py; export that variable before pytest. Go's own module and build
# caches (GOMODCACHE, GOCACHE) keep a second run to seconds; a fresh machine downloads the
# modules from the Go module proxy and compiles them (minutes). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../tests/kubelet_code"
out=${QUAYFED_KUBELET_CODE_DIR:-/var/cache/quayfed-ci/kubelet-code/bin}
go=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$go" ]; then
    echo "kubelet-code: no go command (Go 1.24 or later builds the kubelet's code)" >&2
    exit 1
fi
mkdir -p "$out"
echo "kubelet-code: $("$go" version)"
for modfile in *.mod; do
    release=$(sed -n 's/^[[:space:]]*\(require[[:space:]]*\)\{0,1\}k8s\.io\/kubernetes \(v[0-9.]*\)$/\2/p' "$modfile")
    if [ -z "$release" ]; then
        echo "kubelet-code: $modfile pins no k8s.io/kubernetes" >&2
        exit 1
    fi
    flags=()
    [ "$modfile" = go.mod ] || flags=(-modfile="$modfile")
    began=$SECONDS
    # -mod=mod: the committed go.sum files hold every sum; a missing one is fetched, not refused
    GOFLAGS=-mod=mod "$go" build -buildvcs=false "${flags[@]}" -o "$out/kubelet-code-$release.new" .
    mv -f "$out/kubelet-code-$release.new" "$out/kubelet-code-$release"
    echo "$out/kubelet-code-$release (k8s.io/kubernetes $release, $((SECONDS - began))s)"
done
