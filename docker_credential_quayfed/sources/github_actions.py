"""The job's OIDC token from GitHub Actions (needs ``permissions: id-token: write``)."""

from __future__ import annotations

import os

from docker_credential_quayfed.errors import IssuerError, SecretError
from docker_credential_quayfed.sources.base import SourceContext, TokenSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.request import RequestContext


class GitHubActionsSource(TokenSource):
    name = "github_actions"
    summary = "the GitHub Actions job's OIDC token (permissions: id-token: write)"
    ambient = True
    optional = ("audience",)

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        """This job's run, attempt and job id: a token is never served to another job."""
        return " ".join(
            os.environ.get(name, "?")
            for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB")
        )

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed import log, transport

        url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "").strip()
        bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "").strip()
        if not url or not bearer:
            raise SecretError(
                "ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set (source = 'github_actions')",
                "run inside a GitHub Actions job with 'permissions: id-token: write'",
            )
        log.secret(bearer)
        audience = context.registry.audience
        response = transport.request(
            context.session,
            "GET",
            url,
            deadline=context.deadline,
            what="GitHub Actions OIDC token",
            params={"audience": audience} if audience else None,
            headers={"Authorization": f"bearer {bearer}", "Accept": "application/json"},
        )
        body = transport.json_object(response)
        token = body.get("value") if body else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise IssuerError(
                f"GitHub Actions' token endpoint answered HTTP {response.status_code} "
                "without a token",
                "check that the job has 'permissions: id-token: write'",
            )
        log.secret(token)
        return token
