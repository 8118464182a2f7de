"""The leak recorder: every secret the tests use, checked against every byte the helper shows.

Secrets are registered with :func:`known` (passwords, client secrets, every JWT a test-side server
signed or a helper printed, secret-named environment values) and the names they are paired
with in Basic auth with :func:`user` (robots, client ids, users). Text is handed over with
:func:`observe`: the stderr of every helper run and its stdout without the answer's secret
(:func:`helper_output`), pytest's captured stderr and log of each test, and the text of every
``QuayfedError``. :func:`scan` checks it all once, at the end of the session, when every secret
is known.

The encodings are computed here, independently of the product's redaction (which is what is
under test): the raw secret and a JWT's signature part (real ones: at least 16 characters;
test fakes share theirs); base64 and base64url of the secret alone at each of the three byte
alignments (the run of at least 16 characters that the secret alone determines, which base64
of ``user:secret`` also contains whole); base64 and base64url of ``user:secret`` for every
known user when the secret is too short for such runs; percent-encoding as ``quote`` (with
and without ``/`` safe) and ``quote_plus`` produce it.
Secrets shorter than :data:`MIN_SECRET` characters are not checked (they would match ordinary
words); :func:`scan` counts them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_SECRET = 6
MIN_RUN = 16
# Environment variables whose values are secrets, unless the name says it holds a location.
SECRET_ENV_WORDS = ("PASSWORD", "SECRET", "TOKEN", "JWT")
NOT_SECRET_ENV_SUFFIXES = ("_URL", "_FILE", "_PATH", "_DIR", "_ENV", "_COMMAND")
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# How many places a repeated text is attributed to in a report.
_PLACES_KEPT = 5
# Long needles are found by sampling every _STEP-th position for one of their _GRAM-grams.
_GRAM = 8
_STEP = MIN_RUN - _GRAM + 1

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Two base64 characters for each 12-bit value: a 3-byte group is two lookups.
_SIXTETS = [first + second for first in _B64 for second in _B64]
_URLSAFE = str.maketrans("+/", "-_")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def base64_encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648), written here rather than imported."""
    whole = len(data) // 3 * 3
    out = []
    for start in range(0, whole, 3):
        value = data[start] << 16 | data[start + 1] << 8 | data[start + 2]
        out.append(_SIXTETS[value >> 12] + _SIXTETS[value & 0xFFF])
    rest = data[whole:]
    if rest:
        value = int.from_bytes(rest + b"\0" * (3 - len(rest)), "big")
        chars = _SIXTETS[value >> 12] + _SIXTETS[value & 0xFFF]
        out.append(chars[: len(rest) + 1] + "=" * (3 - len(rest)))
    return "".join(out)


def percent_encode(text: str, safe: str = "", plus: bool = False) -> str:
    """``text`` percent-encoded as UTF-8; ``plus`` writes a space as ``+`` (form encoding)."""
    keep = _UNRESERVED | frozenset(safe.encode())
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        if byte in keep:
            out.append(chr(byte))
        elif plus and byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def aligned_runs(secret: str) -> list[tuple[int, str]]:
    """(alignment, run): the base64 characters fixed by the secret alone, whatever surrounds it.

    With ``alignment`` bytes before the secret in its 3-byte group, the first group that holds
    only secret bytes starts at byte (3 - alignment) % 3; whole groups after it encode the same
    way in any surrounding text.
    """
    data = secret.encode("utf-8", "surrogatepass")
    runs = []
    for alignment in range(3):
        start = (3 - alignment) % 3
        whole = (len(data) - start) // 3 * 3
        if whole > 0:
            runs.append((alignment, base64_encode(data[start : start + whole])))
    return runs


@dataclass(frozen=True)
class Hit:
    test: str
    where: str
    kind: str
    encoding: str

    def describe(self) -> str:
        return f"{self.test}: {self.where}: {self.kind} ({self.encoding})"


@dataclass(frozen=True)
class Summary:
    bytes_checked: int
    texts: int
    secrets: int
    skipped_short: int
    hits: tuple[Hit, ...]

    def line(self) -> str:
        return (
            f"leak check: {self.bytes_checked} bytes in {self.texts} distinct texts checked "
            f"against {self.secrets} secrets ({self.skipped_short} shorter than {MIN_SECRET} "
            f"characters not checked): {len(self.hits)} hits"
        )


@dataclass
class Recorder:
    """Secrets, user names and observed text of one process; safe to use from any thread."""

    current_test: str = "<session>"
    _secrets: dict[str, str] = field(default_factory=dict)
    _short: set[str] = field(default_factory=set)
    _users: set[str] = field(default_factory=set)
    _texts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def known(self, secret: str, kind: str) -> None:
        secret = secret.strip()
        if not secret:
            return
        with self._lock:
            if len(secret) < MIN_SECRET:
                self._short.add(secret)
            else:
                self._secrets.setdefault(secret, kind)

    def user(self, name: str) -> None:
        if name.strip():
            with self._lock:
                self._users.add(name.strip())

    def observe(self, text: str, where: str, test: str | None = None) -> None:
        if not text:
            return
        place = (test or self.current_test, where)
        with self._lock:
            self._bytes += len(text.encode("utf-8", "surrogatepass"))
            places = self._texts.setdefault(text, [])
            if len(places) < _PLACES_KEPT and place not in places:
                places.append(place)

    def needles(self) -> dict[str, tuple[str, str]]:
        """Every form a registered secret can take -> (kind of secret, encoding)."""
        with self._lock:
            secrets = dict(self._secrets)
            users = sorted(self._users)
        found: dict[str, tuple[str, str]] = {}

        def add(needle: str, kind: str, encoding: str) -> None:
            if len(needle) >= MIN_SECRET:
                found.setdefault(needle, (kind, encoding))

        for secret, kind in secrets.items():
            add(secret, kind, "raw")
            signature = secret.rsplit(".", 1)[-1]
            # Short signatures are test fakes, shared by many tokens: only real ones count.
            if JWT_PATTERN.fullmatch(secret) and len(signature) >= MIN_RUN:
                add(signature, kind, "raw JWT signature")
            add(percent_encode(secret), kind, "URL-encoded (quote, safe='')")
            add(percent_encode(secret, safe="/"), kind, "URL-encoded (quote)")
            add(percent_encode(secret, plus=True), kind, "URL-encoded (quote_plus)")
            for alignment, run in aligned_runs(secret):
                if len(run) >= MIN_RUN:
                    add(run, kind, f"base64 at byte alignment {alignment}")
                    add(run.translate(_URLSAFE), kind, f"base64url at byte alignment {alignment}")
            runs = aligned_runs(secret)
            if len(runs) == 3 and all(len(run) >= MIN_RUN for _, run in runs):
                continue  # base64 of user:secret holds one of these runs whole
            for name in users:
                pair = base64_encode(f"{name}:{secret}".encode("utf-8", "surrogatepass"))
                add(pair.rstrip("="), kind, "base64 of user:secret")
                add(pair.rstrip("=").translate(_URLSAFE), kind, "base64url of user:secret")
        return found

    def scan(self) -> Summary:
        needles = self.needles()
        short = [n for n in needles if len(n) < MIN_RUN]
        grams: dict[str, list[tuple[str, int]]] = {}
        for needle in needles:
            if len(needle) >= MIN_RUN:
                for offset in range(_STEP):
                    grams.setdefault(needle[offset : offset + _GRAM], []).append((needle, offset))
        with self._lock:
            texts = dict(self._texts)
            total = self._bytes
            secrets = len(self._secrets)
            skipped = len(self._short)
        hits: dict[Hit, None] = {}
        for text, places in texts.items():
            for needle in _matches(text, short, grams):
                kind, encoding = needles[needle]
                for test, where in places:
                    hits.setdefault(Hit(test, where, kind, encoding), None)
        return Summary(total, len(texts), secrets, skipped, tuple(hits))


def _matches(text: str, short: list[str], grams: Mapping[str, list[tuple[str, int]]]) -> set[str]:
    found = {needle for needle in short if needle in text}
    # Any needle of MIN_RUN or more characters covers one sampled position at an offset < _STEP.
    for position in range(0, len(text) - _GRAM + 1, _STEP):
        for needle, offset in grams.get(text[position : position + _GRAM], ()):
            start = position - offset
            if start >= 0 and text.startswith(needle, start):
                found.add(needle)
    return found


RECORDER = Recorder()


def known(secret: str, kind: str = "secret") -> None:
    """Register a secret; ``kind`` names it in reports (never the value)."""
    RECORDER.known(secret, kind)


def user(name: str) -> None:
    """Register a name a secret may be paired with in Basic auth (robot, client id, user)."""
    RECORDER.user(name)


def observe(text: str, where: str, test: str | None = None) -> None:
    """Hand over text that was shown (stderr, log, message) to be checked at the end."""
    RECORDER.observe(text, where, test)


def set_current_test(test: str) -> None:
    RECORDER.current_test = test


def scan() -> Summary:
    return RECORDER.scan()


def secret_env(env: Mapping[str, str] | None) -> None:
    """Register the values of secret-named variables a test hands the helper."""
    for name, value in (env or {}).items():
        upper = name.upper()
        if any(w in upper for w in SECRET_ENV_WORDS) and not upper.endswith(
            NOT_SECRET_ENV_SUFFIXES
        ):
            known(value, f"value of ${name}")


def helper_input(action: str, stdin: bytes, env: Mapping[str, str] | None) -> None:
    """Register what a helper run is given: secret-named variables, the secret ``store`` gets."""
    secret_env(env)
    if action != "store":
        return
    try:
        payload = json.loads(stdin)
    except (ValueError, RecursionError):
        return
    if isinstance(payload, dict):
        if isinstance(payload.get("Secret"), str):
            known(payload["Secret"], "secret given to store")
        if isinstance(payload.get("Username"), str):
            user(payload["Username"])


def helper_output(
    action: str, returncode: int, stdout: str, stderr: str, where: str, register: bool = True
) -> None:
    """Register the secrets a helper run printed and hand over everything else it printed.

    The ``Secret`` of a successful ``get`` and the token ``token`` prints are the answer, so
    they are not checked; any other JWT on stdout is registered and so reported. Without
    ``register`` (answers made of generated data) nothing is registered, only handed over.
    """
    remember = known if register else _ignore
    where = f"{where} {action} (exit {returncode})"
    observe(stderr, f"{where} stderr")
    shown = stdout
    if returncode == 0 and action == "get":
        answer = _json_object(stdout)
        secret = answer.get("Secret") if answer else None
        if isinstance(secret, str) and secret:
            remember(secret, "robot token answered by get")
            # The answer holds the secret JSON-escaped: take out that form, then any raw one.
            for form in (json.dumps(secret), json.dumps(secret, ensure_ascii=False), secret):
                shown = shown.replace(form, '"<answer>"')
        username = answer.get("Username") if answer else None
        if isinstance(username, str):
            user(username)
    elif returncode == 0 and action == "token":
        for token in set(JWT_PATTERN.findall(stdout)):
            remember(token, "robot token printed by token")
            shown = shown.replace(token, "<answer>")
    for token in JWT_PATTERN.findall(shown):
        remember(token, f"JWT printed by {action}")
    observe(shown, f"{where} stdout")


def _ignore(secret: str, kind: str) -> None:
    pass


def _json_object(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
