"""``source = "auto"``: find out which CI platform or cluster this runs in and use its identity.

A list of detectors, tried in order; each returns None for "not my environment" and otherwise
the environment, whose source then raises a specific error when it is that environment but
the token cannot be had. Detection reads only environment variables and whether a file
exists, so it is cheap enough to be part of the cache key: a robot token minted for one job
or platform is never served to another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from docker_credential_quayfed import paths
from docker_credential_quayfed.errors import SecretError
from docker_credential_quayfed.sources.base import SourceContext, TokenSource
from docker_credential_quayfed.sources.buildkite import BuildkiteSource
from docker_credential_quayfed.sources.circleci import CircleCISource
from docker_credential_quayfed.sources.github_actions import GitHubActionsSource
from docker_credential_quayfed.sources.gitlab import GitLabSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.deadline import Deadline
    from docker_credential_quayfed.identity import Principal
    from docker_credential_quayfed.request import RequestContext

#: where a Kubernetes/OpenShift pod's projected token for Quay is read when token_file is unset
DEFAULT_TOKEN_FILE = "/var/run/secrets/tokens/quay"


@dataclass(frozen=True)
class Environment:
    """A detected environment: its name, what tells this job's credential from another's, and
    the source that gets its token."""

    platform: str
    identity: str
    source: TokenSource


Detector = Callable[["RegistryConfig"], "Environment | None"]


def github_actions(registry: RegistryConfig) -> Environment | None:
    if os.environ.get("GITHUB_ACTIONS", "").strip().lower() != "true":
        return None
    variables = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB")
    repository, run, attempt, job = (os.environ.get(name, "?") for name in variables)
    identity = f"{repository} run {run}.{attempt} job {job}"
    return Environment("GitHub Actions", identity, GitHubActionsSource())


def gitlab(registry: RegistryConfig) -> Environment | None:
    found = GitLabSource.detect(registry)
    return None if found is None else Environment(GitLabSource.platform, found, GitLabSource())


def buildkite(registry: RegistryConfig) -> Environment | None:
    found = BuildkiteSource.detect(registry)
    return None if found is None else Environment("Buildkite", found, BuildkiteSource())


def circleci(registry: RegistryConfig) -> Environment | None:
    found = CircleCISource.detect(registry)
    return None if found is None else Environment("CircleCI", found, CircleCISource())


def kubernetes(registry: RegistryConfig) -> Environment | None:
    """A pod (KUBERNETES_SERVICE_HOST), a configured token_file, or a token at the default path."""
    path = paths.resolve_path(registry.token_file or DEFAULT_TOKEN_FILE)
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST", "").strip())
    if not (in_cluster or registry.token_file or os.path.exists(path)):
        return None
    return Environment("Kubernetes", f"token file {path}", ProjectedToken(path))


#: tried in this order; the first that recognises its environment decides
DETECTORS: tuple[tuple[str, Detector], ...] = (
    ("GitHub Actions (GITHUB_ACTIONS)", github_actions),
    ("GitLab CI (GITLAB_CI)", gitlab),
    ("Buildkite (BUILDKITE)", buildkite),
    ("CircleCI (CIRCLECI)", circleci),
    (f"Kubernetes (KUBERNETES_SERVICE_HOST, token_file, {DEFAULT_TOKEN_FILE})", kubernetes),
)


def detect(registry: RegistryConfig) -> Environment | None:
    for _, detector in DETECTORS:
        found = detector(registry)
        if found is not None:
            return found
    return None


class ProjectedToken(TokenSource):
    """A projected service-account token file, named by the detector."""

    name = "auto"
    carries_jwt = True

    def __init__(self, path: str) -> None:
        self.path = path

    def read_jwt(self, registry: RegistryConfig, deadline: Deadline) -> str:
        from docker_credential_quayfed import secret_reader

        if not os.path.lexists(self.path):
            raise SecretError(
                f"running in Kubernetes but there is no projected token at {self.path} "
                "(token_file)",
                "mount a serviceAccountToken projected volume there (audience: what Quay "
                "expects) or set token_file to where it is",
            )
        # Projected tokens are short-lived and mounted 0644 by default: no mode warning.
        return secret_reader.read_secret_file(
            "token", self.path, where="token_file", check_mode=False
        )


class AutoSource(TokenSource):
    name = "auto"
    summary = (
        "detects GitHub Actions, GitLab CI, Buildkite, CircleCI, then a Kubernetes projected "
        "token, and uses that identity"
    )
    ambient = True
    optional = ("audience", "token_env", "token_file")

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        found = detect(registry)
        return "no environment" if found is None else f"{found.platform}: {found.identity}"

    def principal(
        self, registry: RegistryConfig, request: RequestContext, deadline: Deadline
    ) -> tuple[Principal, str]:
        """The detected environment's: a carried JWT's claims, or the job minting it."""
        found = _detected(registry)
        if found.source.carries_jwt:
            return found.source.principal(registry, request, deadline)
        return super().principal(registry, request, deadline)

    def fetch(self, context: SourceContext) -> str:
        return _detected(context.registry).source.fetch(context)


def _detected(registry: RegistryConfig) -> Environment:
    from docker_credential_quayfed import log

    found = detect(registry)
    if found is None:
        checked = ", ".join(name for name, _ in DETECTORS)
        raise SecretError(
            f"source = 'auto' recognised no environment (checked {checked})",
            "run inside one of them, or choose the source explicitly",
        )
    log.debug(f"source 'auto': {found.platform} detected ({found.identity})")
    return found
