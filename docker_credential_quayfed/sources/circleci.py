"""The CircleCI job's OIDC token, ``$CIRCLE_OIDC_TOKEN_V2``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources.base import TokenSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.request import RequestContext

TOKEN_VARIABLE = "CIRCLE_OIDC_TOKEN_V2"


class CircleCISource(TokenSource):
    name = "circleci"
    summary = f"the CircleCI job's OIDC token (${TOKEN_VARIABLE})"
    ambient = True
    carries_jwt = True
    #: for people, and what detect looks at (source = "auto" lists it when nothing matched)
    platform = "CircleCI"
    checked = "CIRCLECI"

    @classmethod
    def detect(cls, registry: RegistryConfig) -> str | None:
        """This job's identity when running in a CircleCI job, else None."""
        if os.environ.get("CIRCLECI", "").strip().lower() != "true":
            return None
        project = os.environ.get("CIRCLE_PROJECT_REPONAME", "?")
        job = os.environ.get("CIRCLE_WORKFLOW_JOB_ID") or os.environ.get("CIRCLE_BUILD_NUM", "?")
        return f"{project} job {job}"

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        return cls.detect(registry) or ""

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        from docker_credential_quayfed import log

        value = os.environ.get(TOKEN_VARIABLE, "").strip()
        if not value:
            raise SecretError(
                f"{TOKEN_VARIABLE} is empty or not set (source = 'circleci')",
                "run inside a CircleCI job; CircleCI sets it in the jobs it issues OIDC tokens to",
            )
        log.secret(value)
        return value
