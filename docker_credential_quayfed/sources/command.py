"""A JWT printed by a command: any issuer this helper does not know (a cloud CLI, a vault)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from docker_credential_quayfed.sources.base import TokenSource, run_token_command

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline


class CommandTokenSource(TokenSource):
    name = "command"
    summary = "a JWT printed by token_command (run without a shell, bounded), for any issuer"
    required = ("token_command",)
    identity_key = "token_command"
    carries_jwt = True

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        return run_token_command(deadline, registry.token_command, "token_command")
