"""Unit tests of the transport: its pure pieces, and requests against httpx.MockTransport."""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from docker_credential_quayfed import transport
from docker_credential_quayfed.errors import ConfigError, NetworkError
from tests.helper_process import run_helper
from tests.jwt_factory import fake_jwt


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("https://t.example/token", {"audience": "quay"}, "https://t.example/token?audience=quay"),
        (
            "https://t.example/token?api-version=2.0",
            {"audience": "quay.example.com"},
            "https://t.example/token?api-version=2.0&audience=quay.example.com",
        ),
        (
            "https://q.example/v2/auth?scope=x",
            {"service": "a b&c"},
            "https://q.example/v2/auth?scope=x&service=a+b%26c",
        ),
        ("https://t.example/token?", {"a": "1"}, "https://t.example/token?a=1"),
        ("https://t.example/token?keep=1", {}, "https://t.example/token?keep=1"),
    ],
)
def test_with_query_keeps_the_urls_own_query(
    url: str, params: dict[str, str], expected: str
) -> None:
    assert transport.with_query(url, params) == expected


# -- request: retries, bounds and the deadline --------------------------------------------------
URL = "https://quay.example.com/x"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries record their waits instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    return recorded


class Server:
    """Gives the scripted answers in turn (the last one again and again) and counts requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def send(handler: Callable[[httpx.Request], httpx.Response], seconds: float = 30) -> httpx.Response:
    with httpx.Client(transport=httpx.MockTransport(handler)) as session:
        return transport.request(
            session, "GET", URL, deadline=transport.Deadline(seconds), what="test request"
        )


def test_a_503_then_a_200_takes_two_attempts(waits: list[float]) -> None:
    server = Server(httpx.Response(503), httpx.Response(200, text="ok"))

    response = send(server)

    assert (response.status_code, response.text) == (200, "ok")
    assert len(server.requests) == 2
    assert len(waits) == 1 and 0 < waits[0] <= 2.0


def test_a_status_that_keeps_failing_is_returned_after_the_last_attempt(
    waits: list[float],
) -> None:
    server = Server(httpx.Response(502))

    assert send(server).status_code == 502
    assert len(server.requests) == transport.MAX_ATTEMPTS


@pytest.mark.parametrize(("retry_after", "expected"), [("2", 2.0), ("3600", 5.0), ("0", None)])
def test_retry_after_in_seconds_is_honoured_and_capped(
    waits: list[float], retry_after: str, expected: float | None
) -> None:
    server = Server(httpx.Response(429, headers={"Retry-After": retry_after}), httpx.Response(200))

    send(server)

    if expected is None:
        # Zero means "at once": the backoff still spaces the attempts a little.
        assert len(waits) == 1 and 0 < waits[0] <= 1.0
    else:
        assert waits == [expected]


def test_retry_after_as_an_http_date_is_honoured_and_capped(waits: list[float]) -> None:
    soon = email.utils.formatdate(time.time() + 3, usegmt=True)
    late = email.utils.formatdate(time.time() + 3600, usegmt=True)
    server = Server(
        httpx.Response(503, headers={"Retry-After": soon}),
        httpx.Response(503, headers={"Retry-After": late}),
        httpx.Response(200),
    )

    send(server)

    assert 1.0 < waits[0] <= 3.0
    assert waits[1] == 5.0


def test_a_wait_that_would_outlast_the_deadline_returns_the_answer_instead(
    waits: list[float],
) -> None:
    server = Server(httpx.Response(503, headers={"Retry-After": "5"}), httpx.Response(200))

    assert send(server, seconds=5).status_code == 503
    assert (len(server.requests), waits) == (1, [])


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("Connection refused"), httpx.ReadTimeout("timed out")],
    ids=["connect", "timeout"],
)
def test_a_connection_failure_is_retried_once_then_raises(
    waits: list[float], failure: Exception
) -> None:
    server = Server(failure)

    with pytest.raises(NetworkError) as caught:
        send(server)

    assert len(server.requests) == transport.MAX_CONNECT_ATTEMPTS == 2
    assert len(waits) == 1
    assert "quay.example.com/x" in caught.value.message
    assert transport.NETWORK_FIX in caught.value.message


def test_a_connection_failure_then_an_answer_succeeds(waits: list[float]) -> None:
    server = Server(httpx.ConnectError("Connection refused"), httpx.Response(200))

    assert send(server).status_code == 200
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_a_4xx_is_returned_without_a_retry(waits: list[float], status: int) -> None:
    server = Server(httpx.Response(status))

    assert send(server).status_code == status
    assert (len(server.requests), waits) == (1, [])


def test_a_body_over_max_response_raises() -> None:
    server = Server(httpx.Response(200, content=b"x" * (transport.MAX_RESPONSE + 1)))

    with pytest.raises(NetworkError, match="answered more than 1024 KiB"):
        send(server)


def test_a_body_of_exactly_max_response_is_read_whole() -> None:
    server = Server(httpx.Response(200, content=b"x" * transport.MAX_RESPONSE))

    assert len(send(server).content) == transport.MAX_RESPONSE


@pytest.mark.parametrize("seconds", [0.0, 0.5, -3.0])
def test_an_exhausted_deadline_raises_without_sending(seconds: float) -> None:
    server = Server(httpx.Response(200))

    with pytest.raises(transport.DeadlineExceeded, match="out of time"):
        send(server, seconds=seconds)

    assert server.requests == []


def test_hard_deadline_interrupts_a_handler_that_hangs() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        time.sleep(5)
        return httpx.Response(200)

    previous = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    budget = transport.Deadline(0.5)
    with pytest.raises(transport.DeadlineExceeded) as caught, transport.hard_deadline(budget):
        send(hang)

    assert time.monotonic() - started < 2.0
    assert "test request at https://quay.example.com/x timed out" in caught.value.message
    assert signal.getsignal(signal.SIGALRM) is previous
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_hard_deadline_leaves_work_that_ends_in_time_alone() -> None:
    with transport.hard_deadline(transport.Deadline(5)):
        response = send(Server(httpx.Response(200, text="ok")))

    assert response.text == "ok"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# -- check_scheme ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("https://quay.example.com/v2/", False),
        ("https://quay.example.com/v2/", True),
        ("http://127.0.0.1:8080/token", True),
        ("http://127.8.9.10:8080/token", True),
        ("http://[::1]:8080/token", True),
    ],
)
def test_check_scheme_accepts_https_and_loopback_http_when_allowed(
    url: str, allow_http: bool
) -> None:
    transport.check_scheme(url, allow_http=allow_http)


@pytest.mark.parametrize(
    ("url", "allow_http", "expected"),
    [
        ("http://127.0.0.1:8080/token", False, "allow_insecure_http = true"),
        ("http://localhost/token", False, "is plain http"),
        ("http://localhost:8080/token", True, "literal loopback address"),
        ("http://foo.localhost:8080/token", True, "literal loopback address"),
        ("http://127.0.0.1.nip.io/token", True, "is not https"),
        ("http://127.000.000.001/token", True, "is not https"),
        ("http://quay.example.com/token", True, "is not https"),
        ("http://10.0.0.1/token", True, "is not https"),
        ("ftp://quay.example.com/token", True, "is not https"),
        ("https://user:pw@quay.example.com/", True, "carries user info"),
        ("https:///token", True, "has no host"),
    ],
)
def test_check_scheme_refuses_http_except_to_loopback_when_allowed(
    url: str, allow_http: bool, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        transport.check_scheme(url, allow_http=allow_http)

    assert expected in caught.value.message


@pytest.mark.parametrize(
    "url",
    ["https://robot:hunter2@quay.example.com/", "https://robot:hunter2@quay.example.com:99999/"],
)
def test_check_scheme_does_not_repeat_the_password_of_a_refused_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        transport.check_scheme(url, allow_http=False)

    assert "hunter2" not in caught.value.message


def test_the_client_refuses_cleartext_before_connecting() -> None:
    with transport.client() as session, pytest.raises(ConfigError, match="plain http"):
        session.get("http://127.0.0.1:9/never")


def test_a_loopback_name_is_refused_in_one_line_naming_the_address_to_use() -> None:
    with pytest.raises(ConfigError) as caught:
        transport.check_scheme("http://foo.localhost:8080/token", allow_http=True)

    message = caught.value.message
    assert message.startswith("refusing to send credentials to http://foo.localhost:8080/token")
    assert "http://127.0.0.1:PORT" in message
    assert len(message.splitlines()) == 1


# -- proxies: cleartext goes straight to loopback, https through the proxy as configured ------
class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``body``; records method, target, Authorization."""

    status = 200
    body = b"ok"
    seen: list[tuple[str, str, str]]

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        body = self.body
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_CONNECT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_server(
    status: int, body: bytes = b"ok"
) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A real HTTP server on 127.0.0.1: its URL and the requests it saw."""
    seen: list[tuple[str, str, str]] = []
    handler = type("Handler", (_Recorder,), {"status": status, "body": body, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, str]]]:
    """A proxy (answering 502 to all) set in every proxy variable httpx reads."""
    with recording_server(502) as (url, seen):
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, url)
            monkeypatch.setenv(name.lower(), url)
        yield seen


def test_cleartext_to_loopback_never_goes_through_the_proxy(
    proxy: list[tuple[str, str, str]],
) -> None:
    with recording_server(200) as (url, seen), transport.client(allow_http=True) as session:
        response = transport.request(
            session,
            "GET",
            f"{url}/oauth2/federation/robot/token",
            deadline=transport.Deadline(10),
            what="test exchange",
            auth=("org+robot", "header.claims.signature"),
        )

    assert response.status_code == 200
    assert proxy == []
    [(method, target, authorization)] = seen
    assert (method, target) == ("GET", "/oauth2/federation/robot/token")
    assert authorization.startswith("Basic ")


def test_https_still_goes_through_the_proxy_from_the_environment(
    proxy: list[tuple[str, str, str]],
) -> None:
    with transport.client() as session, pytest.raises(NetworkError):
        transport.request(
            session, "GET", "https://quay.example.com/x", deadline=transport.Deadline(10),
            what="test request",
        )  # fmt: skip

    assert [(method, target) for method, target, _ in proxy][:1] == [
        ("CONNECT", "quay.example.com:443")
    ]


def test_the_helper_sends_its_cleartext_exchange_past_a_configured_proxy(
    proxy: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    now = int(time.time())
    jwt = fake_jwt({"iss": "https://sso.example.test/realms/quay", "sub": "ci",
                    "iat": now, "exp": now + 300})  # fmt: skip
    with recording_server(400, b'{"message": "Token does not match robot"}') as (url, seen):
        config = tmp_path / "config.toml"
        config.write_text(
            '[registries."quay.example.test"]\nrobot = "org+bot"\n'
            'issuer = "https://sso.example.test/realms/quay"\nsource = "env"\n'
            f'token_env = "QUAYFED_TEST_JWT"\nquay_url = "{url}"\nallow_insecure_http = true\n'
        )
        result = run_helper("get", "quay.example.test", env={
            "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
            "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
            "QUAYFED_TEST_JWT": jwt,
        })  # fmt: skip

    assert "Token does not match robot" in result.stderr
    assert proxy == []
    assert [(method, target) for method, target, _ in seen] == [
        ("GET", "/oauth2/federation/robot/token")
    ]


def test_the_helper_refuses_a_localhost_name_for_cleartext_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[registries."quay.example.test"]\nrobot = "org+bot"\n'
        'issuer = "https://sso.example.test/realms/quay"\nsource = "env"\n'
        'token_env = "QUAYFED_TEST_JWT"\nquay_url = "http://foo.localhost:8080"\n'
        "allow_insecure_http = true\n"
    )

    result = run_helper("list", env={"DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config)})

    assert result.returncode == 1
    [line] = result.stdout.splitlines()
    assert "http://foo.localhost:8080 is plain http to a host name" in line
    assert "http://127.0.0.1:PORT" in line


@pytest.mark.parametrize("variable", ["ALL_PROXY", "https_proxy"])
def test_a_socks_proxy_without_socks_support_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """It was "internal error (ImportError)" on every networked get."""
    for name in transport.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "socks5h://user:proxy-secret@127.0.0.1:1080")
    monkeypatch.setitem(sys.modules, "socksio", None)  # as when it is not installed
    with pytest.raises(ConfigError) as caught:
        transport.client()
    message = caught.value.message
    assert f"${variable} names a socks5h:// proxy" in message
    assert "docker-credential-quayfed[socks]" in message and "NO_PROXY" in message
    assert "proxy-secret" not in message and "\n" not in message
