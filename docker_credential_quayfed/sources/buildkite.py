"""The Buildkite job's OIDC token, from ``buildkite-agent oidc request-token``."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from docker_credential_quayfed.sources.base import SourceContext, TokenSource

if TYPE_CHECKING:
    from docker_credential_quayfed.config import RegistryConfig
    from docker_credential_quayfed.request import RequestContext

AGENT = "buildkite-agent"


class BuildkiteSource(TokenSource):
    name = "buildkite"
    summary = "the Buildkite job's token from 'buildkite-agent oidc request-token' (--audience)"
    ambient = True
    optional = ("audience",)
    #: for people, and what detect looks at (source = "auto" lists it when nothing matched)
    platform = "Buildkite"
    checked = "BUILDKITE"

    @classmethod
    def detect(cls, registry: RegistryConfig) -> str | None:
        """This job's identity when running in a Buildkite job, else None."""
        if os.environ.get("BUILDKITE", "").strip().lower() != "true":
            return None
        pipeline = os.environ.get("BUILDKITE_PIPELINE_SLUG", "?")
        return f"{pipeline} job {os.environ.get('BUILDKITE_JOB_ID', '?')}"

    @classmethod
    def identity_of(cls, registry: RegistryConfig, request: RequestContext) -> str:
        return cls.detect(registry) or ""

    def fetch(self, context: SourceContext) -> str:
        from docker_credential_quayfed.sources.base import run_token_command

        argv = [AGENT, "oidc", "request-token"]
        if context.registry.audience:
            argv += ["--audience", context.registry.audience]
        return run_token_command(context.deadline, shlex.join(argv), "source 'buildkite'")
