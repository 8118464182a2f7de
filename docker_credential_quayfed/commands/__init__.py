"""The argparse side of the CLI: --help, --version and the commands beyond the protocol."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from docker_credential_quayfed import __version__
from docker_credential_quayfed.commands.help import describe
from docker_credential_quayfed.paths import APP_NAME as PROGRAM

DESCRIPTION = """\
Credential helper for docker, podman, skopeo and buildah that answers with a short-lived
Quay robot token: it mints an OIDC JWT (password grant, client credentials, a token file,
an environment variable or GitHub Actions), exchanges it at Quay's robot federation
endpoint and caches the robot token until shortly before it expires.
"""

EPILOG = """\
protocol actions (called by clients; input on stdin):
  get        registry host in, {"ServerURL","Username","Secret"} out
  store      {"ServerURL","Username","Secret"} in; caches a robot token (JWT with exp)
  erase      registry host in; drops its cached token
  list       prints {"host": "robot", ...} for the configured registries
  version    prints the name and version

kubelet image credential provider (also installed as quay-credential-provider):
  kubelet    CredentialProviderRequest in, CredentialProviderResponse out: each pod pulls
             as the robot its service account names (see docs/kubelet.md)

examples:
  docker-credential-quayfed demo
  echo quay.example.com | docker-credential-quayfed get
  DOCKER_CREDENTIAL_QUAYFED_DEBUG=1 docker-credential-quayfed get <<< quay.example.com

environment:
  DOCKER_CREDENTIAL_QUAYFED_CONFIG     configuration file (default: user config dir/config.toml)
  DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR  token cache directory (default: user cache dir)
  DOCKER_CREDENTIAL_QUAYFED_DEBUG=1    log each step to stderr, secrets redacted

exit codes:
  0  success
  1  failure, or "credentials not found in native keychain"; a protocol action's every
     error, bad stdin included, with its message on stdout
  2  usage error (unknown command, flag or argument)
  130 interrupted
"""

PROTOCOL_HELP = {
    "get": "Read a registry host on stdin; print the robot credentials as JSON.",
    "store": "Read {ServerURL, Username, Secret} JSON on stdin; cache a robot token.",
    "erase": "Read a registry host on stdin; drop its cached robot token.",
    "list": "Print the configured registries and their robots as JSON.",
    "version": "Print the name and version.",
}
PROTOCOL_EXAMPLES = {
    "get": "echo quay.example.com | docker-credential-quayfed get",
    "store": (
        'echo \'{"ServerURL": "quay.example.com", "Username": "org+robot", '
        '"Secret": "<robot token>"}\' | docker-credential-quayfed store'
    ),
    "erase": "echo quay.example.com | docker-credential-quayfed erase",
    "list": "docker-credential-quayfed list",
    "version": "docker-credential-quayfed version",
}


def build_parser() -> argparse.ArgumentParser:
    from docker_credential_quayfed.commands import (
        configure,
        demo,
        doctor,
        federation,
        login,
        token,
    )

    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in PROTOCOL_HELP.items():
        commands.add_parser(
            name,
            help=text,
            description=describe(text + " Called by docker, podman, skopeo and buildah."),
            epilog=f"example:\n  {PROTOCOL_EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    # One module per command, each owning its parser and handler.
    for command in (demo, configure, login, token, federation, doctor):
        command.add_parser(commands)
    _add_kubelet(commands)
    return parser


def _add_kubelet(commands: Any) -> None:
    """The kubelet front end reads its own arguments (``cli`` hands them over before argparse);
    this entry gives it a place in --help, the man page and the shell completions."""
    kubelet = commands.add_parser(
        "kubelet",
        help="Kubelet image credential provider (also installed as quay-credential-provider).",
        description=describe(
            "Read a CredentialProviderRequest (credentialprovider.kubelet.k8s.io/v1) on stdin "
            "and write a CredentialProviderResponse: each pod pulls as the robot its service "
            "account's quay.io/federated-robot-account annotation names, within the node's "
            '[kubelet."HOST"] policy (see docs/kubelet.md).'
        ),
        epilog="example (as the kubelet runs it):\n  quay-credential-provider --config "
        "/etc/docker-credential-quayfed/config.toml < request.json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from docker_credential_quayfed.paths import KUBELET_FLAGS

    for flag, names, text in KUBELET_FLAGS:
        kubelet.add_argument(flag, metavar=names, help=text)


def print_help(command: str) -> int:
    parser = build_parser()
    parser.parse_args([command, "--help"])
    return 0


def run(argv: Sequence[str]) -> int:
    parser = build_parser()
    if not argv:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{PROGRAM}: error: a command is required (see --help)\n")
        return 2
    if argv[0] == "help":
        argv = [*argv[1:], "--help"] if len(argv) > 1 else ["--help"]
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:  # a protocol action given with extra arguments
        parser.error(f"'{args.command}' takes no arguments; its input comes on stdin")
    return handler(args)
