"""The GitLab CI job's ID token: the variable its ``id_tokens:`` keyword defines."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources.base import TokenSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.request import RequestContext

#: the variable read when token_env is not set
DEFAULT_TOKEN_ENV = "QUAY_ID_TOKEN"


class GitLabSource(TokenSource):
    name = "gitlab"
    summary = f"the GitLab CI job's id_tokens variable (token_env, default {DEFAULT_TOKEN_ENV})"
    ambient = True
    carries_jwt = True
    optional = ("token_env",)
    #: for people, and what detect looks at (source = "auto" lists it when nothing matched)
    platform = "GitLab CI"
    checked = "GITLAB_CI"

    @classmethod
    def detect(cls, registry: RegistryConfig) -> str | None:
        """This job's identity when running in GitLab CI, else None."""
        if os.environ.get("GITLAB_CI", "").strip().lower() != "true":
            return None
        project = os.environ.get("CI_PROJECT_PATH", "?")
        return f"{project} job {os.environ.get('CI_JOB_ID', '?')} {_variable(registry)}"

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        return cls.detect(registry) or _variable(registry)

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        from docker_credential_quayfed import log

        name = _variable(registry)
        value = os.environ.get(name, "").strip()
        if not value:
            raise SecretError(
                f"the GitLab ID token variable {name} is empty or not set",
                f"add to the job 'id_tokens: {name}: aud: AUDIENCE' (or set token_env to the "
                "variable your id_tokens entry names)",
            )
        log.secret(value)
        return value


def _variable(registry: RegistryConfig) -> str:
    return registry.token_env or DEFAULT_TOKEN_ENV
