"""What the sources that call the issuer's token endpoint share: the client secret and form."""

from __future__ import annotations

from docker_credential_quayfed.sources.base import SourceContext

CLIENT_SECRET_KEYS = ("client_secret_env", "client_secret_file", "client_secret_command")
#: settings every token-endpoint grant reads
GRANT_OPTIONS = ("scope", "token_type", "audience")


def common_form(context: SourceContext) -> dict[str, str]:
    registry = context.registry
    form = {"scope": registry.scope}
    if registry.audience:
        form["audience"] = registry.audience
    return form


def has_client_secret(context: SourceContext) -> bool:
    return any(getattr(context.registry, name) for name in CLIENT_SECRET_KEYS)


def client_secret(context: SourceContext) -> str:
    return context.secret("client_secret", "client secret")


def request_token(
    context: SourceContext, form: dict[str, str], client_auth: tuple[str, str] | None
) -> str:
    """POST ``form`` to the issuer's token endpoint (found by discovery) and return the token."""
    from docker_credential_quayfed import oidc

    found = context.discover()
    return oidc.request_token(
        context.session,
        found.token_endpoint,
        form,
        deadline=context.deadline,
        token_type=context.registry.token_type,
        client_auth=client_auth,
    )
