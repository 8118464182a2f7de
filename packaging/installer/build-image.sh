#!/usr/bin/env bash
# Builds the node installer image FROM scratch with buildah: no base image is pulled. It holds
# the self-contained provider's folder (packaging/build_frozen.py) at /quay-credential-provider.d
# and the build machine's shared libraries that the folder's ELF files need (the dynamic loader,
# glibc, zlib: as ldd resolves them), and nothing else; its entrypoint is the provider, so
# `install-on-node ...` as the container's args runs the installer (packaging/installer/README.md).
#
#   bash packaging/installer/build-image.sh [PROVIDER-LINK] [IMAGE-NAME]
#
# PROVIDER-LINK defaults to dist/quay-credential-provider (its folder is beside it), IMAGE-NAME
# to localhost/quay-credential-provider-installer:VERSION. Extra global options for buildah (a
# storage root, say) come from $BUILDAH_OPTIONS. Prints the image's name and ID on the last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
provider=${1:-dist/quay-credential-provider}
folder="$(dirname "$provider")/$(basename "$provider").d"
[ -x "$folder/quay-credential-provider" ] || {
    echo "no self-contained provider at $folder (bash .ci/frozen.sh builds it)" >&2
    exit 1
}
version=$("$folder/quay-credential-provider" --version | awk '{print $2}')
image=${2:-localhost/quay-credential-provider-installer:$version}
read -r -a options <<<"${BUILDAH_OPTIONS:-}"

# The libraries, under the paths the loader looks for them at, as regular files.
stage=$(mktemp -d)
container=""
cleanup() {
    rm -rf "$stage"
    [ -z "$container" ] || buildah "${options[@]}" rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
libraries=()
while IFS= read -r -d '' file; do
    [ "$(head -c 4 "$file" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || continue
    listed=$(LD_LIBRARY_PATH="$folder" ldd "$file" 2>&1) || continue  # "not a dynamic executable"
    if grep -q 'not found' <<<"$listed"; then
        echo "ldd $file: $(grep 'not found' <<<"$listed" | head -n 1)" >&2
        exit 1
    fi
    while read -r path; do
        case "$path" in "$folder"/* | "$(realpath "$folder")"/*) continue ;; esac
        libraries+=("$path")
    done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$listed")
done < <(find "$folder" -type f -print0)
packages=()
for library in $(printf '%s\n' "${libraries[@]}" | sort -u); do
    mkdir -p "$stage$(dirname "$library")"
    cp -L "$library" "$stage$library"
    # dpkg knows a file by the path its package ships it at (/lib or /usr/lib on merged /usr)
    owner=$( { dpkg -S "$library" || dpkg -S "$(realpath "$library")"; } 2>/dev/null | head -n 1) || true
    packages+=("${owner%%:*}")
done
# The Debian packages the libraries came from, with their versions, for the image's label.
# shellcheck disable=SC2016  # dpkg-query's own ${fields}
origin=$(printf '%s\n' "${packages[@]}" | grep . | sort -u |
    xargs -r dpkg-query -W -f '${Package}=${Version}\n' | sort -u | paste -sd ' ')

container=$(buildah "${options[@]}" from scratch)
buildah "${options[@]}" copy --quiet "$container" "$stage" / >/dev/null
buildah "${options[@]}" copy --quiet "$container" "$folder" /quay-credential-provider.d >/dev/null
buildah "${options[@]}" config \
    --entrypoint '["/quay-credential-provider.d/quay-credential-provider"]' \
    --cmd '["install-on-node", "--help"]' \
    --label org.opencontainers.image.title=quay-credential-provider-installer \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.description="puts quay-credential-provider on a node and merges it into the kubelet's CredentialProviderConfig" \
    --label io.quayfed.libraries-from="${origin:-unknown}" \
    "$container"
# one timestamp for the image and every file in it (SOURCE_DATE_EPOCH, else 1980-01-01, as the
# provider folder is built): the same provider and libraries give the same image
id=$(buildah "${options[@]}" commit --quiet --rm --timestamp "${SOURCE_DATE_EPOCH:-315532800}" \
    "$container" "$image")
container=""
echo "$image $id"
