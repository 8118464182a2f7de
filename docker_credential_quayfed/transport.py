"""The one HTTP layer: bounded timeouts, one overall deadline, retries with backoff."""

from __future__ import annotations

import contextlib
import email.utils
import http.cookiejar
import random
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from docker_credential_quayfed import __version__, files, log, urls
from docker_credential_quayfed.deadline import Deadline as Deadline  # one budget, re-exported
from docker_credential_quayfed.errors import NetworkError

if TYPE_CHECKING:
    import ssl

USER_AGENT = f"docker-credential-quayfed/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ATTEMPTS = 3
# A refused or failed connection is retried once: a server that is down must not slow pulls.
MAX_CONNECT_ATTEMPTS = 2
NETWORK_FIX = "check the URL, the network/proxy settings and that the server is up"
#: no issuer or Quay answer we use is anywhere near this; a bigger one is refused, not buffered
MAX_RESPONSE = 1 << 20
MAX_CA_BUNDLE = 8 << 20
#: form fields whose values are credentials
SECRET_FIELDS = frozenset(
    {"password", "client_secret", "refresh_token", "code", "code_verifier", "device_code",
     "client_assertion", "assertion", "subject_token", "actor_token", "token"}
)  # fmt: skip


class DeadlineExceeded(NetworkError):
    """The budget ran out while a server was still (slowly) answering."""


def client(ca_bundle: str = "", *, allow_http: bool = False) -> httpx.Client:
    """The one HTTP client: verified TLS (optionally against ``ca_bundle``), no redirects.

    Plain http is refused at send time except to a literal loopback address when
    ``allow_http`` is set, and it never goes through a proxy: the proxy would read the
    credential. https honours the proxy settings in the environment.
    """
    # One context for every transport: building another costs as much as a cold get's TLS.
    verify = tls_context(ca_bundle) if ca_bundle else httpx.create_ssl_context(trust_env=True)

    def refuse_cleartext(request: httpx.Request) -> None:
        check_scheme(str(request.url), allow_http=allow_http)

    try:
        return _client(verify, refuse_cleartext)
    except ImportError:
        raise _socks_unsupported() from None


def _client(verify: ssl.SSLContext, refuse_cleartext: Any) -> httpx.Client:
    return httpx.Client(
        verify=verify,
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        # No state between requests: a cookie a server set has no business in the next one.
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        trust_env=True,
        # Overrides HTTP_PROXY/ALL_PROXY for http:// only: cleartext goes straight to loopback.
        mounts={"http://": httpx.HTTPTransport(verify=verify, trust_env=False)},
        event_hooks={"request": [refuse_cleartext]},
    )


#: the variables httpx takes an https proxy from, in its order
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _socks_unsupported() -> Exception:
    """httpx cannot load SOCKS support: say which variable names the SOCKS proxy."""
    import os

    from docker_credential_quayfed.errors import ConfigError

    named = next(
        (n for n in PROXY_VARIABLES if os.environ.get(n, "").strip().lower().startswith("socks")),
        "",
    )
    scheme = os.environ.get(named, "").strip().split("://")[0] if named else "socks"
    where = f"${named} names a {scheme}:// proxy" if named else "a SOCKS proxy is configured"
    return ConfigError(
        f"{where}, and SOCKS support (the Python package socksio) is not installed",
        "pip install 'docker-credential-quayfed[socks]' (Debian: apt install python3-socksio), "
        f"or unset {named or 'the proxy variable'} or add the issuer and Quay to NO_PROXY",
    )


def tls_context(ca_bundle: str) -> ssl.SSLContext:
    """A verifying TLS context trusting the PEM bundle at ``ca_bundle`` (read safely, bounded)."""
    import ssl

    from docker_credential_quayfed.errors import ConfigError

    try:
        pem = files.read_regular(ca_bundle, MAX_CA_BUNDLE).decode("ascii")
        context = ssl.create_default_context(cadata=pem)
    except files.FileRefused as exc:
        raise ConfigError(
            f"the CA bundle {ca_bundle} {exc}", "set ca_bundle to a PEM file"
        ) from None
    except (OSError, ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a PEM certificate bundle"
        raise ConfigError(
            f"cannot load the CA bundle {ca_bundle}: {reason}",
            "set ca_bundle to a readable PEM file",
        ) from None
    return context


def check_scheme(url: str, *, allow_http: bool) -> None:
    """Refuse any scheme but https; http only to a loopback host when explicitly allowed."""
    from docker_credential_quayfed.errors import ConfigError

    refused = urls.refusal(url, allow_http=allow_http)
    if refused is not None:
        problem, fix = refused
        raise ConfigError(f"refusing to send credentials to {problem}", fix)


#: what is being waited for right now, for the message when the deadline strikes
_in_flight: list[str] = []


@contextlib.contextmanager
def hard_deadline(deadline: Deadline) -> Iterator[None]:
    """End whatever runs inside once ``deadline`` is spent, even a server dripping bytes.

    Per-read timeouts cannot bound a server that sends one byte every few seconds, so the
    main thread arms an interval timer; elsewhere only the per-read bounds apply.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return
    armed = [True]

    def expire(signum: int, frame: object) -> None:
        if armed[0]:
            # Fire again shortly in case this raise lands where Python swallows it (a gc
            # callback, a __del__); the block's exit disarms the timer for good.
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            raise DeadlineExceeded(
                f"{_in_flight[-1] if _in_flight else 'the refresh'} timed out "
                f"(it must finish within {deadline.seconds:.0f}s)",
                "check that the issuer and Quay are reachable and healthy; timeout in the "
                "config sets the bound",
            )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(deadline.remaining(), 0.01))
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def request(
    session: httpx.Client,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    what: str,
    retry_statuses: frozenset[int] = RETRY_STATUSES,
    params: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send with retries on connection errors and retryable statuses, within the deadline.

    ``params`` are added to the query ``url`` already has (httpx's own ``params=`` replaces it).
    The body is read here, bounded in size (MAX_RESPONSE) and by the deadline. Returns the
    last response (which may still be an error status); raises NetworkError when no response
    could be had at all.
    """
    if params:
        url = with_query(url, params)
    _register_secrets(auth, kwargs)
    attempt = 0
    while True:
        attempt += 1
        budget = deadline.remaining()
        if budget <= 0.5:
            raise DeadlineExceeded(
                f"gave up on {what} at {urls.shown(url)}: out of time",
                "check that the server is reachable",
            )
        timeout = httpx.Timeout(min(READ_TIMEOUT, budget), connect=min(CONNECT_TIMEOUT, budget))
        log.debug(f"{what}: {method} {urls.shown(url)} (attempt {attempt})")
        _in_flight.append(f"{what} at {urls.shown(url)}")
        try:
            response = _send(session, method, url, auth, timeout, deadline, kwargs)
        except httpx.TimeoutException:
            failure = f"{what} at {urls.shown(url)} timed out"
            response = None
        except httpx.ConnectError as exc:
            failure = f"cannot connect to {urls.shown(url)} for {what}: {_reason(exc)}"
            response = None
        except httpx.HTTPError as exc:
            failure = f"{what} at {urls.shown(url)} failed: {_reason(exc)}"
            response = None
        except UnicodeError:
            failure = f"{what} at {urls.shown(url)} answered with unreadable headers"
            response = None
        finally:
            _in_flight.pop()
        if response is not None:
            log.debug(f"{what}: HTTP {response.status_code}")
            if response.status_code not in retry_statuses or attempt >= MAX_ATTEMPTS:
                return response
            wait = _retry_after(response) or _backoff(attempt)
            failure = f"{what} at {urls.shown(url)} answered HTTP {response.status_code}"
        else:
            if attempt >= MAX_CONNECT_ATTEMPTS:
                raise NetworkError(failure, NETWORK_FIX)
            wait = _backoff(attempt)
        if deadline.remaining() - wait <= 1.0:
            if response is not None:
                return response
            raise NetworkError(failure, NETWORK_FIX)
        log.debug(f"{failure}; retrying in {wait:.1f}s")
        time.sleep(wait)


def _send(
    session: httpx.Client,
    method: str,
    url: str,
    auth: tuple[str, str] | None,
    timeout: httpx.Timeout,
    deadline: Deadline,
    kwargs: dict[str, Any],
) -> httpx.Response:
    """One attempt: the response with its body read, at most MAX_RESPONSE bytes, in time."""
    prepared = session.build_request(method, url, timeout=timeout, **kwargs)
    response = session.send(prepared, auth=auth, stream=True)
    try:
        chunks = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise NetworkError(
                    f"{urls.shown(url)} answered more than {MAX_RESPONSE >> 10} KiB",
                    "check the URL: it must point at the issuer or Quay itself",
                )
            if deadline.remaining() <= 0:
                raise httpx.ReadTimeout("the answer did not arrive in time", request=prepared)
            chunks.append(chunk)
    finally:
        response.close()
    # The body is decoded already: drop the headers that described its encoding on the wire.
    # Raw bytes: a header a server sent in Latin-1 or UTF-8 must survive the copy.
    headers = [
        (name, value)
        for name, value in response.headers.raw
        if name.lower() not in (b"content-encoding", b"transfer-encoding", b"content-length")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=prepared
    )


def _register_secrets(auth: tuple[str, str] | None, kwargs: Mapping[str, Any]) -> None:
    """Everything secret this request carries is scrubbed from every line printed later."""
    if auth is not None:
        log.secret(auth[1], user=auth[0])
    for name, value in (kwargs.get("headers") or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            log.secret(value.partition(" ")[2])
    data = kwargs.get("data")
    if isinstance(data, Mapping):
        for name, value in data.items():
            if name in SECRET_FIELDS and isinstance(value, str):
                log.secret(value)


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to its query, keeping what the query already holds."""
    parts = urllib.parse.urlsplit(url)
    query = "&".join(part for part in (parts.query, urllib.parse.urlencode(params)) if part)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _backoff(attempt: int) -> float:
    return float(min(0.25 * 2 ** (attempt - 1), 2.0) * (0.75 + random.random() / 2))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), 5.0)
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, min(email.utils.mktime_tz(parsed) - time.time(), 5.0))


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "expired" in text:
            return "TLS certificate has expired"
        if "match" in text or "mismatch" in text:
            return "TLS certificate is for another host name"
        return "TLS certificate not trusted (set ca_bundle to the CA that signed it)"
    return log.server_text(text.splitlines()[0] if text.splitlines() else text)


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response body as a JSON object, or None for anything else (HTML, garbage)."""
    try:
        value = response.json()
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
