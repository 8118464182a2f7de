"""Refresh ahead: a `get` inside a token's refresh-ahead window answers from the cache at once
and leaves one detached process to mint the next token, so no pull waits on the network.

The refresh runs in a child in a session of its own whose standard streams are /dev/null:
it holds none of the client's pipes, and the client never waits for it. It takes
the registry's refresh lock without waiting (single flight: whoever holds the lock is already
refreshing). Its failures go to ``background.log`` in the cache directory (0600), which
``doctor`` reports.
"""

import posix
import time

from docker_credential_quayfed import fastpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.request import RequestContext

LOG_NAME = "background.log"
#: the log keeps its last lines only
MAX_LOG = 1 << 14


def start_refresh(host: str, request: "Callable[[], RequestContext]") -> None:
    """Start the detached refresh of ``host``'s token; returns at once (best effort). The child
    makes its request with ``request`` (the front end's).

    One fork (:func:`fastpath.detach`): the command exits right after answering, and the child,
    in a session of its own, is then adopted by init (no process waits for it, nor it for
    anyone)."""
    if fastpath.detach():
        refresh_and_leave(host, request)


def refresh_and_leave(host: str, request: "Callable[[], RequestContext]") -> "NoReturn":
    """In a detached child: refresh ``host``'s token, then end the process."""
    code = 1
    try:
        code = refresh(host, request())
    except BaseException:  # nothing may escape a detached child (it has no one to tell)
        code = 1
    finally:
        posix._exit(code)


def refresh(host: str, request: "RequestContext") -> int:
    """Mint ``host``'s next token unless another process is at it or it is no longer due."""
    from docker_credential_quayfed import broker, config
    from docker_credential_quayfed.errors import QuayfedError, unexpected
    from docker_credential_quayfed.sources import BY_NAME

    try:
        settings = config.load(BY_NAME)
    except QuayfedError:
        return 1
    registry = settings.registries.get(host)
    if registry is None or not registry.refresh_ahead:
        return 0
    try:
        broker.refresh_ahead(registry, request)
    except QuayfedError as exc:
        note(request.cache, f"{host}: refreshing ahead failed: {exc.message}")
        return 1
    except Exception as exc:  # a bug, an OS error, a missing module: this log is all that shows it
        note(request.cache, f"{host}: refreshing ahead failed: {unexpected(exc)}")
        return 1
    return 0


def note(cache: "TokenCache", line: str) -> None:
    """Append one redacted line to the background log (0600), keeping its tail."""
    from docker_credential_quayfed import log

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    old = cache.read_private(LOG_NAME) or ""
    text = (old + f"{stamp} {log.redact(' '.join(line.split()))}\n")[-MAX_LOG:]
    text = text[text.find("\n") + 1 :] if len(text) == MAX_LOG else text
    try:
        cache.write_private(LOG_NAME, text.encode("ascii", "replace").decode("ascii"))
    except Exception:  # the log is a courtesy: never a reason to fail
        return


def last_failure(cache: "TokenCache", host: str, within: float = 86400.0) -> "str | None":
    """The newest line of the background log about ``host`` when it is recent, for doctor."""
    for line in reversed((cache.read_private(LOG_NAME) or "").strip().splitlines()):
        stamp, _, message = line.partition(" ")
        if not message.startswith(f"{host}: "):
            continue
        try:
            when = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        except ValueError:
            return None
        return message if time.time() - when < within else None
    return None
