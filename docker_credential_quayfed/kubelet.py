"""The kubelet image credential provider: a second front end to the same broker.

The kubelet runs ``quay-credential-provider`` (or ``docker-credential-quayfed kubelet``) with a
``CredentialProviderRequest`` (credentialprovider.kubelet.k8s.io/v1) on stdin and reads a
``CredentialProviderResponse`` from stdout. Two ways to answer:

- pod identity: the request carries the pod's service-account token and the service account's
  annotations. The robot comes from ``quay.io/federated-robot-account``; everything that decides
  where the token may go and how TLS is checked comes from the node's ``[kubelet."HOST"]``
  tables, never from an annotation: the token must carry the audience of the Quay that will
  see it, the image's own host and the Quay both allow the robot, and an override to another
  Quay is one the image's host lists. The robot token is cached per Quay host, robot and the
  token's ``iss`` and ``sub``, so one service account never gets another's robot token. A
  service account that names no robot gets what its host's ``unannotated`` says.
- node identity: no token in the request; the image's registry is answered from the helper's
  own ``[registries."HOST"]`` table, exactly as ``get`` would.

Every failure is one line on stderr, begun with the name the kubelet started the provider by,
and a non-zero exit with nothing on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docker_credential_quayfed import __version__, claims, log, paths
from docker_credential_quayfed.config import RegistryConfig
from docker_credential_quayfed.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from docker_credential_quayfed.broker import Outcome
    from docker_credential_quayfed.config import Config, KubeletHost
    from docker_credential_quayfed.request import RequestContext

PROGRAM = "quay-credential-provider"
API_VERSION = "credentialprovider.kubelet.k8s.io/v1"
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"

#: the service-account annotation naming the robot (required in service-account mode)
ROBOT_ANNOTATION = "quay.io/federated-robot-account"
#: annotations naming the Quay host when it is not the image's registry (both spellings exist)
HOST_ANNOTATIONS = ("quay.io/host-override", "quay.io/host")
#: annotations that would let whoever can annotate a service account weaken the node's TLS
TLS_ANNOTATIONS = ("quay.io/ignore-tls-verify", "quay.io/plain-http", "quay.io/certificate-file")

#: the credential depends on the registry, not on the image's path (see docs/kubelet.md)
CACHE_KEY_TYPE = "Registry"
#: for an annotation naming several robots: each image's answer holds its organization's robot
IMAGE_CACHE_KEY_TYPE = "Image"
#: how long the kubelet keeps "no credentials" for a service account that names no robot
#: (``unannotated = "skip"``): annotating the account changes the kubelet's key at once
UNANNOTATED_CACHE_SECONDS = 3600

#: a request holds one image, one token and a few annotations: far below this
MAX_REQUEST = 1 << 16
_FALSE_WORDS = ("", "0", "false", "no", "off")

_SYNOPSIS = " ".join(f"[{flag} {names}]" for flag, names, _ in paths.KUBELET_FLAGS)
USAGE = (
    f"usage: {PROGRAM} {_SYNOPSIS}\n"
    f"       docker-credential-quayfed kubelet {_SYNOPSIS}\n\n"
    "Kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1): reads a\n"
    "CredentialProviderRequest on stdin, writes a CredentialProviderResponse on stdout.\n\n"
    + "".join(f"  {flag} {names}\n      {text}\n" for flag, names, text in paths.KUBELET_FLAGS)
    + "\nEvery executable of the provider takes the same arguments, whatever name it is linked\n"
    "as; a leading 'kubelet' is allowed, so one CredentialProviderConfig serves them all.\n"
    "See docs/kubelet.md for the kubelet's CredentialProviderConfig.\n"
)


# -- the wire format -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A CredentialProviderRequest, checked."""

    image: str
    service_account_token: str = ""
    annotations: tuple[tuple[str, str], ...] = ()

    def annotation(self, name: str) -> str:
        return dict(self.annotations).get(name, "").strip()

    def __repr__(self) -> str:
        return f"Request({self.image!r}, token={'yes' if self.service_account_token else 'no'})"


def parse_request(text: str) -> Request:
    """The request on stdin; a UsageError (one line, no token in it) for anything else."""
    fix = f"the kubelet sends apiVersion {API_VERSION}, kind {REQUEST_KIND} and an image"
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise UsageError(f"stdin is not a JSON {REQUEST_KIND}", fix) from None
    if not isinstance(document, dict):
        raise UsageError(f"stdin is not a JSON object ({REQUEST_KIND})", fix)
    token = document.get("serviceAccountToken")
    if isinstance(token, str):
        log.secret(token)  # before anything below can put it in a message
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        raise UsageError(
            f"unsupported apiVersion {_shown(api_version)} (this provider speaks {API_VERSION})",
            f"set apiVersion: {API_VERSION} for this provider in the kubelet's "
            "CredentialProviderConfig",
        )
    kind = document.get("kind")
    if kind != REQUEST_KIND:
        raise UsageError(f"unexpected kind {_shown(kind)} (expected {REQUEST_KIND})", fix)
    image = document.get("image")
    if not isinstance(image, str) or not image.strip():
        raise UsageError("the request names no image", fix)
    if token is not None and not isinstance(token, str):
        raise UsageError("serviceAccountToken in the request is not a string", fix)
    annotations = document.get("serviceAccountAnnotations")
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise UsageError("serviceAccountAnnotations in the request is not a map of strings", fix)
    return Request(
        image=image.strip(),
        service_account_token=(token or "").strip(),
        annotations=tuple(sorted(annotations.items())),
    )


def _shown(value: object) -> str:
    return log.server_text(repr(value), 60)


def registry_of(image: str) -> str:
    """The image's registry ``host[:port]``, split as the kubelet splits it (before the first /)."""
    from docker_credential_quayfed.protocol import registry_key

    first = image.split("/", 1)[0]
    problem = UsageError(
        f"the image {_shown(image)} names no registry host",
        "list only registry hosts in this provider's matchImages",
    )
    if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
        raise problem
    try:
        host = registry_key(first)
    except UsageError:
        raise problem from None
    if host != first.lower():
        raise problem
    return first


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's time.Duration prints it (``55m0s``, ``1h0m0s``, ``0s``)."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def encode_response(
    registry: str,
    credentials: tuple[str, str] | None,
    cache_for: float,
    cache_key_type: str = CACHE_KEY_TYPE,
) -> str:
    """The CredentialProviderResponse: ``auth`` for ``registry`` (none: no credentials).
    ``registry`` may carry a path (``quay.io/org``): the kubelet then matches only images under
    it."""
    response: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": RESPONSE_KIND,
        "cacheKeyType": cache_key_type,
        "cacheDuration": go_duration(cache_for),
    }
    if credentials is not None:
        username, password = credentials
        response["auth"] = {registry: {"username": username, "password": password}}
    return json.dumps(response, separators=(",", ":"))


# -- the flow ------------------------------------------------------------------------------------
def answer(text: str, config_path: Path, context: RequestContext) -> str:
    """The response JSON for the request ``text``; raises a QuayfedError when there is none."""
    request = parse_request(text)
    registry = registry_of(request.image)
    if request.service_account_token:
        return pod_identity(request, registry, config_path, context)
    return node_identity(registry, _load(config_path), context)


def _load(config_path: Path) -> Config:
    from docker_credential_quayfed import config
    from docker_credential_quayfed.sources import BY_NAME

    return config.load(BY_NAME, config_path)


def pod_identity(
    request: Request, registry: str, config_path: Path, context: RequestContext
) -> str:
    """Exchange the pod's service-account token for the robot its annotation names."""
    from docker_credential_quayfed import broker
    from docker_credential_quayfed.protocol import table_key

    token = request.service_account_token
    for name in TLS_ANNOTATIONS:
        value = request.annotation(name)
        if value.lower() not in _FALSE_WORDS:
            raise UsageError(
                f"refusing the annotation {name}={_shown(value)}: TLS settings are node policy",
                'remove it from the service account; the node\'s [kubelet."HOST"] table sets '
                "ca_bundle, and verification is never turned off",
            )
    robots = _robots(request.annotation(ROBOT_ANNOTATION))
    overrides = {request.annotation(name) for name in HOST_ANNOTATIONS} - {""}
    if len(overrides) > 1:
        raise UsageError(
            f"{' and '.join(HOST_ANNOTATIONS)} name different hosts",
            "keep one of the two annotations",
        )
    override = _override_host(overrides.pop()) if overrides else ""
    settings = _load(config_path)
    own = _kubelet_table(settings, table_key(registry))
    if not robots:
        return _unannotated(request, registry, own, settings, context)
    # Several robots (one per organization): the image's namespace chooses, and the answer is
    # for that namespace's path alone, cached per image, so no robot of another organization
    # is ever sent and the kubelet's own lookup gives each organization its robot.
    answered_for, key_type = registry, CACHE_KEY_TYPE
    robot = robots[0]
    if len(robots) > 1:
        organization = _namespace(request.image)
        chosen = [r for r in robots if r.partition("+")[0] == organization]
        answered_for, key_type = f"{registry}/{organization}", IMAGE_CACHE_KEY_TYPE
        if not chosen:
            log.debug(f"{request.image}: no robot of organization {organization} is named")
            return encode_response(answered_for, None, UNANNOTATED_CACHE_SECONDS, key_type)
        robot = chosen[0]
    node = own
    if override and override != own.key:
        node = _override_table(settings, own, override)
    for table in dict.fromkeys((own, node)):
        if not table.allows(robot):
            raise ConfigError(
                f'robot {robot} is not in robots for [kubelet."{table.key}"] on this node',
                f"ask the node's administrator to allow it in {settings.path}",
            )
    issuer, subject = _service_account(token)
    _check_audience(token, node)
    # The pod's token is handed to the broker as it is: its iss, sub and aud are the key.
    pod = RegistryConfig(
        key=node.key,
        robot=robot,
        issuer=issuer,
        source="env",  # never asked: the broker exchanges the handed-over token
        quay_url=node.quay_base_url,
        ca_bundle=node.ca_bundle,
        refresh_margin=node.refresh_margin,
        timeout=node.timeout,
        config_file=node.config_file,
    )
    log.debug(f"{registry}: {subject} (iss {issuer}) asks for {robot} at {pod.quay_base_url}")
    outcome = broker.robot_token(pod, context, oidc_token=token)
    return _respond(answered_for, outcome, node.refresh_margin, key_type)


def _kubelet_table(settings: Config, host: str) -> KubeletHost:
    """The image's host's ``[kubelet."HOST"]`` table; refused when the node has none."""
    table = settings.kubelet.get(host)
    if table is None:
        raise ConfigError(
            f"this node does not let pods pull from registry {host} with their own identity",
            f'add a [kubelet."{host}"] table to {settings.path}',
        )
    return table


def _override_table(settings: Config, own: KubeletHost, override: str) -> KubeletHost:
    """The Quay a ``quay.io/host-override`` names, if the image's own host lets it be named."""
    if override not in own.allow_override_to:
        raise ConfigError(
            f'[kubelet."{own.key}"] does not let {HOST_ANNOTATIONS[0]} send its pulls to '
            f"{override}",
            f"remove the annotation, or, if that Quay is trusted with this registry's pods, add "
            f'allow_override_to = ["{override}"] to [kubelet."{own.key}"] in {settings.path}',
        )
    node = settings.kubelet.get(override)
    if node is None:
        raise ConfigError(
            f"this node does not let pods pull from {HOST_ANNOTATIONS[0]} {override} "
            "with their own identity",
            f'remove the annotation, or, if that Quay is trusted, add a [kubelet."{override}"] '
            f"table to {settings.path}",
        )
    return node


def _unannotated(
    request: Request, registry: str, own: KubeletHost, settings: Config, context: RequestContext
) -> str:
    """A service account that names no robot: what its host's ``unannotated`` says."""
    token = request.service_account_token
    _service_account(token)
    _check_audience(token, own)
    if own.unannotated == "refuse":
        raise UsageError(
            f"the service account has no {ROBOT_ANNOTATION} annotation",
            f"annotate it with {ROBOT_ANNOTATION}: namespace+robot, and list the key in "
            "requiredServiceAccountAnnotationKeys",
        )
    if own.unannotated == "node":
        if own.key not in settings.registries:
            raise ConfigError(
                f'[kubelet."{own.key}"] unannotated = "node" but there is no '
                f'[registries."{own.key}"] table for the node\'s identity',
                f'add one to {settings.path}, or set unannotated = "skip"',
            )
        return node_identity(registry, settings, context)
    log.debug(f"{registry}: the service account names no robot: no credentials from this node")
    return encode_response(registry, None, UNANNOTATED_CACHE_SECONDS)


def node_identity(registry: str, settings: Config, context: RequestContext) -> str:
    """The node's own ``[registries."HOST"]`` answers, as ``get`` does."""
    from docker_credential_quayfed import broker
    from docker_credential_quayfed.protocol import table_key

    host = table_key(registry)
    configured = settings.registries.get(host)
    if configured is None:
        log.debug(f"{host} has no [registries] table and the request no token: no credentials")
        return encode_response(registry, None, 0)
    outcome = broker.robot_token(configured, context)
    return _respond(registry, outcome, configured.refresh_margin)


def _respond(
    registry: str, outcome: Outcome, refresh_margin: int, key_type: str = CACHE_KEY_TYPE
) -> str:
    from docker_credential_quayfed import broker

    token = outcome.token
    # The kubelet keeps the credential until our own refresh point, never past it; a token
    # served because a refresh failed is not cached at all, so the next pull asks again.
    cache_for = 0.0
    if outcome.how != broker.STALE:
        cache_for = token.refresh_at(refresh_margin) - time.time()
    log.debug(f"{registry}: robot token {outcome.how}; kubelet caches it {go_duration(cache_for)}")
    return encode_response(registry, (token.robot, token.token), cache_for, key_type)


def _override_host(value: str) -> str:
    from docker_credential_quayfed.protocol import registry_key, table_key

    try:
        host = registry_key(value)
    except UsageError:
        host = ""
    if not host or host != value.strip().lower():
        raise UsageError(
            f"{HOST_ANNOTATIONS[0]} = {_shown(value)} is not a registry host",
            "write the bare host[:port] of Quay, e.g. quay.example.com",
        )
    return table_key(host)


def _robots(annotation: str) -> list[str]:
    """The robots an annotation names: one, or several (one per organization) separated by
    commas; refused when one is no full robot name or two share an organization."""
    named = [robot.strip() for robot in annotation.split(",") if robot.strip()]
    for robot in named:
        if not _robot_name(robot):
            raise UsageError(
                f"{ROBOT_ANNOTATION} = {_shown(annotation)}: {_shown(robot)} is not a full "
                "robot name",
                'write it as "namespace+shortname", several separated by commas',
            )
    organizations = [robot.partition("+")[0] for robot in named]
    if len(set(organizations)) != len(organizations):
        raise UsageError(
            f"{ROBOT_ANNOTATION} = {_shown(annotation)} names two robots of one organization",
            "name one robot per organization: the image's namespace chooses among them",
        )
    return named


def _namespace(image: str) -> str:
    """The image's first path component after the host (``quay.io/org/app`` -> ``org``)."""
    path = image.split("/", 1)[1] if "/" in image else ""
    return path.split("/", 1)[0].split(":", 1)[0].split("@", 1)[0]


def _robot_name(robot: str) -> bool:
    from docker_credential_quayfed.names import is_robot_name

    return is_robot_name(robot)


def _service_account(token: str) -> tuple[str, str]:
    """``iss`` and ``sub`` of the pod's token (unverified: Quay verifies it at the exchange)."""
    fix = "the kubelet must send a service-account token (check tokenAttributes)"
    try:
        header, token_claims = claims.split(token)
    except claims.NotAJWT:
        raise UsageError("the service-account token in the request is not a JWT", fix) from None
    if not header.get("kid"):
        raise UsageError(
            "the service-account token has no kid header, which Quay requires",
            "check the cluster's service-account signing key configuration",
        )
    issuer, subject = token_claims.get("iss"), token_claims.get("sub")
    if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
        raise UsageError("the service-account token has no iss or sub claim", fix)
    expires = claims.numeric_claim(token_claims, "exp")
    if expires is not None and expires <= time.time():
        raise UsageError(
            f"the service-account token of {log.server_text(subject, 80)} has expired",
            "check the node's clock; the kubelet sends a fresh token on each pull",
        )
    return issuer, subject


def _check_audience(token: str, node: KubeletHost) -> None:
    """The token must be meant for the Quay that will see it: any other Quay could replay it."""
    audience = claims.unverified_claims(token).get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or node.audience not in audiences:
        shown = ", ".join(a for a in audiences or () if isinstance(a, str)) or "none"
        raise ConfigError(
            f"the service-account token is for audience {log.server_text(shown, 80)}, not "
            f'{node.audience!r} that [kubelet."{node.key}"] expects',
            f"give {node.key} its own provider in the kubelet's CredentialProviderConfig with "
            f"serviceAccountTokenAudience: {node.audience} (one provider and audience per Quay)",
        )


# -- the command -------------------------------------------------------------------------------
def main(argv: Sequence[str]) -> int:
    """Run one request: the response on stdout and 0. An error is raised to ``cli``, which
    alone turns every error into one line on stderr and an exit code."""
    from docker_credential_quayfed.cache import TokenCache
    from docker_credential_quayfed.request import RequestContext

    started = time.monotonic()
    log.name_program(_program(sys.argv[0] if sys.argv else ""))
    options = _options(list(argv))
    if options is None:
        return 0
    config_path, cache_dir, chosen_by = options
    # One directory for everything this request keeps (discovery documents, kept JWTs,
    # logins, locks), passed down by argument; the timeout counts from the start.
    context = RequestContext(TokenCache(cache_dir, chosen_by), started=started, commands=False)
    response = answer(_read_stdin(), config_path, context)
    try:
        sys.stdout.write(response + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        return 1
    return 0


def _program(started_as: str) -> str:
    """The provider's ``name`` in the kubelet's configuration: the file it was started by."""
    name = started_as.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".pyz")
    if not name or name.endswith(".py") or name.startswith("python"):
        return PROGRAM  # python -m docker_credential_quayfed kubelet
    return name


def _options(args: list[str]) -> tuple[Path, Path, str] | None:
    """(config file, cache directory, what chose it: --cache-dir or the variable) from argv
    and the environment; None after --help."""
    chosen: dict[str, str] = {}
    if args[:1] == ["kubelet"]:  # as docker-credential-quayfed's own subcommand is named
        args = args[1:]
    known = [flag for flag, _, _ in paths.KUBELET_FLAGS]
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return None
        if arg == "--version":
            sys.stdout.write(f"{PROGRAM} {__version__}\n")
            return None
        name, equals, value = arg.partition("=")
        if name not in known:
            raise UsageError(f"unknown argument {_shown(arg)}", f"see '{PROGRAM} --help'")
        if not equals:
            if not args:
                raise UsageError(f"{name} needs a path", f"write {name} PATH")
            value = args.pop(0)
        if not value.strip():
            raise UsageError(f"{name} needs a path", f"write {name} PATH")
        chosen[name] = paths.resolve_path(value.strip())
    config_path = chosen.get("--config") or paths.config_file()
    cache_dir = chosen.get("--cache-dir") or paths.cache_dir()
    chosen_by = "--cache-dir" if chosen.get("--cache-dir") else paths.CACHE_DIR_ENV
    return Path(config_path), Path(cache_dir), chosen_by


def _read_stdin() -> str:
    data = sys.stdin.buffer.read(MAX_REQUEST + 1) if sys.stdin else b""
    if len(data) > MAX_REQUEST:
        raise UsageError(
            f"the request on stdin is over {MAX_REQUEST} bytes",
            "send one CredentialProviderRequest",
        )
    return data.decode("utf-8", "replace")
