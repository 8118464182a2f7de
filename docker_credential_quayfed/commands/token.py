"""token: print HOST's robot token for tools that cannot use credential helpers."""

from __future__ import annotations

import argparse
from typing import Any

from docker_credential_quayfed.commands.help import describe, new_request


def add_parser(commands: Any) -> None:
    _add_token(commands)


def _add_token(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="Print HOST's robot token (for tools that cannot use credential helpers).",
        description=describe(
            "Print a valid robot token for HOST (from the cache, or freshly minted). With "
            "--json print the username, token and expiry instead."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed token quay.example.com | \\\n"
            "      podman login -u quay_federation+rhbk_user --password-stdin quay.example.com\n"
            "  docker-credential-quayfed token --json quay.example.com\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_argument("host", metavar="HOST")
    token.add_argument("--json", action="store_true", help="print JSON with username and expiry")
    token.add_argument("--refresh", action="store_true", help="mint a new token even if cached")
    token.set_defaults(handler=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    import json
    import time

    from docker_credential_quayfed import broker, config
    from docker_credential_quayfed.protocol import registry_key
    from docker_credential_quayfed.sources import BY_NAME

    host = registry_key(args.host)
    registry = config.load(BY_NAME).registry(host)
    outcome = broker.robot_token(registry, new_request(), force=args.refresh)
    token = outcome.token
    if args.json:
        print(
            json.dumps(
                {
                    "registry": host,
                    "username": token.robot,
                    "token": token.token,
                    "expires_at": int(token.expires_at),
                    "expires_in": int(token.expires_at - time.time()),
                    "source": outcome.how,
                }
            )
        )
    else:
        print(token.token)
    return 0
