"""A real headless browser (Debian's chromium) driven through chromedriver's W3C WebDriver
protocol, spoken directly over HTTP: what a person does on Keycloak's own pages.

The browser trusts exactly the tests' server certificate (by its public key), nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
#: flags that work on these machines (no sandbox as root, no calls home on a closed network)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
START_DEADLINE = 30.0
#: how long a page may take to show what a step waits for
PAGE_DEADLINE = 30.0


class BrowserMissing(Exception):
    """chromium or chromedriver is not installed."""


class BrowserError(Exception):
    """What the browser showed instead of what a step waited for."""


def find_binaries() -> tuple[str, str]:
    found = [shutil.which(name) for name in (CHROMIUM, CHROMEDRIVER)]
    missing = [name for name, path in zip((CHROMIUM, CHROMEDRIVER), found) if path is None]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        )
    return str(found[0]), str(found[1])


def spki_hash(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate, as chromium pins it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(cert_pem)
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Browser:
    """One chromedriver and one headless chromium session, in ``directory``."""

    def __init__(self, directory: Path, server_cert: Path) -> None:
        chromium, chromedriver = find_binaries()
        directory.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.log_path = directory / "chromedriver.log"
        with open(self.log_path, "wb") as log_file:
            self.driver = subprocess.Popen(
                [chromedriver, f"--port={port}", "--allowed-ips=127.0.0.1"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.session = ""
        flags = [
            *CHROMIUM_FLAGS,
            f"--user-data-dir={directory / 'profile'}",
            f"--ignore-certificate-errors-spki-list={spki_hash(server_cert.read_bytes())}",
        ]
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": flags},
        }
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                answer = self.http.post(
                    "/session", json={"capabilities": {"alwaysMatch": capabilities}}
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.driver.poll() is not None:
                    self.close()
                    raise BrowserError(f"chromedriver did not start: {self.driver_log()}") from None
                time.sleep(0.2)
        value = answer.json().get("value", {})
        if answer.status_code != 200 or "sessionId" not in value:
            self.close()
            raise BrowserError(f"chromium did not start: {value}; {self.driver_log()}")
        self.session = str(value["sessionId"])

    def driver_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.session:
            with contextlib.suppress(httpx.HTTPError):
                self.http.delete(f"/session/{self.session}")
            self.session = ""
        self.http.close()
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait(10)

    # -- the WebDriver commands the tests use -------------------------------------------------

    def _command(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.http.request(method, f"/session/{self.session}{path}", json=body)
        value = answer.json().get("value")
        if answer.status_code != 200:
            raise BrowserError(f"WebDriver {method} {path}: {value}")
        return value

    def open(self, url: str) -> None:
        self._command("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self._command("GET", "/url"))

    @property
    def page_text(self) -> str:
        """The text the page shows now (read in one script: the page may be navigating)."""
        script = "return document.body ? document.body.innerText : '';"
        return str(self._command("POST", "/execute/sync", {"script": script, "args": []}))

    def _find(self, using: str, value: str) -> str:
        found = self._command("POST", "/element", {"using": using, "value": value})
        return str(found[ELEMENT_KEY])

    def _find_all(self, css: str) -> list[str]:
        found = self._command("POST", "/elements", {"using": "css selector", "value": css})
        return [str(item[ELEMENT_KEY]) for item in found]

    def wait_for(self, css: str, deadline: float = PAGE_DEADLINE) -> str:
        """The first element ``css`` selects, once the page shows one."""
        until = time.monotonic() + deadline
        while True:
            found = self._find_all(css)
            if found:
                return found[0]
            if time.monotonic() > until:
                raise BrowserError(
                    f"no {css} on {self.url} within {deadline:.0f}s; the page says: "
                    f"{self.page_text[:400]!r}"
                )
            time.sleep(0.2)

    def wait_for_text(self, text: str, deadline: float = PAGE_DEADLINE) -> str:
        until = time.monotonic() + deadline
        while True:
            shown = self.page_text
            if text.lower() in shown.lower():
                return shown
            if time.monotonic() > until:
                raise BrowserError(f"{text!r} not on {self.url}; the page says: {shown[:400]!r}")
            time.sleep(0.2)

    def type_into(self, css: str, text: str) -> None:
        element = self.wait_for(css)
        self._command("POST", f"/element/{element}/clear", {})
        self._command("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self._command("POST", f"/element/{self.wait_for(css)}/click", {})

    def has(self, css: str) -> bool:
        return bool(self._find_all(css))


def sign_in_to_keycloak(browser: Browser, username: str, password: str) -> None:
    """Keycloak's login page: the username and password fields, then 'Sign In'."""
    browser.type_into("#username", username)
    browser.type_into("#password", password)
    browser.click("#kc-login")
