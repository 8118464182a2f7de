"""Run an emulator in the foreground, for end-to-end tests that need it in another process.

    python -m quay_sandbox quay|issuer --tls-dir DIR [--port 0]
        [--host 127.0.0.1] [--config FILE.json] [--ca-bundle FILE]

The test PKI is created in DIR unless it is already there. Once serving, ONE JSON line goes to
stdout (URLs and file paths, never secrets); SIGTERM or SIGINT stops the server and exits 0.

``--config`` for ``quay``: ``{"robots": [{"name", "federation": [{"issuer", "subject",
"audiences"}], "permissions": {"org/repo": ["pull", "push"]}}], "admin_tokens": [{"token",
"orgs", "username"}], "token_lifetime", "registry_token_lifetime", "server_hostname",
"registry_issuer", "allow_http_issuers", "posted_entry_keys"}``.

``--config`` for ``issuer``: ``{"realm", "token_lifetime", "users": [{"username", "password",
"sub"}], "clients": [{"client_id", "secret", "direct_access", "service_account"}]}``; without it
the realm has user ``jdoe``/``secret``, public client ``quayfed-cli`` and confidential client
``quayfed-ci``/``ci-secret`` with a service account.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .issuer import IssuerClient, IssuerUser, KeycloakIssuer
from .quay import QuayEmulator
from .server import RunningServer
from .tls import TestPKI, load_or_make_test_pki

DEFAULT_ISSUER_CONFIG: dict[str, Any] = {
    "realm": "quay",
    "users": [{"username": "jdoe", "password": "secret"}],
    "clients": [
        {"client_id": "quayfed-cli"},
        {"client_id": "quayfed-ci", "secret": "ci-secret", "service_account": True},
    ],
}


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise SystemExit(f"{path}: the configuration must be a JSON object")
    return loaded


def _start_quay(
    args: argparse.Namespace, pki: TestPKI, config: dict[str, Any]
) -> tuple[RunningServer, dict[str, Any]]:
    emulator = QuayEmulator(
        ca_bundle=args.ca_bundle or pki.ca_cert,
        server_hostname=config.get("server_hostname"),
        registry_issuer=config.get("registry_issuer", "quay"),
        allow_http_issuers=bool(config.get("allow_http_issuers", False)),
        posted_entry_keys=config.get("posted_entry_keys", ()),
    )
    emulator.apply_config(config)
    server = emulator.start(pki=pki, host=args.host, port=args.port)
    cert = emulator.write_registry_token_cert(Path(args.tls_dir) / "registry-token.crt")
    return server, {
        "kind": "quay",
        "url": server.url,
        "host": emulator.host,
        "server_hostname": emulator.server_hostname,
        "registry_issuer": emulator.registry_issuer,
        "registry_token_cert": str(cert),
    }


def _start_issuer(
    args: argparse.Namespace, pki: TestPKI, config: dict[str, Any]
) -> tuple[RunningServer, dict[str, Any]]:
    config = {**DEFAULT_ISSUER_CONFIG, **config}
    users = [
        IssuerUser(u["username"], u["password"], **({"sub": u["sub"]} if "sub" in u else {}))
        for u in config["users"]
    ]
    clients = [
        IssuerClient(
            c["client_id"],
            secret=c.get("secret"),
            direct_access=bool(c.get("direct_access", True)),
            service_account=bool(c.get("service_account", False)),
        )
        for c in config["clients"]
    ]
    issuer = KeycloakIssuer(
        users=users,
        clients=clients,
        realm=str(config["realm"]),
        token_lifetime=int(config.get("token_lifetime", 300)),
    )
    server = issuer.start(pki=pki, host=args.host, port=args.port)
    return server, {
        "kind": "issuer",
        "url": server.url,
        "issuer": issuer.issuer,
        "token_endpoint": issuer.token_endpoint,
        "users": {user.username: user.sub for user in users},
        "clients": [client.client_id for client in clients],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quay_sandbox")
    parser.add_argument("kind", choices=("quay", "issuer"))
    parser.add_argument("--tls-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=0, type=int)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--ca-bundle", type=Path, help="CA for issuers (default: the test CA)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pki = load_or_make_test_pki(args.tls_dir)
    config = _read_config(args.config)
    start = _start_quay if args.kind == "quay" else _start_issuer
    server, facts = start(args, pki, config)
    facts.update(
        {"ca_cert": str(pki.ca_cert), "server_cert": str(pki.server_cert), "port": server.port}
    )
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
