"""The one HTTP layer: bounded timeouts, one overall deadline, retries with backoff."""

from __future__ import annotations

import email.utils
import random
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from docker_credential_quayfed import __version__, log
from docker_credential_quayfed.errors import NetworkError

USER_AGENT = f"docker-credential-quayfed/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ATTEMPTS = 3
# A refused or failed connection is retried once: a server that is down must not slow pulls.
MAX_CONNECT_ATTEMPTS = 2
NETWORK_FIX = "check the URL, the network/proxy settings and that the server is up"


@dataclass
class Deadline:
    """The whole budget of one command: no request may run past it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


def client(ca_bundle: str = "") -> httpx.Client:
    verify: Any = True
    if ca_bundle:
        import ssl

        try:
            verify = ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            from docker_credential_quayfed.errors import ConfigError

            raise ConfigError(
                f"cannot load the CA bundle {ca_bundle}: {getattr(exc, 'strerror', None) or exc}",
                "set ca_bundle to a readable PEM file",
            ) from None
    return httpx.Client(
        verify=verify,
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        trust_env=True,
    )


def request(
    session: httpx.Client,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    what: str,
    retry_statuses: frozenset[int] = RETRY_STATUSES,
    params: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send with retries on connection errors and retryable statuses, within the deadline.

    ``params`` are added to the query ``url`` already has (httpx's own ``params=`` replaces it).
    Returns the last response (which may still be an error status); raises NetworkError when
    no response could be had at all.
    """
    if params:
        url = with_query(url, params)
    attempt = 0
    while True:
        attempt += 1
        budget = deadline.remaining()
        if budget <= 0.5:
            raise NetworkError(
                f"gave up on {what} at {url}: out of time", "check that the server is reachable"
            )
        timeout = httpx.Timeout(min(READ_TIMEOUT, budget), connect=min(CONNECT_TIMEOUT, budget))
        log.debug(f"{what}: {method} {url} (attempt {attempt})")
        try:
            response = session.request(method, url, timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            failure = f"{what} at {url} timed out"
            response = None
        except httpx.ConnectError as exc:
            failure = f"cannot connect to {url} for {what}: {_reason(exc)}"
            response = None
        except httpx.TransportError as exc:
            failure = f"{what} at {url} failed: {_reason(exc)}"
            response = None
        if response is not None:
            log.debug(f"{what}: HTTP {response.status_code}")
            if response.status_code not in retry_statuses or attempt >= MAX_ATTEMPTS:
                return response
            wait = _retry_after(response) or _backoff(attempt)
            failure = f"{what} at {url} answered HTTP {response.status_code}"
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
    if value.isdigit():
        return min(float(value), 5.0)
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, min(email.utils.mktime_tz(parsed) - time.time(), 5.0))


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not trusted (set ca_bundle to the CA that signed it)"
    return log.redact(text.splitlines()[0])[:200]


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response body as a JSON object, or None for anything else (HTML, garbage)."""
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
