"""configure and unconfigure: write HOST's table and wire credHelpers in the clients' files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from docker_credential_quayfed.commands.help import describe, new_request


def add_parser(commands: Any) -> None:
    _add_configure(commands)


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
        description=describe(
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
        description=describe(
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
    from docker_credential_quayfed import config_files as edit
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
    from docker_credential_quayfed import config_files as edit
    from docker_credential_quayfed import paths
    from docker_credential_quayfed.protocol import registry_key

    host = registry_key(args.host)
    _report("config", edit.remove_registry(Path(paths.config_file()), host))
    for path in edit.client_files(args.clients):
        _report("credHelpers", edit.remove_cred_helper(path, host))
    removed = new_request().cache.erase_when_idle(host)
    print(f"cache: {removed} cached token(s) erased")
    return 0
