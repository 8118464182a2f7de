"""The argparse side of the CLI: --help, --version and the commands beyond the protocol."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from docker_credential_quayfed import __version__
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
  1  failure, or "credentials not found in native keychain" (protocol)
  2  usage error (bad arguments or input)
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
            description=text + " Called by docker, podman, skopeo and buildah.",
            epilog=f"example:\n  {PROTOCOL_EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    demo = commands.add_parser(
        "demo",
        help="Run the whole flow against an embedded issuer and Quay on loopback.",
        description=(
            "Start an embedded OIDC issuer and Quay federation endpoint on loopback with TLS, "
            "then run 'get' twice (minted, then cached), printing each step. Needs the "
            "'demo' extra: pip install 'docker-credential-quayfed[demo]'."
        ),
        epilog="example:\n  docker-credential-quayfed demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(handler=_run_demo)
    _add_configure(commands)
    _add_token(commands)
    from docker_credential_quayfed import federation

    federation.add_parser(commands)
    doctor = commands.add_parser(
        "doctor",
        help="Check every step for HOST (or every configured host), timed, with verdicts.",
        description=(
            "Run each step of the flow and print one line per step with its timing and a "
            "verdict: config, helper on PATH, credHelpers wiring in each client file, OIDC "
            "discovery, JWKS, a minted token (its iss, sub, aud and exp: exactly what Quay's "
            "federation dialog needs), the Quay exchange, the robot token's expiry, and a /v2/ "
            "login at the registry. A failing step says what to do next. Exit code 0 only "
            "when nothing failed."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed doctor quay.example.com\n"
            "  docker-credential-quayfed doctor --json\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("hosts", metavar="HOST", nargs="*", help="registry host(s) to check")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_run_doctor)
    return parser


def _run_doctor(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import doctor
    from docker_credential_quayfed.protocol import registry_key

    return doctor.run([registry_key(h) for h in args.hosts], args.json)


def _client_choice(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--docker",
        dest="clients",
        action="store_const",
        const="docker",
        help="only docker's config.json ($DOCKER_CONFIG/config.json or ~/.docker/config.json)",
    )
    which.add_argument(
        "--podman",
        dest="clients",
        action="store_const",
        const="podman",
        help="only the containers auth.json (podman, skopeo, buildah)",
    )
    which.add_argument(
        "--all",
        dest="clients",
        action="store_const",
        const="all",
        help="both (the default)",
    )
    parser.set_defaults(clients="all")


def _add_configure(commands: Any) -> None:
    configure = commands.add_parser(
        "configure",
        help="Write HOST's settings to the config and wire credHelpers in the clients' files.",
        description=(
            "Write or update HOST's table in the configuration (only the settings given "
            'change), then add "HOST": "quayfed" to credHelpers in docker\'s config.json '
            "and/or the containers auth.json ($REGISTRY_AUTH_FILE, else "
            "$XDG_RUNTIME_DIR/containers/auth.json, else $XDG_CONFIG_HOME/containers/auth.json). "
            "Idempotent and atomic; keeps every other key and the file's mode; leaves a .bak."
        ),
        epilog=(
            "examples:\n"
            "  docker-credential-quayfed configure quay.example.com \\\n"
            "      --robot quay_federation+rhbk_user \\\n"
            "      --issuer https://rhbk.example.com/realms/quay --client-id quay-access \\\n"
            "      --source password --username jdoe --password-env OIDC_PASSWORD\n"
            "  docker-credential-quayfed configure quay.example.com --podman\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure.add_argument("host", metavar="HOST", help="registry host[:port] as clients send it")
    _add_setting_flags(configure)
    _client_choice(configure)
    configure.set_defaults(handler=_run_configure)

    unconfigure = commands.add_parser(
        "unconfigure",
        help="Remove HOST from the config and the clients' credHelpers; drop its cached token.",
        description=(
            "Undo 'configure': remove HOST's table from the configuration and its credHelpers "
            "entry (when it names quayfed) from the chosen client files, and erase its cached "
            "robot token."
        ),
        epilog="example:\n  docker-credential-quayfed unconfigure quay.example.com",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    unconfigure.add_argument("host", metavar="HOST")
    _client_choice(unconfigure)
    unconfigure.set_defaults(handler=_run_unconfigure)


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config setting (``--client-id`` for ``client_id``), from config.SETTINGS."""
    from docker_credential_quayfed import config
    from docker_credential_quayfed.sources import BY_NAME

    for setting in config.SETTINGS:
        flag = "--" + setting.name.replace("_", "-")
        kind = config.setting_type(setting.name)
        text = setting.help.replace("%", "%%")
        if setting.name == "source":
            parser.add_argument(flag, dest="source", choices=list(BY_NAME), help=text)
        elif kind is bool:
            parser.add_argument(
                flag, dest=setting.name, action=argparse.BooleanOptionalAction, help=text
            )
        elif kind is tuple:
            parser.add_argument(flag, dest=setting.name, nargs="+", metavar="HOST", help=text)
        else:
            parser.add_argument(flag, dest=setting.name, type=kind, help=text)


def _report(label: str, change: Any) -> None:
    print(f"{label} {change.path}: {change.what}")


def _run_configure(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import configure as edit
    from docker_credential_quayfed import log, paths
    from docker_credential_quayfed.config import SETTINGS
    from docker_credential_quayfed.protocol import registry_key

    host = registry_key(args.host)
    settings = {
        s.name: tuple(v) if isinstance(v := getattr(args, s.name), list) else v for s in SETTINGS
    }
    config_path = Path(paths.config_file())
    _report("config", edit.upsert_registry(config_path, host, settings))
    for path in edit.client_files(args.clients):
        _report("credHelpers", edit.set_cred_helper(path, host))
    if edit.on_path() is None:
        log.warn(
            "docker-credential-quayfed is not on PATH, so clients cannot run it; "
            "install it (pipx install docker-credential-quayfed) or add its directory to PATH"
        )
    return 0


def _run_unconfigure(args: argparse.Namespace) -> int:
    from docker_credential_quayfed import configure as edit
    from docker_credential_quayfed import paths
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.protocol import registry_key

    host = registry_key(args.host)
    _report("config", edit.remove_registry(Path(paths.config_file()), host))
    for path in edit.client_files(args.clients):
        _report("credHelpers", edit.remove_cred_helper(path, host))
    removed = TokenCache(Path(paths.cache_dir())).erase(host)
    print(f"cache: {removed} cached token(s) erased")
    return 0


def _add_token(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="Print HOST's robot token (for tools that cannot use credential helpers).",
        description=(
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
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.protocol import registry_key

    host = registry_key(args.host)
    registry = config.load().registry(host)
    outcome = broker.robot_token(
        registry, TokenCache(config.default_cache_dir()), force=args.refresh
    )
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


def _run_demo(args: argparse.Namespace) -> int:
    from docker_credential_quayfed.demo import run_demo

    return run_demo()


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
