"""Debug and warning lines on stderr, scrubbed of every secret in play.

Every secret the helper handles (password, client secret, refresh token, OIDC JWT, robot
token, bearer) is registered with :func:`secret` as soon as it is read or received, together
with the forms it can take on the wire (URL-encoded form fields, base64 of ``user:secret``,
base64 at any byte alignment). :func:`redact` removes all of them, and any JWT-shaped text,
from every line the helper prints, from exception messages and from server text.
"""

from __future__ import annotations

import sys

from docker_credential_quayfed import fastpath
from docker_credential_quayfed.paths import APP_NAME as PROGRAM
from docker_credential_quayfed.text import clipped, printable

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    import re

DEBUG_ENV = fastpath.DEBUG_ENV
REDACTED = "<redacted>"

# A JWT (base64url JSON header "eyJ..." and further dot-separated parts) never reaches output.
_TOKENISH = r"eyJ[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"
# Runs of base64/base64url/percent-encoded text: compared against the encoded secrets.
_ENCODED_RUN = r"[A-Za-z0-9+/=_%.~-]{8,}"
# Shorter secrets are still replaced where they appear raw; encodings need some length to match.
_MIN_RAW = 3
_MIN_ENCODED = 12
# Server text longer than this is cut: a person needs the gist, not a page.
SERVER_TEXT_LIMIT = 120
# Opaque runs this long in server text are redacted even when they match no known secret.
_OPAQUE_RUN = r"[A-Za-z0-9+/_-]{40,}={0,2}"

_said: set[str] = set()
_raw: set[str] = set()
_encoded: set[str] = set()


def secret(value: str, user: str = "") -> None:
    """Register ``value`` (and, with ``user``, the Basic-auth form ``user:value``) for redaction."""
    value = value.strip()
    if len(value) < _MIN_RAW or (value in _raw and not user):
        return
    import base64
    import urllib.parse

    _raw.add(value)
    forms = {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    raw = value.encode("utf-8", "surrogatepass")
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        # Only the middle is fixed by the secret alone; both ends depend on neighbouring bytes.
        core = encoded[4 if shift else 0 : len(encoded) - 4]
        forms.update((core, core.replace("+", "-").replace("/", "_")))
    if user:
        for pair in (f"{user}:{value}", f"{urllib.parse.quote(user)}:{urllib.parse.quote(value)}"):
            basic = base64.b64encode(pair.encode("utf-8", "surrogatepass")).decode("ascii")
            forms.update((basic, basic.rstrip("="), basic.replace("+", "-").replace("/", "_")))
    _raw.update(form for form in forms if form != value and len(form) >= _MIN_ENCODED)
    _encoded.update(form for form in forms if len(form) >= _MIN_ENCODED)


def redact(text: str) -> str:
    """``text`` without any registered secret, any of its encodings, or anything JWT-shaped."""
    if not _raw and "eyJ" not in text:
        return text
    import re

    for value in sorted(_raw, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    if _encoded:
        text = re.sub(_ENCODED_RUN, _scrub_run, text)
    return re.sub(_TOKENISH, REDACTED, text)


def _scrub_run(match: re.Match[str]) -> str:
    run = match.group(0)
    for form in _encoded:
        # A secret's encoding inside the run, or the run a piece of one (a truncated echo).
        if form in run or (len(run) >= _MIN_ENCODED + 4 and run.rstrip("=.") in form):
            return REDACTED
    return run


def server_text(text: str, limit: int = SERVER_TEXT_LIMIT) -> str:
    """Text a server sent, made safe to show: one line, scrubbed, opaque blobs removed, cut,
    control characters escaped."""
    import re

    line = redact(" ".join(str(text).split()))
    return clipped(re.sub(_OPAQUE_RUN, REDACTED, line), limit)


def name_program(name: str) -> None:
    """Begin every line with ``name``: the name this process was started by, when a front end
    is known by another name than the package's (the kubelet's provider ``name``)."""
    global PROGRAM
    PROGRAM = name


def debug_enabled() -> bool:
    return fastpath.debug_enabled()


def debug(message: str) -> None:
    if debug_enabled():
        _emit(f"{PROGRAM}: debug: {message}")


def warn(message: str) -> None:
    """A warning line, said at most once per process."""
    if message in _said:
        return
    _said.add(message)
    _emit(f"{PROGRAM}: warning: {message}")


def error(message: str) -> None:
    _emit(f"{PROGRAM}: {message}")


def _emit(line: str) -> None:
    try:
        sys.stderr.write(printable(redact(" ".join(line.split()))) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
