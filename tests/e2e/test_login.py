"""`podman login` / `docker login` / logout against a registry served by the helper."""

from __future__ import annotations

import pytest

from tests.e2e.deployment import E2E
from tests.e2e.works_with import WorksWith

pytestmark = pytest.mark.e2e


def test_podman_login_without_credentials_uses_the_helper(e2e: E2E, works_with: WorksWith) -> None:
    e2e.configure("password")
    sandbox = e2e.sandbox

    login = sandbox.podman_login(e2e.registry.host, None, None)
    assert login.ok, login.describe()
    assert e2e.exchanges() == 1
    # Nothing was written to the auth file: credHelpers still routes to the helper.
    assert sandbox.read_config(sandbox.auth_file) == {
        "credHelpers": {e2e.registry.host: "quayfed", e2e.deployment.other.host: "quayfed"}
    }
    works_with.verified("podman", "`login` with no password reuses the helper's token", "auth.json")


def test_podman_login_as_another_user_fails_at_the_registry(e2e: E2E) -> None:
    e2e.configure("password")

    login = e2e.sandbox.podman_login(e2e.registry.host, "someone+else", "a-long-lived-password")
    e2e.secrets.append("a-long-lived-password")
    assert not login.ok, login.describe()
    # podman asks the helper (get) first, then checks the new credentials at the registry;
    # they are refused there, so it never asks the helper to store them.
    assert "invalid username/password" in login.stderr, login.describe()
    assert e2e.exchanges() == 1
    assert e2e.cached_robot_token() != "a-long-lived-password"


def test_podman_login_with_a_robot_token_stores_it_in_the_helper_cache(
    e2e: E2E, works_with: WorksWith
) -> None:
    e2e.configure("password")
    token = e2e.quay.issue_robot_token(e2e.deployment.robot)

    login = e2e.sandbox.podman_login(e2e.registry.host, e2e.deployment.robot, token)
    assert login.ok, login.describe()
    assert len(e2e.cached_token_files()) == 1
    assert e2e.cached_robot_token() == token, "the helper serves the token podman stored"
    pulled = e2e.sandbox.podman_pull(e2e.private(1))
    assert pulled.ok, pulled.describe()
    assert e2e.exchanges() == 1, "only the get podman login makes before storing"
    works_with.verified(
        "podman", "`login -u ROBOT` with a robot token stores it in the cache", "auth.json"
    )


def test_docker_login_stores_a_robot_token_and_logout_erases_it(
    e2e: E2E, works_with: WorksWith
) -> None:
    e2e.configure("password")
    sandbox = e2e.sandbox
    token = e2e.cached_robot_token()
    assert e2e.exchanges() == 1
    e2e.clear_cache()

    login = sandbox.docker_login(e2e.registry.host, e2e.deployment.robot, token)
    assert login.ok, login.describe()
    assert e2e.cached_robot_token() == token, "the stored token is served from the cache"
    inspected = sandbox.docker_manifest_inspect(e2e.private(1))
    assert inspected.ok, inspected.describe()
    assert e2e.exchanges() == 1

    logout = sandbox.docker_logout(e2e.registry.host)
    assert logout.ok, logout.describe()
    assert e2e.cached_token_files() == []
    inspected = sandbox.docker_manifest_inspect(e2e.private(1))
    assert inspected.ok, inspected.describe()
    assert e2e.exchanges() == 2, "after logout the helper mints a fresh token"
    works_with.verified(
        "docker", "`login` stores a robot token; `logout` erases the cache", "docker"
    )


def test_docker_login_with_a_wrong_password_fails_at_the_registry(e2e: E2E) -> None:
    e2e.configure("password")
    login = e2e.sandbox.docker_login(
        e2e.registry.host, e2e.deployment.robot, "a-long-lived-password"
    )
    e2e.secrets.append("a-long-lived-password")
    # docker (no engine) checks the credentials at the registry before it calls store.
    assert not login.ok, login.describe()
    assert "unauthorized" in login.stderr, login.describe()
    assert e2e.cached_token_files() == []


def test_podman_logout_erases_the_cached_token(e2e: E2E, works_with: WorksWith) -> None:
    e2e.configure("password")
    sandbox = e2e.sandbox
    assert sandbox.podman_pull(e2e.private(1)).ok
    assert e2e.exchanges() == 1

    logout = sandbox.podman_logout(e2e.registry.host)
    assert logout.ok, logout.describe()
    assert e2e.cached_token_files() == []
    # credHelpers stays in place, so the next pull just mints a fresh token.
    pulled = sandbox.podman_pull(e2e.private(2))
    assert pulled.ok, pulled.describe()
    assert e2e.exchanges() == 2
    works_with.verified(
        "podman", "`logout` erases the cached token; next pull re-mints", "auth.json"
    )
