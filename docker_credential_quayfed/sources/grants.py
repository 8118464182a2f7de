"""Token sources that ask the issuer's token endpoint: password and client_credentials."""

from __future__ import annotations

from docker_credential_quayfed import oidc, secrets
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.sources import SourceContext, TokenSource


def _common_form(registry: RegistryConfig) -> dict[str, str]:
    form = {"scope": registry.scope}
    if registry.audience:
        form["audience"] = registry.audience
    return form


def _client_secret(context: SourceContext) -> str:
    registry = context.registry
    return secrets.resolve(
        "client secret",
        env=registry.client_secret_env,
        file=registry.client_secret_file,
        command=registry.client_secret_command,
        where="client_secret",
        timeout=context.deadline.remaining(),
    )


def _has_client_secret(registry: RegistryConfig) -> bool:
    return bool(
        registry.client_secret_env or registry.client_secret_file or registry.client_secret_command
    )


class PasswordSource(TokenSource):
    """Resource-owner password grant, as Keycloak's "Direct access grants" offer it."""

    name = "password"

    def fetch(self, context: SourceContext) -> str:
        registry = context.registry
        password = secrets.resolve(
            "password",
            env=registry.password_env,
            file=registry.password_file,
            command=registry.password_command,
            where="password",
            timeout=context.deadline.remaining(),
        )
        client_auth = None
        form = {
            "grant_type": "password",
            "username": registry.username,
            "password": password,
            **_common_form(registry),
        }
        if _has_client_secret(registry):
            client_auth = (registry.client_id, _client_secret(context))
        else:
            form["client_id"] = registry.client_id
        found = context.discover()
        return oidc.request_token(
            context.session,
            found.token_endpoint,
            form,
            deadline=context.deadline,
            token_type=registry.token_type,
            client_auth=client_auth,
        )


class ClientCredentialsSource(TokenSource):
    """client_credentials grant for a confidential client (client_secret_basic)."""

    name = "client_credentials"

    def fetch(self, context: SourceContext) -> str:
        registry = context.registry
        secret = _client_secret(context)
        found = context.discover()
        return oidc.request_token(
            context.session,
            found.token_endpoint,
            {"grant_type": "client_credentials", **_common_form(registry)},
            deadline=context.deadline,
            token_type=registry.token_type,
            client_auth=(registry.client_id, secret),
        )
