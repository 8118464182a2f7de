"""Run a WSGI application over HTTP or HTTPS in a background thread (stdlib ``wsgiref``)."""

from __future__ import annotations

import io
import json
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .tls import TestPKI

#: Seconds a connection may stay silent before the server drops it.
CONNECTION_TIMEOUT = 30.0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None
    #: connections and requests since the start, by the client's User-Agent (what a client
    #: costs: the emulator's own fetches of the issuer's keys are told apart)
    _counting = threading.Lock()

    def count(self, agent: str, *, connection: bool) -> None:
        with self._counting:
            tally = self.__dict__.setdefault("tally", {})
            connections, requests = tally.get(agent, (0, 0))
            tally[agent] = (connections + int(connection), requests + 1)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so that a slow or broken
        # client cannot stall the accept loop.
        request.settimeout(CONNECTION_TIMEOUT)
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        try:
            super().finish_request(request, client_address)
        finally:
            if self.ssl_context is not None:
                request.close()  # the wrapped socket; shutdown_request sees the detached original

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early are normal in tests; stay quiet.
        if isinstance(sys.exc_info()[1], _HANGUPS):
            return
        super().handle_error(request, client_address)


_HANGUPS = (ConnectionError, TimeoutError, ssl.SSLError)


class _ServerHandler(ServerHandler):
    def log_exception(self, exc_info: Any) -> None:
        # A client that hangs up mid-answer (a test's timeout) is not an error of the server.
        if not isinstance(exc_info[1], _HANGUPS):
            super().log_exception(exc_info)


class _QuietHandler(WSGIRequestHandler):
    log_requests = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.log_requests:
            super().log_message(format, *args)

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        # wsgiref answers one request per connection: each request is a connection's first.
        self.server.count(self.headers.get("User-Agent", ""), connection=True)  # type: ignore[attr-defined]
        # Read the whole body first: answering early (401, 403) and closing with unread bytes
        # would make the TLS stack reset the connection before the client reads the answer.
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        handler = _ServerHandler(
            body,
            self.wfile,  # type: ignore[arg-type]
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        app = self.server.get_app()  # type: ignore[attr-defined]
        handler.run(app)


class _LoggingHandler(_QuietHandler):
    log_requests = True


def _head_strips_body(app: WSGIApplication) -> WSGIApplication:
    """Answer HEAD like GET, without the body (wsgiref would send it)."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "HEAD":
            return app(environ, start_response)
        environ = dict(environ)
        environ["REQUEST_METHOD"] = "GET"
        environ["quayfed.emulator.head"] = True
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close: Callable[[], None] | None = getattr(body, "close", None)
            if close is not None:
                close()
        return []

    return wrapped


class RunningServer:
    """A WSGI server running in a daemon thread; a context manager that closes it."""

    def __init__(self, server: _ThreadingWSGIServer, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url
        self.port: int = server.server_address[1]
        self._closed = False

    def close(self) -> None:
        """Stop accepting connections and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunningServer({self.url!r})"

    def traffic(self, agent_prefix: str = "") -> tuple[int, int]:
        """(connections, requests) since the server started from clients whose User-Agent
        starts with ``agent_prefix``."""
        tally: dict[str, tuple[int, int]] = self._server.__dict__.get("tally", {})
        with self._server._counting:
            chosen = [v for k, v in tally.items() if k.startswith(agent_prefix)]
        return sum(c for c, _ in chosen), sum(r for _, r in chosen)


def serve_wsgi(
    app: WSGIApplication,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    pki: TestPKI | None = None,
    log_requests: bool = False,
) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0 picks a free port), over HTTPS when ``pki`` is given.

    Each connection is handled in its own daemon thread. HEAD is answered like GET without a body.
    Request lines are logged to stderr only when ``log_requests`` is True.
    """
    handler = _LoggingHandler if log_requests else _QuietHandler

    class Server(_ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, port), handler)
    if pki is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        server.ssl_context = context
    server.set_app(_head_strips_body(app))
    bound_port = server.server_address[1]
    scheme = "https" if pki is not None else "http"
    url_host = f"[{host}]" if ":" in host else host
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.name = f"emulator-{scheme}-{bound_port}"
    thread.start()
    return RunningServer(server, thread, f"{scheme}://{url_host}:{bound_port}")


# --- Small request/response helpers shared by the emulator applications -----------------------

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Request:
    """The parts of a WSGI environ the emulators read."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.path: str = environ.get("PATH_INFO", "") or "/"
        self.query: dict[str, list[str]] = urllib.parse.parse_qs(
            environ.get("QUERY_STRING", ""), keep_blank_values=True
        )
        self._body: bytes | None = None

    def header(self, name: str) -> str | None:
        key = "HTTP_" + name.upper().replace("-", "_")
        if name.lower() == "content-type":
            key = "CONTENT_TYPE"
        value = self.environ.get(key)
        return value if isinstance(value, str) else None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            stream = self.environ.get("wsgi.input")
            self._body = stream.read(length) if stream is not None and length > 0 else b""
        return self._body

    def form(self) -> dict[str, str]:
        """The urlencoded body, first value of each field."""
        parsed = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def json(self) -> Any:
        """The JSON body; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))

    @property
    def host_url(self) -> str:
        scheme = self.environ.get("wsgi.url_scheme", "http")
        server = self.environ.get("SERVER_NAME", "localhost")
        host = self.environ.get("HTTP_HOST") or f"{server}:{self.environ.get('SERVER_PORT', '80')}"
        return f"{scheme}://{host}"


class Response:
    """A complete response: status, headers and body bytes; callable as a WSGI body producer."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = list(headers)
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(status, json.dumps(payload).encode(), "application/json", headers)

    @classmethod
    def html(cls, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return cls(status, text.encode(), "text/html; charset=utf-8", headers)

    def __call__(self, start_response: StartResponse) -> list[bytes]:
        reason = _REASONS.get(self.status, "Unknown")
        headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        start_response(f"{self.status} {reason}", headers)
        return [self.body]


def werkzeug_error_page(status: int, description: str) -> str:
    """The HTML page a Flask application (such as Quay) answers for an unhandled error."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        "<!doctype html>\n<html lang=en>\n"
        f"<title>{title}</title>\n<h1>{_REASONS.get(status, 'Error')}</h1>\n"
        f"<p>{description}</p>\n"
    )
