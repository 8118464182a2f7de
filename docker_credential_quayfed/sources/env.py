"""A JWT in an environment variable, e.g. a GitLab CI id_tokens variable."""

from __future__ import annotations

import os

from docker_credential_quayfed import log
from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources.base import TokenSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.request import RequestContext


class EnvTokenSource(TokenSource):
    name = "env"
    summary = "a JWT in an environment variable, e.g. a GitLab id_tokens variable"
    ambient = True
    carries_jwt = True
    required = ("token_env",)
    identity_key = "token_env"

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        """The variable and a digest of the token in it: a new token is a new credential."""
        import hashlib

        value = os.environ.get(registry.token_env, "").strip().encode("utf-8", "replace")
        return f"{registry.token_env} {hashlib.sha256(value).hexdigest()[:16]}"

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        name = registry.token_env
        value = os.environ.get(name, "").strip()
        if not value:
            raise SecretError(
                f"the token variable {name} is empty or not set (token_env)",
                "run inside the CI job that defines it (GitLab: id_tokens:) or set it",
            )
        log.secret(value)
        return value
