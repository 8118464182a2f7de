"""client_credentials grant for a confidential client (client_secret_basic)."""

from __future__ import annotations

from docker_credential_quayfed.sources import oauth
from docker_credential_quayfed.sources.base import SourceContext, TokenSource


class ClientCredentialsSource(TokenSource):
    name = "client_credentials"
    summary = "client credentials grant: a confidential client's id and secret"
    required = ("client_id",)
    one_of = (oauth.CLIENT_SECRET_KEYS,)
    optional = oauth.GRANT_OPTIONS
    secret_keys = oauth.CLIENT_SECRET_KEYS
    identity_key = "client_id"

    def fetch(self, context: SourceContext) -> str:
        secret = oauth.client_secret(context)
        form = {"grant_type": "client_credentials", **oauth.common_form(context)}
        return oauth.request_token(context, form, (context.registry.client_id, secret))
