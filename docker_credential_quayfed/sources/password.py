"""Resource-owner password grant, as Keycloak's "Direct access grants" offer it."""

from __future__ import annotations

from docker_credential_quayfed.config import CLIENT_AUTH_KEYS, CLIENT_SECRET_KEYS, GRANT_OPTIONS
from docker_credential_quayfed.sources.base import SourceContext, TokenSource

PASSWORD_KEYS = ("password_env", "password_file", "password_command")


class PasswordSource(TokenSource):
    name = "password"
    summary = "password grant: a user's name and password at the issuer"
    required = ("client_id", "username")
    one_of = (PASSWORD_KEYS,)
    optional = (*CLIENT_SECRET_KEYS, *CLIENT_AUTH_KEYS, *GRANT_OPTIONS)
    secret_keys = (*PASSWORD_KEYS, *CLIENT_SECRET_KEYS, "client_key_file")
    identity_key = "username"
    reusable = True

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed import oidc

        password = context.secret("password", "password")
        form = {
            "grant_type": "password",
            "username": context.registry.username,
            "password": password,
            **oidc.common_form(context),
        }
        return oidc.grant(context, form)
