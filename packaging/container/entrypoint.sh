#!/usr/bin/env bash
# Container entrypoint: configure docker-credential-quayfed from QUAYFED_* variables, then
# run the command given (skopeo, podman, buildah, a shell...).
#
#   QUAYFED_REGISTRY   registry host(s), separated by spaces or commas; unset: keep the
#                      mounted configuration as it is and only run the command
#   QUAYFED_<SETTING>  one per setting of `docker-credential-quayfed configure`, e.g.
#                      QUAYFED_ROBOT, QUAYFED_ISSUER, QUAYFED_SOURCE, QUAYFED_CLIENT_ID,
#                      QUAYFED_TOKEN_FILE, QUAYFED_ON_FAILURE (see packaging/README.md)
#
# The helper's own `configure` writes config.toml and the credHelpers entry in the
# containers auth.json ($REGISTRY_AUTH_FILE), so the files have one author and one format.
set -euo pipefail

helper=${QUAYFED_HELPER:-docker-credential-quayfed}
settings=(robot issuer source client-id username password-env password-file
    password-command client-secret-env client-secret-file client-secret-command token-file
    token-env scope token-type audience quay-url ca-bundle refresh-margin on-failure)

configure_registries() {
    local flags=() registries=() setting variable registry
    for setting in "${settings[@]}"; do
        variable="QUAYFED_${setting//-/_}"
        variable=${variable^^}
        if [[ -n "${!variable:-}" ]]; then
            flags+=("--${setting}" "${!variable}")
        fi
    done
    IFS=', ' read -r -a registries <<<"${QUAYFED_REGISTRY}"
    for registry in "${registries[@]}"; do
        "${helper}" configure "${registry}" "${flags[@]}" --podman >&2
    done
}

if [[ -n "${QUAYFED_REGISTRY:-}" ]]; then
    configure_registries
fi
if [[ "$#" -eq 0 ]]; then
    set -- skopeo --help
fi
exec "$@"
