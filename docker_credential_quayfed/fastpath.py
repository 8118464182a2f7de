"""Everything a cache-hit `get` runs, in one module that imports nothing of the package.

The launchers in ``bin/`` load this module alone (from its compiled file, without `site`) and
call :func:`answer_or_decline`: when a fresh token is on disk, the answer is written from here
and the process leaves without the interpreter's teardown. Anything else it declines, and the
launcher goes on to ``cli``.

It is therefore the one owner of the rules a cache hit applies, which ``paths``, ``protocol``
and ``cache`` take from here: where the config and the cache live, how stdin names a registry,
the JSON a client parses, the token-file and config-snapshot formats, and the refresh rule
(:func:`refresh_at`, which doctor reports). A setting that changes freshness changes here and
in the snapshot, nowhere else.

It imports only what the interpreter has already loaded (posix, sys, time) and reads two small
text files: the config snapshot (which registry keys map to which token file, valid while
config.toml is unchanged) and the token file, through a directory descriptor opened without
following a symlink, and only when both the directory and the file are private to this user.
A token's own ``exp`` claim decides its life, whatever the file says. Anything unusual returns
None, and the full path (config.py, cache.py, broker.py) takes over.
"""

# No `from __future__ import annotations` (importing it costs a cache hit measurable time):
# annotations Python 3.9 cannot evaluate are written as strings.

import posix
import sys
import time

TYPE_CHECKING = False  # typing itself costs a cache hit more than a millisecond
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

# -- where things live (``paths`` re-exports these) ------------------------------------------
APP_NAME = "docker-credential-quayfed"
CONFIG_ENV = "DOCKER_CREDENTIAL_QUAYFED_CONFIG"
CACHE_DIR_ENV = "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR"
DEBUG_ENV = "DOCKER_CREDENTIAL_QUAYFED_DEBUG"
#: the kubelet credential provider's executable name (the provider's ``name``)
KUBELET_PROVIDER = "quay-credential-provider"


def environ(name: str) -> str:
    """The variable's value, stripped ("" when unset), as ``os.environ`` would decode it
    (``os.environ`` writes through to this same mapping)."""
    value = posix.environ.get(name.encode(), b"")
    return value.decode(sys.getfilesystemencoding(), "surrogateescape").strip()


def debug_enabled() -> bool:
    """A debug log was asked for (``DOCKER_CREDENTIAL_QUAYFED_DEBUG=1``)."""
    return environ(DEBUG_ENV).lower() not in ("", "0", "false", "no", "off")


def config_file() -> str:
    explicit = environ(CONFIG_ENV)
    if explicit:
        return _absolute(_expand_user(explicit))
    return _join(_user_dir("config"), "config.toml")


def cache_dir() -> str:
    explicit = environ(CACHE_DIR_ENV)
    if explicit:
        return _absolute(_expand_user(explicit))
    return _user_dir("cache")


def _user_dir(kind: str) -> str:
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux, inlined so that a cache hit does not import it.
        variable, fallback = (
            ("XDG_CONFIG_HOME", "~/.config") if kind == "config" else ("XDG_CACHE_HOME", "~/.cache")
        )
        base = environ(variable) or _expand_user(fallback)
        return _join(base, APP_NAME)
    import platformdirs

    if kind == "config":
        return str(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return str(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def resolve_path(path: str, base: str = "") -> str:
    """The one reading of a path someone configured: ``~`` expanded, then made absolute
    against ``base`` (the config file's directory) or, without one, the working directory.
    Every reader of a configured file uses it, the fast path included, so none opens a
    ``./~/...`` of the client's working directory while another reads ``$HOME/...``."""
    path = _expand_user(path)
    if base and not path.startswith("/"):
        path = _join(base, path)
    return _absolute(path)


def _expand_user(path: str) -> str:
    """``os.path.expanduser`` for ``~`` and ``~/...`` with $HOME set; posixpath otherwise."""
    if not path.startswith("~"):
        return path
    home = environ("HOME")
    if home and (path == "~" or path.startswith("~/")):
        return (home.rstrip("/") + path[1:]) or "/"
    import posixpath

    return posixpath.expanduser(path)


def _absolute(path: str) -> str:
    """``os.path.abspath``: an absolute, already normal path is returned as it is."""
    unusual = ("//" in path or "/./" in path or "/../" in path) or path.endswith(("/.", "/.."))
    if path.startswith("/") and not unusual and (path == "/" or not path.endswith("/")):
        return path
    import posixpath

    return posixpath.abspath(path)


def _join(base: str, name: str) -> str:
    """``os.path.join`` of a directory and a plain file name."""
    return base + name if base.endswith("/") else f"{base}/{name}"


# -- the wire format's part in a hit (``protocol`` re-exports these) ---------------------------
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_IPV6_CHARS = frozenset("0123456789abcdef:.")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def host_key(server: str) -> "str | None":
    """What a client sends (``https://Quay.Example.com:443/v2/``) as ``host[:port]``; None
    when no host can be read from it without guessing (user info, a backslash...)."""
    text = server.strip()
    lowered = text.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].strip().lower()
    return host if _is_host(host) else None


def _is_host(host: str) -> bool:
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end < 2:
            return False
        name, rest = host[1:end], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
        if not set(name) <= _IPV6_CHARS:
            return False
    else:
        if host.count(":") > 1:
            return False
        name, _, port = host.partition(":")
        if ":" in host and not port:
            return False
        if not name or name[0] in ".-" or not set(name) <= _HOST_CHARS:
            return False
    return not port or (port.isdigit() and port.isascii() and 0 < int(port[:6]) <= 65535)


def json_string(text: str) -> str:
    """A JSON string literal, byte-for-byte what ``json.dumps`` writes (ensure_ascii)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # a token, a robot name, a host: nothing to escape
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def credentials_json(server_url: str, username: str, secret: str) -> str:
    """What `get` writes: the three fields clients read, in docker-credential-helpers' order."""
    return (
        f'{{"ServerURL": {json_string(server_url)}, '
        f'"Username": {json_string(username)}, "Secret": {json_string(secret)}}}'
    )


# -- the refresh rule (``cache.RobotToken`` applies it) ----------------------------------------
# A robot token's claims are read again when it is served, so a token can never outlive exp.
DEFAULT_SKEW = 5.0
#: Quay issues robot tokens for exactly an hour (not configurable): a longer life is kept no
#: longer than this, and a token file claiming more is not served
MAX_ROBOT_TOKEN_LIFETIME = 4 * 3600.0


def refresh_at(issued_at: float, expires_at: float, refresh_margin: float) -> float:
    """When a refresh becomes due: min(refresh_margin, lifetime/2) before expiry."""
    return expires_at - min(refresh_margin, max(expires_at - issued_at, 0.0) / 2)


def ahead_at(issued_at: float, expires_at: float, refresh_margin: float) -> float:
    """When a background refresh may start: min(2 x refresh_margin, 3/4 of the lifetime)
    before expiry (never after the refresh point)."""
    return expires_at - min(2 * refresh_margin, max(expires_at - issued_at, 0.0) * 0.75)


# -- token files and the config snapshot -------------------------------------------------------
TOKEN_MAGIC = "quayfed-token 1"
SNAPSHOT_MAGIC = "quayfed-config 4"
SNAPSHOT_NAME = "config.snapshot"
MAX_FILE = 1 << 16
#: the snapshot holds a line per registry: room for thousands
MAX_SNAPSHOT = 1 << 20
#: token files are named ``<escaped key>=<identity digest>.token``; "=" never occurs in an
#: escaped key, so a name belongs to exactly one key (erase matches exactly)
KEY_SEPARATOR = "="
_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_DIGEST_CHARS = frozenset("0123456789abcdef")
DIGEST_LENGTH = 16
#: stat's S_IFMT and S_IFREG (the stat module is not imported on the fast path)
_S_IFMT, _S_IFREG = 0o170000, 0o100000
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_CHARS = frozenset(_B64URL)
#: each base64url character as its six bits: a JWT segment is decoded by str.translate and int
_B64URL_BITS = str.maketrans({char: f"{value:06b}" for value, char in enumerate(_B64URL)})


def read_token_file(
    text: str, registry: str, exp_of: "Callable[[str], float | None] | None" = None
) -> "tuple[str, str, float, float] | None":
    """(robot, token, issued_at, expires_at) of a token file; None when corrupt, for another
    key, or its times were edited. ``exp_of`` reads the JWT's ``exp`` (default: jwt_exp)."""
    lines = text.split("\n")
    if len(lines) < 6 or lines[0] != TOKEN_MAGIC:
        return None
    fields = {}
    for line in lines[1:6]:
        name, _, value = line.partition(" ")
        fields[name] = value
    try:
        issued_at = float(fields["issued_at"])
        expires_at = float(fields["expires_at"])
        robot, token = fields["robot"], fields["token"]
    except (KeyError, ValueError):
        return None
    if fields.get("registry") != registry or not robot or not token or " " in token:
        return None
    if not 0.0 <= expires_at - issued_at <= MAX_ROBOT_TOKEN_LIFETIME:
        return None  # NaN and infinity fail here too
    exp = (exp_of or jwt_exp)(token)
    if exp is None or expires_at > exp:
        return None  # the file may shorten the token's life (clock skew), never lengthen it
    return robot, token, issued_at, expires_at


def jwt_exp(token: str) -> "float | None":
    """The ``exp`` claim of a compact JWT, read without json or base64 (a cache hit loads
    neither); None when it cannot be read unambiguously (then the full path decides)."""
    text = _claims_text(token)
    if text is None:
        return None
    found = text.split('"exp"')
    if len(found) != 2:
        return None  # absent, or more than one (nested): leave it to the JSON reader
    rest = found[1].lstrip(" \t\r\n")
    if not rest.startswith(":"):
        return None
    rest = rest[1:].lstrip(" \t\r\n")
    end = 0
    while end < len(rest) and rest[end] in "0123456789.eE+-":
        end += 1
    try:
        return float(rest[:end])
    except ValueError:
        return None


def key_file_prefix(registry: str) -> str:
    """The start of every file name of ``registry`` (an injective escape of the key)."""
    escaped = "".join(c if c in _NAME_SAFE else f"%{ord(c):02x}" for c in registry)
    return escaped + KEY_SEPARATOR


def token_file_name(registry: str, digest: str) -> str:
    return f"{key_file_prefix(registry)}{digest}.token"


def is_digest(text: str) -> bool:
    return len(text) == DIGEST_LENGTH and set(text) <= _DIGEST_CHARS


# -- whose credential: the one key (``identity`` builds it; the fast path for a token file) ---
#: the principal kind of a JWT handed over as it is: its own claims name it
CARRIED_JWT = "jwt"


def credential_digest(
    registry: str, robot: str, quay_url: str, kind: str, issuer: str, subject: str, audience: str
) -> str:
    """The digest naming a robot token's files: registry key, robot, Quay's URL and the
    principal (how it was learnt, issuer, subject, audience). Each part is length-prefixed, so
    no two different keys share a text."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # C, lighter than hashlib
    except ImportError:  # pragma: no cover - Python 3.12 and later
        from hashlib import sha256
    parts = (registry, robot, quay_url, kind, issuer, subject, audience)
    text = "quayfed-key 1\n" + "".join(f"{len(part)}:{part}\n" for part in parts)
    digest: str = sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:DIGEST_LENGTH]


def jwt_principal(token: str) -> "tuple[str, str, str] | None":
    """(iss, sub, aud) at the top level of a compact JWT's claims, ``aud`` as ``identity``
    spells it (a list sorted and newline-joined); None when they cannot be read without doubt
    (an escape, a duplicate, a value that is not a string): the full path then reads them."""
    text = _claims_text(token)
    if text is None or "\\" in text or not text.lstrip(_WHITESPACE).startswith("{"):
        return None
    # With no escapes, splitting at '"' alternates structure (even) and string text (odd).
    pieces = text.split('"')
    if len(pieces) % 2 == 0:
        return None
    found = {}
    depth = 0
    for index in range(1, len(pieces), 2):
        before = pieces[index - 1]
        depth += before.count("{") + before.count("[") - before.count("}") - before.count("]")
        name, after = pieces[index], pieces[index + 1].strip(_WHITESPACE)
        if depth != 1 or name not in ("iss", "sub", "aud") or not after.startswith(":"):
            continue  # a value, a nested key, or a claim that decides nothing here
        if name in found:
            return None  # a duplicate: which one counts is the JSON reader's business
        value = after[1:].lstrip(_WHITESPACE)
        if value == "" and index + 2 < len(pieces):
            found[name] = pieces[index + 2]
        elif name == "aud" and value == "[":
            items = _string_list(pieces, index + 2)
            if items is None:
                return None
            found[name] = "\n".join(sorted(items))
        else:
            return None  # a number, an object, null: not a principal
    issuer, subject = found.get("iss", ""), found.get("sub", "")
    if not issuer or not subject:
        return None
    return issuer, subject, found.get("aud", "")


_WHITESPACE = " \t\r\n"


def _string_list(pieces: "list[str]", index: int) -> "list[str] | None":
    """The strings of a JSON list whose first string is ``pieces[index]`` (see jwt_principal)."""
    items = []
    while index < len(pieces):
        items.append(pieces[index])
        between = pieces[index + 1].strip(_WHITESPACE)
        if between.startswith("]"):
            return items
        if between != ",":
            return None
        index += 2
    return None


def _claims_text(token: str) -> "str | None":
    """The claims segment of a compact JWT as text (base64url by str.translate and int)."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1] or not set(parts[1]) <= _B64URL_CHARS:
        return None
    bits = parts[1].translate(_B64URL_BITS)
    bits = bits[: len(bits) - len(bits) % 8]  # the last character's spare bits
    try:
        return int(bits, 2).to_bytes(len(bits) // 8, "big").decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return None


def fingerprint(info: posix.stat_result) -> str:
    return f"{info.st_dev} {info.st_ino} {info.st_size} {info.st_mtime_ns}"


#: in a snapshot line, in place of a digest: the key depends on the JWT in a token file
FROM_TOKEN_FILE = "@file"


def lookup_snapshot(
    text: str, config_file: str, stamp: str, key: str
) -> "tuple[str, float, str, bool, tuple[str, str, str] | None] | None":
    """(identity digest, refresh margin, robot, refresh ahead?, token file) of ``key``'s line.
    For a registry whose JWT is in a file, the digest is FROM_TOKEN_FILE and the last field
    is (Quay URL, audience asked of the issuer, token file): the key is computed from the JWT."""
    header = f"{SNAPSHOT_MAGIC}\n{config_file}\n{stamp}\n"
    if not text.startswith(header):
        return None
    # One search in C for the key's line, however many registries (no list of lines).
    start = text.find(f"\n{key} ", len(header) - 1)
    if start < 0:
        return None
    end = text.find("\n", start + 1)
    parts = text[start + 1 : end if end >= 0 else len(text)].split(" ")
    if len(parts) not in (5, 8) or parts[4] not in ("ahead", "-"):
        return None
    jwt_file = None
    if len(parts) == 8 and parts[1] == FROM_TOKEN_FILE:
        jwt_file = (unescape_field(parts[5]), unescape_field(parts[6]), unescape_field(parts[7]))
    elif len(parts) != 5 or not is_digest(parts[1]):
        return None  # a file name is built from it: nothing but a digest will do
    try:
        return parts[1], float(parts[2]), parts[3], parts[4] == "ahead", jwt_file
    except ValueError:
        return None


def escape_field(text: str) -> str:
    """A snapshot field: "-" for empty; space, newline and % written as %XX."""
    if not text:
        return "-"
    return "".join(f"%{ord(c):02x}" if c in " %\n\r-" else c for c in text)


def unescape_field(text: str) -> str:
    if text == "-":
        return ""
    if "%" not in text:
        return text
    pieces = text.split("%")
    return pieces[0] + "".join(chr(int(p[:2], 16)) + p[2:] for p in pieces[1:])


def read_token_jwt(path: str) -> "str | None":
    """The JWT in a token file as a source reads it (symlinks followed, as a projected
    token's are); None for anything but a small regular file of base64url text."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK)
    except OSError:
        return None
    try:
        if (posix.fstat(fd).st_mode & _S_IFMT) != _S_IFREG:
            return None
        data = posix.read(fd, MAX_FILE)
    except OSError:
        return None
    finally:
        posix.close(fd)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None


def token_file_digest(
    key: str, robot: str, jwt_file: "tuple[str, str, str]", now: float
) -> "str | None":
    """The key digest of a registry whose JWT is in a file, from the JWT there now; None when
    it cannot be read, names nobody, or has expired (Quay would refuse it: no answer)."""
    quay_url, audience, path = jwt_file
    if not path.startswith("/"):
        return None  # written by an older version, unresolved: the full path decides
    jwt = read_token_jwt(path)
    if not jwt:
        return None
    principal = jwt_principal(jwt)
    expires = jwt_exp(jwt)
    if principal is None or expires is None or expires - now <= DEFAULT_SKEW:
        return None
    issuer, subject, own_audience = principal
    return credential_digest(
        key, robot, quay_url, CARRIED_JWT, issuer, subject, audience or own_audience
    )


def open_private_dir(directory: str) -> "int | None":
    """A descriptor of ``directory`` when it is a real directory of ours, closed to others."""
    try:
        fd = posix.open(
            directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC
        )
    except OSError:
        return None
    info = posix.fstat(fd)
    if info.st_uid != posix.getuid() or info.st_mode & 0o077:
        posix.close(fd)
        return None
    return fd


def read_private(path: str, dir_fd: "int | None" = None, limit: int = MAX_FILE) -> "str | None":
    """A regular 0600-style file of ours, opened without following symlinks and without
    blocking (a FIFO); None for anything else."""
    try:
        fd = posix.open(
            path,
            posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK,
            dir_fd=dir_fd,
        )
    except OSError:
        return None
    try:
        info = posix.fstat(fd)
        if (info.st_mode & _S_IFMT) != _S_IFREG or info.st_uid != posix.getuid():
            return None
        if info.st_mode & 0o077:
            return None  # others could read it: not trusted, the full path replaces it
        data = posix.read(fd, min(limit, MAX_FILE))
        if len(data) == MAX_FILE < limit:  # a large snapshot: the rest, a chunk at a time
            chunks = [data]
            while sum(map(len, chunks)) < limit:
                chunk = posix.read(fd, min(MAX_FILE, limit - sum(map(len, chunks))))
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
    except OSError:
        return None
    finally:
        posix.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return None


# -- the cache hit -----------------------------------------------------------------------------
def cached_answer(key: str) -> "tuple[str, str, bool] | None":
    """(robot, token, refresh ahead?) for ``key`` when a fresh one is on disk and config.toml
    is unchanged; the flag says the token is inside its refresh-ahead window."""
    config = config_file()
    try:
        stamp = fingerprint(posix.stat(config))
    except OSError:
        return None
    dir_fd = open_private_dir(cache_dir())
    if dir_fd is None:
        return None
    try:
        snapshot = read_private(SNAPSHOT_NAME, dir_fd, MAX_SNAPSHOT)
        if snapshot is None:
            return None
        entry = lookup_snapshot(snapshot, config, stamp, key)
        if entry is None:
            return None
        digest, margin, robot, ahead, jwt_file = entry
        now = time.time()
        if jwt_file is not None:
            from_jwt = token_file_digest(key, robot, jwt_file, now)
            if from_jwt is None:
                return None
            digest = from_jwt
        text = read_private(token_file_name(key, digest), dir_fd)
    finally:
        posix.close(dir_fd)
    found = read_token_file(text, key) if text is not None else None
    if found is None or found[0] != robot:
        return None
    _, token, issued_at, expires_at = found
    if now >= refresh_at(issued_at, expires_at, margin):
        return None
    return robot, token, ahead and now >= ahead_at(issued_at, expires_at, margin)


def answer(stdin: str) -> "tuple[str, str, bool] | None":
    """(the credentials' JSON, the registry key, inside the refresh-ahead window?) when the
    cache answers ``get``'s stdin; None sends the get on to ``actions`` (which answers
    everything else the same way, and logs when asked to)."""
    if debug_enabled():
        return None  # actions tries again, and its log says which path answered
    try:
        key = host_key(stdin)
        found = cached_answer(key) if key is not None else None
    except Exception:  # anything odd: actions says what, in its own words
        return None
    if key is None or found is None:
        return None
    robot, token, ahead = found
    return credentials_json(key, robot, token), key, ahead


# -- the launchers' start ----------------------------------------------------------------------
_STDIN_LIMIT = 1 << 16


def read_stdin() -> str:
    """What the client sent, up to 64 KiB ("" when stdin is closed or cannot be read: the
    action then says what it needed)."""
    try:
        data = sys.stdin.buffer.read(_STDIN_LIMIT) if sys.stdin else b""
    except (OSError, ValueError):
        return ""
    return data.decode("utf-8", "replace")


def write_line(text: str) -> None:
    """``text`` and a newline on stdout, now; a client that has gone away is not an error."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def called_as_kubelet_provider(program: str) -> bool:
    """The kubelet runs a provider by the name in its config: quay-credential-provider, or a
    name that starts with it (``quay-credential-provider-partner`` for a second Quay)."""
    name = program.replace("\\", "/").rsplit("/", 1)[-1]
    name = name[: -len(".pyz")] if name.endswith(".pyz") else name
    return name == KUBELET_PROVIDER or name.startswith(f"{KUBELET_PROVIDER}-")


def answer_or_decline(
    site: str, args: "Sequence[str] | None" = None
) -> "tuple[str | None, str | None]":
    """A launcher's first step, once it has found the package in ``site`` and started Python
    without `site` (``bin/``): a cache-hit `get` is answered here, and the process leaves at
    once (nothing is left to flush or close). Inside the token's refresh-ahead window the
    process also leaves after answering, and its detached child (:func:`detach`) is what
    returns: the client waits for one fork, not for the package's imports. Anything else is
    declined. Either way the package is made importable and two things go back for
    ``cli.main``: stdin (None when it was not read) and, in that child only, the registry key
    whose next token it is to mint. ``args`` replaces ``sys.argv[1:]``."""
    stdin = None
    hit = None
    if args is None and sys.argv[1:] == ["get"] and not called_as_kubelet_provider(sys.argv[0]):
        try:
            stdin = read_stdin()
            hit = answer(stdin)
        except KeyboardInterrupt:
            raise SystemExit(130) from None  # as cli answers an interrupt: no traceback
    refresh = None
    if hit is not None:
        text, key, ahead = hit
        write_line(text)
        if not ahead or not detach():
            leave()  # answered (and, inside the window, its refresh detached)
        refresh = key
    _importable(site)
    return stdin, refresh


def detach() -> bool:
    """Fork one detached child: True in the child, which has /dev/null for its standard
    streams (it lets go of the client's pipes before anything else), a session of its own and a
    lower priority (init adopts it when this process leaves); False in this process, and when
    fork fails."""
    try:
        pid = posix.fork()
    except OSError:
        return False
    if pid:
        return False
    try:
        quiet = posix.open("/dev/null", posix.O_RDWR)
        for fd in (0, 1, 2):  # first: the client reads until the last holder of its pipes leaves
            posix.dup2(quiet, fd)
        posix.setsid()
        posix.nice(10)  # then below the pulls: the client and its next gets come first
    except BaseException:  # nothing may escape a detached child (it has no one to tell)
        posix._exit(1)
    return True


def leave() -> "NoReturn":
    """End a launcher's answered `get` at once: nothing is left to flush or close but stderr,
    and the interpreter's teardown would cost it a fifth of its time."""
    try:
        sys.stderr.flush()
    finally:
        posix._exit(0)


def _importable(site: str) -> None:
    """Put ``site`` on sys.path where `site` would (last), loading the package from there
    first; an import that nothing finds then runs `site` once and looks again (.pth files, a
    venv's system site-packages, platlib)."""
    if site in sys.path:
        return
    sys.path.insert(0, site)  # first while the package loads: no listing of the stdlib's dirs
    import docker_credential_quayfed  # noqa: F401

    sys.path.remove(site)
    sys.path.append(site)

    class LateSite:  # last on sys.meta_path
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> object:
            try:
                sys.meta_path.remove(LateSite)  # type: ignore[arg-type]
            except ValueError:  # another thread ran it
                return None
            import site as site_module
            from importlib.machinery import PathFinder

            site_module.main()
            return PathFinder.find_spec(name, path, target)  # type: ignore[arg-type]

    sys.meta_path.append(LateSite)  # type: ignore[arg-type]
