"""A JWT in a file, e.g. a Kubernetes/OpenShift projected service-account token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from docker_credential_quayfed.sources.base import TokenSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline


class FileTokenSource(TokenSource):
    name = "file"
    summary = "a JWT in a file, e.g. a projected service-account token"
    required = ("token_file",)
    identity_key = "token_file"
    carries_jwt = True

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        from docker_credential_quayfed import secret_reader

        # Projected tokens are short-lived and mounted 0644 by default: no mode warning.
        return secret_reader.read_secret_file(
            "token", registry.token_file, where="token_file", check_mode=False
        )
