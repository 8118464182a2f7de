"""`federation show|set|add|remove ROBOT`: the robot's trusted issuers and subjects in Quay."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from docker_credential_quayfed import broker, config, log, quay, secret_reader, transport
from docker_credential_quayfed.commands.help import describe, new_request
from docker_credential_quayfed.errors import ConfigError, QuayError, UsageError
from docker_credential_quayfed.sources import BY_NAME
from docker_credential_quayfed.text import printable

DEFAULT_TOKEN_ENV = "QUAY_OAUTH_TOKEN"


def add_parser(commands: Any) -> None:
    federation = commands.add_parser(
        "federation",
        help="Show or change which OIDC issuer/subject pairs a Quay robot trusts.",
        description=describe(
            "Manage a robot's federation list through Quay's API "
            "(/api/v1/organization/ORG/robots/NAME/federation, or /api/v1/user/... with "
            "--user). Needs a Quay OAuth token with org:admin, read from $QUAY_OAUTH_TOKEN "
            "(or --token-env VAR / --token-file FILE); robot tokens are not accepted there."
        ),
        epilog=(
            "examples:\n"
            "  export QUAY_OAUTH_TOKEN=...   # an OAuth application token with org:admin\n"
            "  docker-credential-quayfed federation show quay_federation+rhbk_user "
            "--quay-url https://quay.example.com\n"
            "  docker-credential-quayfed federation add quay_federation+rhbk_user "
            "--from-config quay.example.com\n"
            "  docker-credential-quayfed federation add quay_federation+rhbk_user "
            "--issuer https://rhbk.example.com/realms/quay --subject 3c1e...\n"
            "  docker-credential-quayfed federation remove quay_federation+rhbk_user --all\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = federation.add_subparsers(dest="federation_action", metavar="ACTION", required=True)
    descriptions = {
        "show": "Print the robot's federation entries.",
        "set": "Replace the whole list with the --issuer/--subject pairs given.",
        "add": "Add one issuer/subject pair (or the one the configured source mints).",
        "remove": "Remove one issuer/subject pair (or, with --all, every entry).",
    }
    for name, text in descriptions.items():
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("robot", metavar="ORG+ROBOT", help="full robot name")
        action.add_argument("--quay-url", help="Quay URL (default: from the config)")
        action.add_argument("--host", help="take quay_url and ca_bundle from this configured host")
        action.add_argument("--user", action="store_true", help="a user's robot (Quay 3.17.2+)")
        action.add_argument(
            "--token-env", default=DEFAULT_TOKEN_ENV, help="variable with the Quay OAuth token"
        )
        action.add_argument("--token-file", help="file with the Quay OAuth token")
        action.add_argument("--ca-bundle", help="CA bundle for Quay")
        action.add_argument("--json", action="store_true", help="print the list as JSON")
        if name in ("set", "add", "remove"):
            action.add_argument("--issuer", action="append", default=[], help="issuer URL")
            action.add_argument("--subject", action="append", default=[], help="subject (sub)")
        if name in ("set", "add"):
            audience = action.add_mutually_exclusive_group()
            audience.add_argument(
                "--audience",
                action="append",
                default=[],
                help="an audience the entries accept (repeatable); Quay then requires the "
                "JWT's aud to name one",
            )
            audience.add_argument(
                "--no-audience",
                action="store_true",
                help="write the entries without audiences (a Quay whose API keeps none)",
            )
        if name == "add":
            action.add_argument(
                "--from-config",
                metavar="HOST",
                help="mint a JWT with HOST's configured source and add its iss and sub, with "
                "the audience it carries",
            )
        if name == "remove":
            action.add_argument("--all", action="store_true", help="remove every entry")
        action.set_defaults(handler=run)


def _pairs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if len(args.issuer) != len(args.subject):
        raise UsageError(
            "--issuer and --subject must come in pairs", "give one --subject per --issuer"
        )
    audiences = sorted(set(getattr(args, "audience", [])))
    return [
        {"issuer": i, "subject": s, **({"audiences": audiences} if audiences else {})}
        for i, s in zip(args.issuer, args.subject)
    ]


def _settings_for(args: argparse.Namespace) -> tuple[str, str]:
    """(quay_url, ca_bundle) from the flags, else from the config."""
    if args.quay_url:
        return args.quay_url, args.ca_bundle or ""
    try:
        loaded = config.load(BY_NAME)
    except ConfigError as exc:
        raise UsageError(f"no --quay-url given and {exc.problem}", "pass --quay-url") from None
    if args.host:
        registry = loaded.registry(args.host)
    else:
        matches = [r for r in loaded.registries.values() if r.robot == args.robot]
        if len(matches) != 1:
            raise UsageError(
                f"cannot tell which Quay serves {args.robot} from the config",
                "pass --quay-url URL or --host HOST",
            )
        registry = matches[0]
    return registry.quay_base_url, args.ca_bundle or registry.ca_bundle


def _oauth_token(args: argparse.Namespace) -> str:
    if args.token_file:
        return secret_reader.read_secret_file(
            "Quay OAuth token", args.token_file, where="--token-file"
        )
    value = os.environ.get(args.token_env, "").strip()
    if not value:
        raise UsageError(
            f"no Quay OAuth token: ${args.token_env} is empty",
            f"export {args.token_env}=<token with org:admin> or pass --token-file",
        )
    return value


def _minted_entry(host: str, with_audience: bool) -> dict[str, Any]:
    """The iss and sub of a JWT HOST's source mints, and (``with_audience``) the audience it
    carries: the entry Quay needs to accept exactly that source's JWTs."""
    from docker_credential_quayfed.identity import audience_of

    registry = config.load(BY_NAME).registry(host)
    deadline = transport.Deadline(registry.timeout)
    with transport.hard_deadline(deadline), broker.registry_client(registry) as session:
        _, minted = broker.fetch_oidc_token(registry, session, deadline, new_request())
    entry: dict[str, Any] = {
        "issuer": str(minted.get("iss", "")),
        "subject": str(minted.get("sub", "")),
    }
    audiences = [aud for aud in audience_of(minted).split("\n") if aud]
    if with_audience and audiences:
        entry["audiences"] = audiences
    return entry


def _pair(entry: dict[str, Any]) -> tuple[str, str]:
    """What names an entry: its issuer and subject (other fields, such as audiences, do not)."""
    return str(entry["issuer"]), str(entry["subject"])


def _audiences(entry: dict[str, Any]) -> list[str] | None:
    """An entry's audiences as a sorted list; None when it has none."""
    found = entry.get("audiences")
    if not isinstance(found, list) or not found:
        return None
    return sorted(str(audience) for audience in found)


def _with(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``current`` with each of ``wanted`` in it: a missing pair added, and one already there
    given the audiences asked for (Quay matches on the pair); every other field kept."""
    asked = {_pair(entry): entry for entry in wanted}
    present = {_pair(entry) for entry in current}
    updated = [
        {**entry, "audiences": asked[_pair(entry)]["audiences"]}
        if _pair(entry) in asked
        and _audiences(asked[_pair(entry)]) is not None
        and _audiences(asked[_pair(entry)]) != _audiences(entry)
        else entry
        for entry in current
    ]
    return updated + [entry for entry in wanted if _pair(entry) not in present]


def _audiences_lost(
    sent: list[dict[str, Any]], stored: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """The entries of ``sent`` whose audiences Quay's list ``stored`` does not hold, each
    with what was lost."""
    by_pair = {_pair(entry): entry for entry in stored}
    return {
        _pair(entry): f"{','.join(wanted)} of {' '.join(_pair(entry))}"
        for entry in sent
        for wanted in [_audiences(entry)]
        if wanted is not None and _audiences(by_pair.get(_pair(entry), {})) != wanted
    }


def run(args: argparse.Namespace) -> int:
    action = args.federation_action
    quay_url, ca_bundle = _settings_for(args)
    url = quay.federation_api_url(quay_url, args.robot, args.user)
    token = _oauth_token(args)
    deadline = transport.Deadline(30.0)
    with transport.client(ca_bundle) as session:

        def call(method: str, body: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
            return quay.federation_call(
                session, method, url, token, deadline=deadline, entries=body
            )

        def write(
            body: list[dict[str, Any]],
            read: list[dict[str, Any]] | None,
            implied: frozenset[tuple[str, str]] = frozenset(),
        ) -> list[dict[str, Any]]:
            """Replace the list with ``body``, built from ``read`` (None: from nothing).
            ``implied``: new entries whose audiences nobody asked for (``--from-config``)."""
            # Quay has no compare-and-swap: a read just before the write, and one after, are
            # how a racing writer is noticed.
            if read is not None and call("GET") != read:
                raise QuayError(
                    f"the federation list of {args.robot} changed since this command read it "
                    "(another change is under way); nothing was written",
                    f"check it with 'federation show {args.robot}' and run the command again",
                )
            if body:
                call("POST", body)
            else:
                call("DELETE")
            stored = call("GET")
            if sorted(map(_pair, stored)) != sorted(map(_pair, body)):
                raise QuayError(
                    f"the federation list of {args.robot} changed while this command wrote it "
                    "(another change raced this one, and one of the two may be lost)",
                    f"check it with 'federation show {args.robot}' and run the command again "
                    "if an entry is missing",
                )
            lost = _audiences_lost(body, stored)
            if lost and set(lost) <= implied and not any(map(_audiences, stored)):
                # A Quay whose API keeps no audiences (before their introduction): the new
                # entry is what it can hold, and nothing that was restricted became open.
                log.warn(
                    f"Quay kept no audiences for {'; '.join(lost.values())} (its API drops "
                    "them): the entry accepts a JWT for any audience, as this Quay checks none"
                )
            elif lost:
                raise QuayError(
                    f"Quay dropped the audiences {'; '.join(lost.values())} from the federation "
                    f"of {args.robot}: those entries now accept a JWT for any audience",
                    f"set them again in Quay's UI, or on a Quay whose API keeps no audiences "
                    f"write new entries with --no-audience; check with 'federation show "
                    f"{args.robot}'",
                )
            return stored

        if action == "show":
            entries = call("GET")
        elif action == "set":
            entries = write(_pairs(args), None)
        elif action == "add":
            wanted = _pairs(args)
            implied: frozenset[tuple[str, str]] = frozenset()
            if args.from_config:
                minted = _minted_entry(args.from_config, not args.no_audience)
                wanted.append(minted)
                implied = frozenset([_pair(minted)]) if not args.audience else frozenset()
            if not wanted:
                raise UsageError("nothing to add", "give --issuer and --subject, or --from-config")
            current = call("GET")
            wanted_list = _with(current, wanted)
            changed = wanted_list != current
            entries = write(wanted_list, current, implied) if changed else current
        else:
            if args.all:
                entries = write([], None)
            else:
                unwanted = {_pair(pair) for pair in _pairs(args)}
                if not unwanted:
                    raise UsageError("nothing to remove", "give --issuer and --subject, or --all")
                current = call("GET")
                kept = [entry for entry in current if _pair(entry) not in unwanted]
                entries = current if kept == current else write(kept, current)
    _print(entries, args)
    return 0


def _print(entries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(entries))
        return
    if not entries:
        print(f"{args.robot}: no federation entries")
    for entry in entries:
        extra = "".join(
            f" {name}={','.join(map(str, value)) if isinstance(value, list) else value}"
            for name, value in entry.items()
            if name not in ("issuer", "subject")
        )
        line = f"{args.robot}: issuer={entry['issuer']} subject={entry['subject']}{extra}"
        print(printable(line))
