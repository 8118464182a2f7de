"""client_credentials grant for a confidential client (a client secret or private_key_jwt)."""

from __future__ import annotations

from docker_credential_quayfed.config import CLIENT_SECRET_KEYS, GRANT_OPTIONS
from docker_credential_quayfed.sources.base import SourceContext, TokenSource


class ClientCredentialsSource(TokenSource):
    name = "client_credentials"
    summary = "client credentials grant: a confidential client's id and secret or private key"
    required = ("client_id",)
    # A secret, or the key of client_auth = "private_key_jwt" (config checks they agree).
    one_of = ((*CLIENT_SECRET_KEYS, "client_key_file"),)
    optional = ("client_auth", "client_key_id", *GRANT_OPTIONS)
    secret_keys = (*CLIENT_SECRET_KEYS, "client_key_file")
    identity_key = "client_id"
    reusable = True

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed import oidc

        form = {"grant_type": "client_credentials", **oidc.common_form(context)}
        return oidc.grant(context, form)
