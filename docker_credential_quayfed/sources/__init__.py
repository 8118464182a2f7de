"""Where the OIDC JWT comes from: one module per source, listed once here.

To add a source: write ``sources/NAME.py`` with a :class:`~.base.TokenSource` subclass that
declares its settings, and add it to ``SOURCES`` below. Config validation, ``configure``'s
flags, the README's table and the man page follow from its declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docker_credential_quayfed.sources.auto import AutoSource
from docker_credential_quayfed.sources.base import SourceContext, TokenSource
from docker_credential_quayfed.sources.buildkite import BuildkiteSource
from docker_credential_quayfed.sources.circleci import CircleCISource
from docker_credential_quayfed.sources.client_credentials import ClientCredentialsSource
from docker_credential_quayfed.sources.command import CommandTokenSource
from docker_credential_quayfed.sources.device import DeviceLoginSource
from docker_credential_quayfed.sources.env import EnvTokenSource
from docker_credential_quayfed.sources.file import FileTokenSource
from docker_credential_quayfed.sources.github_actions import GitHubActionsSource
from docker_credential_quayfed.sources.gitlab import GitLabSource
from docker_credential_quayfed.sources.password import PasswordSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig

__all__ = ["BY_NAME", "SOURCES", "SourceContext", "TokenSource", "for_registry"]

SOURCES: tuple[type[TokenSource], ...] = (
    PasswordSource,
    ClientCredentialsSource,
    FileTokenSource,
    EnvTokenSource,
    GitHubActionsSource,
    GitLabSource,
    BuildkiteSource,
    CircleCISource,
    CommandTokenSource,
    AutoSource,
    DeviceLoginSource,
)
BY_NAME: dict[str, type[TokenSource]] = {source.name: source for source in SOURCES}


def for_registry(registry: RegistryConfig) -> TokenSource:
    """The source ``registry`` names (config validation has already checked the name)."""
    return BY_NAME[registry.source]()
