"""Where the OIDC JWT comes from: one small class per source, chosen by ``source``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import ConfigError
from docker_credential_quayfed.transport import Deadline

if TYPE_CHECKING:
    from docker_credential_quayfed.oidc import Discovery


@dataclass
class SourceContext:
    """What a source may use: its settings, the HTTP session and the time left."""

    registry: RegistryConfig
    session: httpx.Client
    deadline: Deadline

    def discover(self) -> Discovery:
        """The issuer's discovery document, its endpoints held to the registry's settings."""
        from docker_credential_quayfed import oidc

        return oidc.discover(
            self.session,
            self.registry.issuer,
            self.deadline,
            endpoint_hosts=self.registry.endpoint_hosts,
            allow_http=self.registry.allow_insecure_http,
        )


class TokenSource:
    """Base: ``fetch`` returns a JWT for Quay or raises a QuayfedError saying why not."""

    name = ""

    def fetch(self, context: SourceContext) -> str:
        raise NotImplementedError


def for_registry(registry: RegistryConfig) -> TokenSource:
    from docker_credential_quayfed.sources.ambient import (
        EnvTokenSource,
        FileTokenSource,
        GitHubActionsSource,
    )
    from docker_credential_quayfed.sources.grants import ClientCredentialsSource, PasswordSource

    known: dict[str, type[TokenSource]] = {
        PasswordSource.name: PasswordSource,
        ClientCredentialsSource.name: ClientCredentialsSource,
        FileTokenSource.name: FileTokenSource,
        EnvTokenSource.name: EnvTokenSource,
        GitHubActionsSource.name: GitHubActionsSource,
    }
    chosen = known.get(registry.source)
    if chosen is None:
        raise ConfigError(
            f"{registry.where('source')} = {registry.source!r} is not a known token source",
            f"use one of: {', '.join(sorted(known))}",
        )
    return chosen()
