#!/usr/bin/env bash
# Builds the Go registry clients of the end-to-end suite's `more_clients` tests (helm, oras,
# crane) with `go install MODULE@PINNED` into a cache directory that survives on one machine;
# a client already built at its pinned version is kept. Progress goes to stderr; the last line
# of stdout is the directory holding the three binaries (put it on PATH, or in
# QUAYFED_MORE_CLIENTS_BIN, for tests/e2e/test_more_clients.py).
set -euo pipefail

GO=${GO:-/usr/local/go/bin/go}
CACHE=${QUAYFED_MORE_CLIENTS_CACHE:-/var/cache/quayfed-ci/more-clients}
BIN="$CACHE/bin"
# name  package (go install)  module (as `go version -m` names it)  version
CLIENTS=(
    "helm  helm.sh/helm/v4/cmd/helm  helm.sh/helm/v4  v4.3.2"
    "oras  oras.land/oras/cmd/oras  oras.land/oras  v1.3.6"
    "crane  github.com/google/go-containerregistry/cmd/crane  github.com/google/go-containerregistry  v0.22.1"
)

command -v "$GO" >/dev/null || { echo "Go is not installed at $GO" >&2; exit 1; }
mkdir -p "$BIN"
# Only the pinned toolchain and flags: no inherited GOFLAGS, no toolchain download.
export GOBIN="$BIN" GOMODCACHE="$CACHE/mod" GOCACHE="$CACHE/build" GOFLAGS=
export GOTOOLCHAIN=local CGO_ENABLED=0

built_at() {  # built_at BINARY MODULE: the module version the binary was built from, or nothing
    [ -x "$1" ] || return 0
    "$GO" version -m "$1" 2>/dev/null | awk -v module="$2" '$1 == "mod" && $2 == module { print $3 }'
}

for line in "${CLIENTS[@]}"; do
    read -r name package module version <<<"$line"
    if [ "$(built_at "$BIN/$name" "$module")" = "$version" ]; then
        echo "$name $version: already built ($BIN/$name)" >&2
        continue
    fi
    started=$SECONDS
    # helm and oras print the version given at link time; without it they say 'unreleased'.
    case $name in
        helm) ldflags="-X helm.sh/helm/v4/internal/version.version=$version" ;;
        oras) ldflags="-X oras.land/oras/internal/version.Version=${version#v} -X oras.land/oras/internal/version.BuildMetadata=" ;;
        *) ldflags="" ;;
    esac
    "$GO" install -trimpath -ldflags "$ldflags" "$package@$version" >&2
    [ "$(built_at "$BIN/$name" "$module")" = "$version" ] \
        || { echo "$name: $BIN/$name is not $module $version" >&2; exit 1; }
    echo "$name $version: built in $((SECONDS - started))s ($BIN/$name)" >&2
done
"$BIN/helm" version --short >&2
"$BIN/oras" version >&2
echo "crane $("$BIN/crane" version)" >&2
echo "$BIN"
