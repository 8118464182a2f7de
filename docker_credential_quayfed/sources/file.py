"""A JWT in a file, e.g. a Kubernetes/OpenShift projected service-account token."""

from __future__ import annotations

from docker_credential_quayfed.sources.base import SourceContext, TokenSource


class FileTokenSource(TokenSource):
    name = "file"
    summary = "a JWT in a file, e.g. a projected service-account token"
    required = ("token_file",)
    identity_key = "token_file"

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed import secret_reader

        # Projected tokens are short-lived and mounted 0644 by default: no mode warning.
        return secret_reader.read_secret_file(
            "token", context.registry.token_file, where="token_file", check_mode=False
        )
