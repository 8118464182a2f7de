"""A JWT printed by a command: any issuer this helper does not know (a cloud CLI, a vault)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources.base import TokenSource

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


def run_token_command(deadline: Deadline, command: str, where: str) -> str:
    """The JWT ``command`` prints on stdout: split like a shell would, run without one and
    without stdin, bounded by the deadline and by the size of its output."""
    from docker_credential_quayfed import log, secret_reader

    timeout = min(secret_reader.COMMAND_TIMEOUT, max(deadline.remaining(), 0.1))
    token = secret_reader.run_command("token", command, where=where, timeout=timeout)
    log.secret(token)
    if len(token.split()) != 1:
        raise SecretError(
            f"{where} printed more than the token (text with spaces or several lines)",
            "make the command print only the JWT on stdout (messages go to stderr)",
        )
    return token
