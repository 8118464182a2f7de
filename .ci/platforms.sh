#!/usr/bin/env bash
# Builds the tools tests/test_platforms.py checks the platform files with: Butane (pinned in
# tests/platforms/butane/go.mod) and the kind configuration checker (tests/platforms/kindconfig,
# kind's own v1alpha4 types) into $QUAYFED_PLATFORMS_BIN (default
# /var/cache/quayfed-ci/platforms/bin), and prints that directory last; export it before pytest.
# Go's own module and build caches keep a second run to seconds; a fresh machine downloads the
# modules from the Go module proxy. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../tests/platforms"
out=${QUAYFED_PLATFORMS_BIN:-/var/cache/quayfed-ci/platforms/bin}
go=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$go" ]; then
    echo "platforms: no go command (Go 1.25 or later builds Butane)" >&2
    exit 1
fi
mkdir -p "$out"
export GOFLAGS="-mod=mod -buildvcs=false"
butane=$(sed -n 's/^require github\.com\/coreos\/butane \(v[0-9.]*\)$/\1/p' butane/go.mod)
if [ -z "$butane" ]; then
    echo "platforms: butane/go.mod pins no github.com/coreos/butane" >&2
    exit 1
fi
began=$SECONDS
(cd butane && "$go" build -ldflags "-X github.com/coreos/butane/internal/version.Raw=$butane" \
    -o "$out/butane.new" github.com/coreos/butane/internal)
mv -f "$out/butane.new" "$out/butane"
echo "platforms: $("$out/butane" --version) ($((SECONDS - began))s)"
began=$SECONDS
(cd kindconfig && "$go" build -o "$out/kindconfig.new" .)
mv -f "$out/kindconfig.new" "$out/kindconfig"
echo "platforms: kindconfig, sigs.k8s.io/kind $(sed -n 's/^[[:space:]]*sigs\.k8s\.io\/kind \(v[0-9.]*\)$/\1/p' kindconfig/go.mod) ($((SECONDS - began))s)"
echo "$out"
