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


class GitHubActionsSource(TokenSource):
    """The job's OIDC token from GitHub Actions (needs ``permissions: id-token: write``)."""

    name = "github_actions"

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed import transport
        from docker_credential_quayfed.errors import IssuerError

        url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "").strip()
        bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "").strip()
        if not url or not bearer:
            raise SecretError(
                "ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set (source = 'github_actions')",
                "run inside a GitHub Actions job with 'permissions: id-token: write'",
            )
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
        return token
