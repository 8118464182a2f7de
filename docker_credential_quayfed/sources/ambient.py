"""Token sources that find a JWT already minted for us: a file or an environment variable."""

from __future__ import annotations

import os

from docker_credential_quayfed import secrets
from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources import SourceContext, TokenSource


class FileTokenSource(TokenSource):
    """A JWT in a file, e.g. a Kubernetes/OpenShift projected service-account token."""

    name = "file"

    def fetch(self, context: SourceContext) -> str:
        # Projected tokens are short-lived and mounted 0644 by default: no mode warning.
        return secrets.read_secret_file(
            "token", context.registry.token_file, where="token_file", check_mode=False
        )


class EnvTokenSource(TokenSource):
    """A JWT in an environment variable, e.g. a GitLab CI id_tokens variable."""

    name = "env"

    def fetch(self, context: SourceContext) -> str:
        name = context.registry.token_env
        value = os.environ.get(name, "").strip()
        if not value:
            raise SecretError(
                f"the token variable {name} is empty or not set (token_env)",
                "run inside the CI job that defines it (GitLab: id_tokens:) or set it",
            )
        return value
