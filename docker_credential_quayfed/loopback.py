"""The loopback redirect of ``login --browser`` (RFC 8252 7.3): a one-shot HTTP listener on
127.0.0.1 and an ephemeral port that takes the authorization code, if its state matches."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Callable
from types import TracebackType

from docker_credential_quayfed import log
from docker_credential_quayfed.errors import IssuerError

CALLBACK_PATH = "/callback"
#: seconds a connection may stay silent before the listener drops it
SILENT_CLIENT_LIMIT = 2.0
_DONE_PAGE = (
    b"<!doctype html><title>docker-credential-quayfed</title>"
    b"<p>Logged in. You can close this tab and return to the terminal.</p>"
)
_FAILED_PAGE = (
    b"<!doctype html><title>docker-credential-quayfed</title>"
    b"<p>The login did not complete. The terminal says why.</p>"
)


class Receiver:
    """Listens on 127.0.0.1 until a redirect brings the code for ``state`` (or an error)."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.code: str | None = None
        self.error: str | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # A client that connects and sends nothing must not hold the one-request-at-a-time
            # listener (and with it the real redirect) until the login gives up.
            timeout = SILENT_CLIENT_LIMIT

            def do_GET(self) -> None:  # the name http.server calls
                receiver._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the query holds the code: never logged

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.2
        self.thread = threading.Thread(target=self._serve, name="loopback", daemon=True)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{CALLBACK_PATH}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.arrived.set()
        self.thread.join(timeout=2)
        self.server.server_close()

    def _serve(self) -> None:
        while not self.arrived.is_set():
            self.server.handle_request()

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        query = urllib.parse.parse_qs(parsed.query)
        state = query.get("state", [""])[0]
        if parsed.path != CALLBACK_PATH or not state or state != self.state:
            # Not our redirect (another page, a forged or stale one): ignored.
            self._answer(request, 404, _FAILED_PAGE)
            return
        code = query.get("code", [""])[0]
        error = query.get("error", [""])[0]
        if code:
            log.secret(code)
            self.code = code
            self._answer(request, 200, _DONE_PAGE)
        else:
            self.error = error or "no code"
            self._answer(request, 400, _FAILED_PAGE)
        self.arrived.set()

    @staticmethod
    def _answer(request: http.server.BaseHTTPRequestHandler, status: int, page: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(page)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(page)

    def wait(self, timeout: float, tick: Callable[[float], None]) -> str | None:
        """The code, or None after ``timeout`` seconds; raises when the issuer sent an error."""
        ends = time.monotonic() + timeout
        while not self.arrived.wait(min(1.0, max(0.0, ends - time.monotonic()))):
            left = ends - time.monotonic()
            if left <= 0:
                return None
            tick(left)
        if self.error is not None:
            raise IssuerError(
                f"the issuer ended the browser login with {log.server_text(self.error, limit=60)}",
                "run login again and approve the request in the browser",
            )
        return self.code
