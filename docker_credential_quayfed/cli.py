"""argv -> front end. The only module that writes a protocol answer and picks exit codes.

Protocol actions (get, store, erase, list, version) go to ``actions`` without argparse, so a
cache hit stays fast; every other command goes through ``commands``, one module per command.
The launchers answer a cache hit in ``fastpath`` before this module loads and hand over what
it declined; after a hit inside the refresh-ahead window, the detached child that
``fastpath`` left arrives here with the registry to refresh, and this module runs the refresh.
A `get` that reaches here any other way (``python -m``) asks ``fastpath`` first too.
"""

# No `from __future__ import annotations` on the cache-hit path (importing it costs a get
# measurable time): annotations Python 3.9 cannot evaluate are written as strings.

import sys

from docker_credential_quayfed import fastpath

PROGRAM = fastpath.APP_NAME

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from collections.abc import Sequence

    from docker_credential_quayfed import actions

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(
    argv: "Sequence[str] | None" = None,
    stdin: "str | None" = None,
    refresh: "str | None" = None,
) -> int:
    """Run a command line (``sys.argv[1:]`` by default). ``stdin`` and ``refresh``: what a
    launcher's ``fastpath.answer_or_decline`` read, and the registry whose next token this
    process, the detached child of a hit inside the refresh-ahead window, is to mint."""
    if refresh is not None:
        from docker_credential_quayfed import actions, background

        background.refresh_and_leave(refresh, actions.new_request)
    from docker_credential_quayfed import protocol  # after that hit, which needs none of it

    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None and fastpath.called_as_kubelet_provider(sys.argv[0] if sys.argv else ""):
        args = ["kubelet", *args]  # the single-file zipapp installed under the provider's name
    try:
        if args and args[0] in protocol.ACTIONS:
            return _protocol(args, stdin)
        from docker_credential_quayfed import log
        from docker_credential_quayfed.errors import QuayfedError, unexpected

        try:
            if args and args[0] == "kubelet":
                from docker_credential_quayfed import kubelet

                return kubelet.main(args[1:])
            from docker_credential_quayfed.commands import run

            return run(args)
        except QuayfedError as exc:
            log.error(exc.message)
            return exc.exit_code
        except Exception as exc:  # a bug, an OS error, a missing module: one line, no traceback
            log.error(unexpected(exc))
            return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _protocol(args: "list[str]", stdin: "str | None") -> int:
    action = args[0]
    if len(args) > 1:
        from docker_credential_quayfed import actions
        from docker_credential_quayfed.errors import UsageError

        if args[1] in ("-h", "--help"):
            from docker_credential_quayfed.commands import print_help

            return print_help(action)
        usage = UsageError(
            f"'{action}' takes no arguments (the input comes on stdin)",
            f"see '{PROGRAM} --help'",
        )
        return _write(actions.Answer.failure(usage.message, EXIT_USAGE))
    if stdin is None:
        stdin = fastpath.read_stdin() if action in ("get", "store", "erase") else ""
        hit = fastpath.answer(stdin) if action == "get" else None
        if hit is not None:
            _serve(hit)
            return 0
    from docker_credential_quayfed import actions
    from docker_credential_quayfed.errors import unexpected

    try:
        result = actions.run(action, stdin)
    except Exception as exc:  # a bug or an OS error: one line, never a traceback
        result = actions.Answer.failure(unexpected(exc))
    return _write(result)


def _serve(hit: "tuple[str, str, bool]") -> None:
    """Write what ``fastpath.answer`` found; inside the refresh-ahead window, then start the
    detached refresh."""
    text, host, ahead = hit
    fastpath.write_line(text)
    if ahead:  # answered; the next token is minted in the background
        from docker_credential_quayfed import actions, background

        background.start_refresh(host, actions.new_request)


def _write(result: "actions.Answer") -> int:
    if result.text:
        fastpath.write_line(result.text)
    return result.code
