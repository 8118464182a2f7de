#!/usr/bin/env bash
# The Keycloak suite's setup (tests/keycloak, pytest -m keycloak): a pinned Keycloak server
# distribution from Maven Central, unpacked and built once under a cache directory that
# survives on this machine, and Debian's chromium and chromedriver for the browser login.
# Idempotent. Its last line is the QUAYFED_KEYCLOAK_HOME=... assignment the tests read, e.g.
#   eval "$(bash .ci/keycloak.sh | tail -n 1)"
set -euo pipefail

KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"
CACHE="${QUAYFED_CI_CACHE:-/var/cache/quayfed-ci}/keycloak"
HOME_DIR="$CACHE/keycloak-$KEYCLOAK_VERSION"
ZIP="$CACHE/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
# The build option tests/keycloak/server.py starts with (start --optimized): the H2 file
# database, in each server's own home.
BUILD_OPTIONS=(--db=dev-file)

say() { echo "keycloak.sh: $*" >&2; }

mkdir -p "$CACHE"

if ! command -v java >/dev/null 2>&1; then
    say "installing Debian's OpenJDK 17"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if ! command -v unzip >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    say "installing Debian's chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -s "$ZIP" ]; then
    say "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip"
    if ! command -v mvn >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
    fi
    mvn -q -B dependency:copy \
        "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
        "-DoutputDirectory=$CACHE.partial" >&2
    mv "$CACHE.partial/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" "$ZIP"
    rmdir "$CACHE.partial"
fi

STAMP="$HOME_DIR/.quayfed-build"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${BUILD_OPTIONS[*]}" ]; then
    say "unpacking and building Keycloak $KEYCLOAK_VERSION (${BUILD_OPTIONS[*]})"
    rm -rf "$HOME_DIR" "$HOME_DIR.partial"
    mkdir -p "$HOME_DIR.partial"
    unzip -q "$ZIP" -d "$HOME_DIR.partial"
    mv "$HOME_DIR.partial/keycloak-$KEYCLOAK_VERSION" "$HOME_DIR"
    rmdir "$HOME_DIR.partial"
    # the JVM's default initial heap is half the machine's memory: the build needs far less
    JAVA_OPTS_KC_HEAP="-Xms64m -Xmx768m" "$HOME_DIR/bin/kc.sh" build "${BUILD_OPTIONS[@]}" >&2
    echo "${BUILD_OPTIONS[*]}" >"$STAMP"
fi

echo "QUAYFED_KEYCLOAK_HOME=$HOME_DIR"
