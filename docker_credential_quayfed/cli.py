"""argv -> action. The only module that prints to stdout and picks exit codes.

Protocol actions (get, store, erase, list, version) are dispatched without argparse so that a
cache hit stays fast; everything else goes through the argparse parser in ``commands``.
"""

from __future__ import annotations

import sys

from docker_credential_quayfed import __version__, hot, log, protocol
from docker_credential_quayfed.errors import ConfigError, QuayfedError
from docker_credential_quayfed.paths import APP_NAME as PROGRAM

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130

_STDIN_LIMIT = 1 << 16

if TYPE_CHECKING:
    from collections.abc import Sequence

    from docker_credential_quayfed import config as config_module
    from docker_credential_quayfed.cache import TokenCache


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in protocol.ACTIONS:
            if len(args) > 1 and args[1] not in ("-h", "--help"):
                raise_usage(f"'{args[0]}' takes no arguments (the input comes on stdin)")
            if len(args) > 1:
                from docker_credential_quayfed.commands import print_help

                return print_help(args[0])
            try:
                return _protocol_action(args[0])
            except QuayfedError as exc:
                # The protocol has one error shape: the message on stdout, exit 1.
                say(exc.message)
                return EXIT_FAILURE
            except Exception as exc:  # a bug or an OS error: one line, never a traceback
                say(_unexpected(exc))
                return EXIT_FAILURE
        from docker_credential_quayfed.commands import run

        try:
            return run(args)
        except QuayfedError as exc:
            log.error(exc.message)
            return exc.exit_code
        except Exception as exc:
            log.error(_unexpected(exc))
            return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except QuayfedError as exc:
        say(exc.message)
        return exc.exit_code


def _unexpected(exc: Exception) -> str:
    if log.debug_enabled():
        import traceback

        # Asked for with DOCKER_CREDENTIAL_QUAYFED_DEBUG=1; redacted like every other line.
        sys.stderr.write(log.redact(traceback.format_exc()))
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}; check the file system and permissions"
    return _internal(exc)


def raise_usage(message: str) -> None:
    from docker_credential_quayfed.errors import UsageError

    raise UsageError(message, f"see '{PROGRAM} --help'")


def say(line: str) -> None:
    """One line on stdout, redacted: the protocol puts error messages there."""
    answer(log.redact(line))


def answer(text: str) -> None:
    """The protocol's answer on stdout, exactly as given (credentials included)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _read_stdin() -> str:
    data = sys.stdin.buffer.read(_STDIN_LIMIT) if sys.stdin else b""
    return data.decode("utf-8", "replace")


def _protocol_action(action: str) -> int:
    if action == "version":
        say(f"{PROGRAM} {__version__}")
        return EXIT_OK
    if action == "get":
        return _get(_read_stdin())
    if action == "store":
        return _store(_read_stdin())
    if action == "erase":
        return _erase(_read_stdin())
    return _list()


def _get(server: str) -> int:
    key = protocol.registry_key(server)
    if not log.debug_enabled():
        found = hot.cached_answer(key)
        if found is not None:
            answer(protocol.Credentials(key, *found).to_json())
            return EXIT_OK
    from docker_credential_quayfed import broker, config
    from docker_credential_quayfed.cache import TokenCache

    try:
        settings = config.load()
    except ConfigError as exc:
        # A broken or missing config must never break pulls from anywhere: go anonymous.
        log.error(f"{exc.message} (answering 'not found' for {key})")
        say(protocol.NOT_FOUND)
        return EXIT_FAILURE
    registry = settings.registries.get(key)
    if registry is None:
        log.debug(f"{key} is not configured; answering 'not found'")
        say(protocol.NOT_FOUND)
        return EXIT_FAILURE
    cache = TokenCache(config.default_cache_dir())
    try:
        outcome = broker.robot_token(registry, cache)
        _remember(settings, cache)
    except QuayfedError as exc:
        return _failed_get(registry.on_failure, key, exc.message)
    except Exception as exc:  # a bug must not take the pull down with a traceback
        return _failed_get(registry.on_failure, key, _internal(exc))
    answer(
        protocol.Credentials(
            server_url=key, username=outcome.token.robot, secret=outcome.token.token
        ).to_json()
    )
    return EXIT_OK


def _remember(settings: config_module.Config, cache: TokenCache) -> None:
    """Let the next `get` find its token without parsing the TOML (best effort)."""
    try:
        cache.write_snapshot(
            str(settings.path),
            settings.stamp,
            {
                k: (r.identity, float(r.refresh_margin), r.robot)
                for k, r in settings.registries.items()
            },
        )
    except (OSError, QuayfedError) as exc:
        log.debug(f"could not write the config snapshot: {exc}")


def _failed_get(on_failure: str, key: str, message: str) -> int:
    if on_failure == "error":
        say(f"{key}: {message}")
        return EXIT_FAILURE
    log.error(f"{key}: {message} (continuing without credentials)")
    say(protocol.NOT_FOUND)
    return EXIT_FAILURE


def _internal(exc: Exception) -> str:
    return (
        f"internal error ({type(exc).__name__}); please report it with the output of "
        f"DOCKER_CREDENTIAL_QUAYFED_DEBUG=1"
    )


def _store(payload: str) -> int:
    import time

    from docker_credential_quayfed import config
    from docker_credential_quayfed.cache import TokenCache, robot_token_from_jwt
    from docker_credential_quayfed.claims import NotAJWT
    from docker_credential_quayfed.errors import UsageError

    credentials = protocol.parse_store(payload)
    settings = config.load()
    registry = settings.registry(credentials.server_url)
    if credentials.username != registry.robot:
        raise UsageError(
            f"refusing to store credentials for user {credentials.username!r} on "
            f"{registry.key}: this helper serves robot {registry.robot!r} there",
            f"log in as {registry.robot}, or change robot in {registry.config_file}",
        )
    refusal = (
        f"refusing to store a secret without an expiry for {registry.key}: this helper never "
        "writes long-lived secrets to disk"
    )
    now = time.time()
    try:
        entry = robot_token_from_jwt(registry.key, registry.robot, credentials.secret, now)
    except (NotAJWT, ValueError):
        raise UsageError(
            refusal, "use a robot token from Quay's federation exchange, or a credential store"
        ) from None
    if not entry.valid(now):
        raise UsageError(
            f"refusing to store an expired robot token for {registry.key}",
            "mint a fresh one with 'docker-credential-quayfed token " + registry.key + "'",
        )
    cache = TokenCache(config.default_cache_dir())
    cache.write(registry.identity, entry)
    _remember(settings, cache)
    return EXIT_OK


def _erase(server: str) -> int:
    from docker_credential_quayfed import config
    from docker_credential_quayfed.cache import TokenCache

    key = protocol.registry_key(server)
    removed = TokenCache(config.default_cache_dir()).erase(key)
    log.debug(f"erased {removed} cached token(s) for {key}")
    return EXIT_OK


def _list() -> int:
    from docker_credential_quayfed import config

    path = config.default_config_path()
    if not path.exists():  # nothing configured yet is an empty list, not an error
        say(protocol.encode_list({}))
        return EXIT_OK
    settings = config.load(path)
    say(protocol.encode_list({key: reg.robot for key, reg in settings.registries.items()}))
    return EXIT_OK
