"""The docker-credential-helpers front end: get, store, erase, list and version.

Each action takes its stdin text and returns an :class:`Answer` (what goes on stdout and the
exit code); only ``cli`` writes it. A ``get`` tries the fast path first, which imports nothing
beyond what Python has loaded at start; everything else is imported only when needed.
"""

from __future__ import annotations

import time

from docker_credential_quayfed import __version__, fastpath, log, protocol
from docker_credential_quayfed.errors import (
    ConfigError,
    LoginRequired,
    QuayfedError,
    UsageError,
    internal_error,
)
from docker_credential_quayfed.paths import APP_NAME as PROGRAM
from docker_credential_quayfed.text import printable

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from docker_credential_quayfed.cache import RobotToken
    from docker_credential_quayfed.config import Config
    from docker_credential_quayfed.request import RequestContext

#: when this process began its work: a get's ``timeout`` counts from here
STARTED = time.monotonic()

EXIT_OK = 0
EXIT_FAILURE = 1


class Answer:
    """stdout (one line, or the credentials' JSON) and the exit code of a protocol action."""

    __slots__ = ("code", "text")

    def __init__(self, text: str, code: int = EXIT_OK) -> None:
        self.text = text
        self.code = code

    @classmethod
    def failure(cls, message: str, code: int = EXIT_FAILURE) -> Answer:
        """The protocol's one error shape: the (redacted, escaped) message on stdout."""
        return cls(printable(log.redact(message)), code)


NOT_FOUND = Answer(protocol.NOT_FOUND, EXIT_FAILURE)


def new_request() -> RequestContext:
    """This process's request: the cache directory the environment names, started at STARTED
    (the protocol's front end makes it once, past the fast path)."""
    from docker_credential_quayfed import config
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.request import RequestContext

    return RequestContext(TokenCache(config.default_cache_dir()), started=STARTED)


def run(action: str, stdin: str) -> Answer:
    try:
        if action == "version":
            return Answer(f"{PROGRAM} {__version__}")
        if action == "get":
            return get(stdin)
        if action == "store":
            return store(stdin)
        if action == "erase":
            return erase(stdin)
        return list_registries()
    except QuayfedError as exc:
        # docker-credential-helpers answers every error of an action, bad stdin included,
        # with its message on stdout and exit 1; exit 2 is for a misused command line.
        return Answer.failure(exc.message)


def get(stdin: str) -> Answer:
    """The full `get`. The fast path has been tried before it (``fastpath.answer``, by the
    launcher or cli) except with a debug log, where it is tried here so the log says which
    path answered."""
    host = protocol.registry_key(stdin)
    found = fastpath.cached_answer(host) if log.debug_enabled() else None
    if found is not None:
        robot, token, ahead = found
        log.debug(f"{host}: answered by the fast path (snapshot and token file)")
        if ahead:
            from docker_credential_quayfed import background

            background.start_refresh(host, new_request)
        return Answer(protocol.Credentials(host, robot, token).to_json())
    log.debug(f"{host}: taking the full path")
    from docker_credential_quayfed import broker, config
    from docker_credential_quayfed.sources import BY_NAME

    try:
        settings = config.load(BY_NAME)
    except ConfigError as exc:
        # A broken or missing config must never break pulls from anywhere: go anonymous.
        log.error(f"{exc.message} (answering 'not found' for {host})")
        return NOT_FOUND
    registry = settings.registries.get(host)
    if registry is None:
        log.debug(f"{host} is not configured; answering 'not found'")
        return NOT_FOUND
    request = new_request()
    try:
        outcome = broker.robot_token(registry, request)
    except LoginRequired as exc:
        # A person must log in: whatever on_failure says, the pull goes on anonymously.
        log.error(f"{host}: {exc.message}")
        return NOT_FOUND
    except QuayfedError as exc:
        return _failed_get(registry.on_failure, host, exc.message)
    except Exception as exc:  # a bug must not take the pull down with a traceback
        return _failed_get(registry.on_failure, host, internal_error(exc))
    log.debug(f"{host}: answered by the full path ({outcome.how})")
    keep_snapshot(settings, request)
    if (
        outcome.how == broker.CACHED
        and registry.refresh_ahead
        and outcome.token.ahead_due(registry.refresh_margin, request.clock())
    ):
        from docker_credential_quayfed import background

        background.start_refresh(host, lambda: request)
    return _credentials(host, outcome.token)


def _credentials(host: str, token: RobotToken) -> Answer:
    return Answer(protocol.Credentials(host, token.robot, token.token).to_json())


def _failed_get(on_failure: str, host: str, message: str) -> Answer:
    if on_failure == "error":
        return Answer.failure(f"{host}: {message}")
    log.error(f"{host}: {message} (continuing without credentials)")
    return NOT_FOUND


def keep_snapshot(loaded: Config, request: RequestContext) -> None:
    """Let the next `get` find its token without parsing the TOML (best effort)."""
    from docker_credential_quayfed import broker

    try:
        broker.snapshot_config(loaded, request)
    except (OSError, QuayfedError) as exc:
        log.debug(f"could not write the config snapshot: {exc}")


def store(stdin: str) -> Answer:
    from docker_credential_quayfed import broker, config
    from docker_credential_quayfed.cache import robot_token_from_jwt
    from docker_credential_quayfed.claims import NotAJWT
    from docker_credential_quayfed.sources import BY_NAME

    credentials = protocol.parse_store(stdin)
    settings = config.load(BY_NAME)
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
            f"mint a fresh one with '{PROGRAM} token {registry.key}'",
        )
    request = new_request()
    request.cache.write(broker.key_for(registry, request), entry)
    keep_snapshot(settings, request)
    return Answer("")


def erase(stdin: str) -> Answer:
    host = protocol.registry_key(stdin)
    removed = new_request().cache.erase_when_idle(host)
    log.debug(f"erased {removed} cached token(s) for {host}")
    return Answer("")


def list_registries() -> Answer:
    from docker_credential_quayfed import config
    from docker_credential_quayfed.sources import BY_NAME

    path = config.default_config_path()
    if not path.exists():  # nothing configured yet is an empty list, not an error
        return Answer(protocol.encode_list({}))
    settings = config.load(BY_NAME, path)
    return Answer(protocol.encode_list({k: r.robot for k, r in settings.registries.items()}))
