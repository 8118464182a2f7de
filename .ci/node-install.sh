#!/usr/bin/env bash
# The node installer image for tests/test_node_install.py: buildah, podman and runc from Debian
# when missing (crun refuses this kind of machine's hybrid cgroup layout; runc takes it), then
# packaging/installer/build-image.sh builds the image FROM scratch out of the self-contained
# provider (.ci/frozen.sh must have built dist/quay-credential-provider) into container storage
# of its own (vfs) under $QUAYFED_NODE_INSTALL_STORAGE, kept between runs; the image of the
# run before is replaced. About 5 seconds once the packages are there.
# The last line is QUAYFED_INSTALLER_IMAGE=NAME, for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
storage=${QUAYFED_NODE_INSTALL_STORAGE:-/var/cache/quayfed-ci/node-install/containers}
provider=${QUAYFED_FROZEN_PROVIDER:-dist/quay-credential-provider}
image=localhost/quay-credential-provider-installer:ci

missing=()
for tool in buildah podman runc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$storage"
options="--root $storage/root --runroot $storage/run --storage-driver vfs"
BUILDAH_OPTIONS=$options bash packaging/installer/build-image.sh "$provider" "$image" >&2
# shellcheck disable=SC2086  # the options are words
podman $options image prune --force >/dev/null  # the run before's image, untagged now
echo "QUAYFED_INSTALLER_IMAGE=$image"
