"""doctor and federation through the installed executable, against nanoidp and the emulator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quay_sandbox.quay import QuayEmulator
from quay_sandbox.server import serve_wsgi
from quay_sandbox.tls import TestPKI
from tests.helper_process import Result, helper_command, run_helper
from tests.support.oidc_provider import OIDCProvider

ROBOT = "quay_federation+rhbk_user"
ADMIN_TOKEN = "oauth-admin-token-7c2e"


@pytest.fixture
def env(quay: QuayEmulator, oidc_provider: OIDCProvider, tmp_path: Path) -> dict[str, str]:
    """A configured, wired helper for the emulator's registry key."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"[registries.{json.dumps(quay.host)}]\n"
        f'robot = "{ROBOT}"\n'
        f'issuer = "{oidc_provider.issuer}"\n'
        'source = "password"\n'
        f'client_id = "{oidc_provider.public_client}"\n'
        'username = "jdoe"\n'
        'password_env = "QUAYFED_OPS_PASSWORD"\n'
        f'quay_url = "{quay.url}"\n'
        f'ca_bundle = "{oidc_provider.ca_cert}"\n'
    )
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"credHelpers": {quay.host: "quayfed"}}))
    helper_dir = str(Path(helper_command()[0]).parent)
    return {
        "HOME": str(tmp_path),
        "PATH": f"{helper_dir}:{os.environ.get('PATH', '')}",
        "DOCKER_CONFIG": str(docker),
        "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
        "DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config),
        "DOCKER_CREDENTIAL_QUAYFED_CACHE_DIR": str(tmp_path / "cache"),
        "QUAYFED_OPS_PASSWORD": oidc_provider.users["jdoe"],
        "QUAY_OAUTH_TOKEN": ADMIN_TOKEN,
        "NO_COLOR": "1",
    }


def doctor(env: dict[str, str], *args: str) -> Result:
    return run_helper("doctor", env=env, extra_args=args, timeout=90)


def steps_of(result: Result) -> dict[str, dict[str, str]]:
    [report] = json.loads(result.stdout)
    return {step["name"]: step for step in report["steps"]}


def test_doctor_passes_every_step_and_prints_what_quay_needs(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "jdoe")])
    result = doctor(env, quay.host)
    assert result.returncode == 0, result
    assert f"iss={oidc_provider.issuer} sub=jdoe" in result.stdout
    assert "all checks passed" in result.stdout
    for name in ("config", "discovery", "JWKS", "token minted", "Quay exchange", "registry /v2/"):
        assert any(
            line.strip().startswith("[ ok ]") and name in line
            for line in result.stdout.splitlines()
        ), name
    assert "\033[" not in result.stdout  # NO_COLOR
    assert env["QUAYFED_OPS_PASSWORD"] not in result.stdout + result.stderr
    assert "eyJ" not in result.stdout + result.stderr


def test_doctor_json_names_the_failing_step_and_skips_the_rest(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "someone-else")])
    result = doctor(env, quay.host, "--json")
    assert result.returncode == 1
    steps = steps_of(result)
    assert steps["token minted"]["verdict"] == "ok"
    assert "sub=jdoe" in steps["token minted"]["detail"]
    exchange = steps["Quay exchange"]
    assert exchange["verdict"] == "fail"
    assert "Token does not match robot" in exchange["detail"]
    assert "subject 'jdoe'" in exchange["fix"]
    assert steps["registry /v2/"]["verdict"] == "skip"


def test_doctor_notices_lost_cred_helpers(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "jdoe")])
    # What `podman logout --all` leaves behind: no credHelpers section at all.
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text('{"auths": {}}')
    Path(env["REGISTRY_AUTH_FILE"]).write_text('{"auths": {}}')
    result = doctor(env, quay.host, "--json")
    assert result.returncode == 1
    steps = steps_of(result)
    assert steps["credHelpers"]["verdict"] == "fail"
    assert f"configure {quay.host}" in steps["credHelpers"]["fix"]


def test_doctor_with_a_broken_config_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[registries\n")
    result = doctor({"DOCKER_CREDENTIAL_QUAYFED_CONFIG": str(config), "NO_COLOR": "1"})
    assert result.returncode == 1
    assert "not valid TOML" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def federation(env: dict[str, str], quay: QuayEmulator, *args: str) -> Result:
    return run_helper("federation", env=env, extra_args=args, timeout=60)


def test_federation_show_add_remove_set(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot(ROBOT)
    quay.add_admin_token(ADMIN_TOKEN, ["quay_federation"])
    flags = ("--quay-url", str(quay.url), "--ca-bundle", str(oidc_provider.ca_cert))
    shown = federation(env, quay, "show", ROBOT, *flags)
    assert shown.returncode == 0, shown
    assert "no federation entries" in shown.stdout

    # quay/quay's API keeps only issuer and subject: the audience the source's JWTs carry does
    # not stick, and nothing restricted became open, so the entry stands, with a note.
    added = federation(env, quay, "add", ROBOT, "--from-config", quay.host, "--host", quay.host)
    assert added.returncode == 0, added
    assert "Quay kept no audiences for quayfed-cli of" in added.stderr
    assert len(added.stderr.splitlines()) == 1
    assert quay.get_federation(ROBOT) == [{"issuer": oidc_provider.issuer, "subject": "jdoe"}]
    # Asked for in so many words, an audience that does not stick fails.
    quay.set_federation(ROBOT, [])
    asked = ("--issuer", oidc_provider.issuer, "--subject", "jdoe", "--audience", "quay")
    refused = federation(env, quay, "add", ROBOT, *asked, "--host", quay.host)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused
    assert "Quay dropped the audiences quay of" in refused.stderr
    assert "--no-audience" in refused.stderr
    quay.set_federation(ROBOT, [])
    added = federation(
        env, quay, "add", ROBOT, "--from-config", quay.host, "--host", quay.host, "--no-audience"
    )
    assert added.returncode == 0 and added.stderr == "", added
    assert quay.get_federation(ROBOT) == [{"issuer": oidc_provider.issuer, "subject": "jdoe"}]
    # The robot now works end to end with what `add --from-config` put there.
    got = run_helper("get", quay.host, env=env)
    assert got.returncode == 0 and json.loads(got.stdout)["Username"] == ROBOT

    extra = ("--issuer", "https://ci.example.com", "--subject", "job")
    assert federation(env, quay, "add", ROBOT, *extra, *flags).returncode == 0
    listed = federation(env, quay, "show", ROBOT, "--json", *flags)
    assert len(json.loads(listed.stdout)) == 2
    assert federation(env, quay, "remove", ROBOT, *extra, *flags).returncode == 0
    assert quay.get_federation(ROBOT) == [{"issuer": oidc_provider.issuer, "subject": "jdoe"}]
    replaced = federation(env, quay, "set", ROBOT, *extra, *flags)
    assert replaced.returncode == 0
    assert quay.get_federation(ROBOT) == [{"issuer": "https://ci.example.com", "subject": "job"}]
    assert federation(env, quay, "remove", ROBOT, "--all", *flags).returncode == 0
    assert quay.get_federation(ROBOT) == []


def test_federation_errors_are_one_actionable_line(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot(ROBOT)
    quay.add_admin_token("other-org-token", ["another_org"])
    flags = ("--quay-url", str(quay.url), "--ca-bundle", str(oidc_provider.ca_cert))
    unauthorised = federation(env, quay, "show", ROBOT, *flags)
    assert unauthorised.returncode == 1
    assert "HTTP 401" in unauthorised.stderr and "org:admin" in unauthorised.stderr
    forbidden = federation(
        {**env, "QUAY_OAUTH_TOKEN": "other-org-token"}, quay, "show", ROBOT, *flags
    )
    assert forbidden.returncode == 1 and "HTTP 403" in forbidden.stderr
    missing = federation({**env, "QUAY_OAUTH_TOKEN": ""}, quay, "show", ROBOT, *flags)
    assert missing.returncode != 0 and "QUAY_OAUTH_TOKEN" in missing.stderr
    bad = federation(env, quay, "set", ROBOT, "--issuer", "https://x", *flags)
    assert bad.returncode != 0 and "pairs" in bad.stderr
    for result in (unauthorised, forbidden, missing, bad):
        assert len(result.stderr.strip().splitlines()) == 1
        assert ADMIN_TOKEN not in result.stderr


def test_federation_user_form(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    quay.add_robot("jdoe+bot")
    quay.add_admin_token("user-token", [], username="jdoe")
    flags = ("--quay-url", str(quay.url), "--ca-bundle", str(oidc_provider.ca_cert), "--user")
    user_env = {**env, "QUAY_OAUTH_TOKEN": "user-token"}
    pair = ("--issuer", "https://ci.example.com", "--subject", "job")
    added = federation(user_env, quay, "add", "jdoe+bot", *pair, *flags)
    assert added.returncode == 0, added
    assert quay.get_federation("jdoe+bot") == [
        {"issuer": "https://ci.example.com", "subject": "job"}
    ]


# -- entries carry more than issuer and subject (Quay 3.18's audiences) ------------------------
AUDIENCED: dict[str, Any] = {
    "issuer": "https://sso.example.com/realms/quay",
    "subject": "ci-runner",
    "audiences": ["quay.example.com"],
}
CI_PAIR = ("--issuer", "https://ci.example.com", "--subject", "job")


@pytest.fixture
def audience_quay(test_pki: TestPKI) -> Iterator[QuayEmulator]:
    """A Quay whose federation API stores the audiences a POST sends."""
    emulator = QuayEmulator(ca_bundle=test_pki.ca_cert, posted_entry_keys=("audiences",))
    emulator.add_admin_token(ADMIN_TOKEN, ["quay_federation"])
    emulator.add_robot(ROBOT, federation=[AUDIENCED])
    with emulator.start(pki=test_pki):
        yield emulator


def test_federation_add_and_remove_keep_the_fields_of_other_entries(
    audience_quay: QuayEmulator, test_pki: TestPKI, env: dict[str, str]
) -> None:
    flags = ("--quay-url", str(audience_quay.url), "--ca-bundle", str(test_pki.ca_cert))

    added = federation(env, audience_quay, "add", ROBOT, *CI_PAIR, *flags)

    assert added.returncode == 0, added
    ci_entry = {"issuer": "https://ci.example.com", "subject": "job"}
    assert audience_quay.get_federation(ROBOT) == [AUDIENCED, ci_entry]
    assert "audiences=quay.example.com" in added.stdout
    removed = federation(env, audience_quay, "remove", ROBOT, *CI_PAIR, *flags)
    assert removed.returncode == 0, removed
    assert audience_quay.get_federation(ROBOT) == [AUDIENCED]


class RacingWriter:
    """Wraps the emulator: right after each federation write, another admin writes too."""

    def __init__(self, quay: QuayEmulator, theirs: list[dict[str, Any]]) -> None:
        self.quay = quay
        self.theirs = theirs

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        answer: list[bytes] = self.quay(environ, start_response)
        if environ["REQUEST_METHOD"] in ("POST", "DELETE"):
            self.quay.set_federation(ROBOT, self.theirs)
        return answer


@pytest.mark.parametrize("action", [("add", *CI_PAIR), ("remove", "--all")])
def test_federation_reports_a_write_that_raced_another(
    audience_quay: QuayEmulator, test_pki: TestPKI, env: dict[str, str], action: tuple[str, ...]
) -> None:
    theirs: list[dict[str, Any]] = [
        AUDIENCED,
        {"issuer": "https://other.example.com", "subject": "theirs"},
    ]
    with serve_wsgi(RacingWriter(audience_quay, theirs), pki=test_pki) as racing:
        flags = ("--quay-url", racing.url, "--ca-bundle", str(test_pki.ca_cert))
        result = federation(env, audience_quay, action[0], ROBOT, *action[1:], *flags)

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"the federation list of {ROBOT} changed while this command wrote it" in line
    assert f"'federation show {ROBOT}'" in line


def test_federation_add_from_config_names_the_audience_the_source_s_jwts_carry(
    audience_quay: QuayEmulator,
    quay: QuayEmulator,
    oidc_provider: OIDCProvider,
    test_pki: TestPKI,
    env: dict[str, str],
) -> None:
    """The configured source's id_token names the client as its aud: so does the entry."""
    flags = ("--quay-url", str(audience_quay.url), "--ca-bundle", str(test_pki.ca_cert))
    added = federation(env, audience_quay, "add", ROBOT, "--from-config", quay.host, *flags)
    assert added.returncode == 0, added
    audience = oidc_provider.public_client
    minted = {"issuer": oidc_provider.issuer, "subject": "jdoe", "audiences": [audience]}
    assert audience_quay.get_federation(ROBOT) == [AUDIENCED, minted]
    explicit = ("--audience", "b.example", "--audience", "a.example", "--audience", "b.example")
    assert federation(env, audience_quay, "add", ROBOT, *CI_PAIR, *explicit, *flags).returncode == 0
    assert audience_quay.get_federation(ROBOT)[-1] == {
        "issuer": "https://ci.example.com",
        "subject": "job",
        "audiences": ["a.example", "b.example"],
    }


def test_federation_add_fails_when_quay_strips_the_audiences_of_existing_entries(
    test_pki: TestPKI, env: dict[str, str]
) -> None:
    """A Quay whose POST drops audiences: an audience-restricted entry written back became
    unrestricted, and the command said nothing and exited 0."""
    dropping = QuayEmulator(ca_bundle=test_pki.ca_cert)  # quay/quay's API: issuer, subject only
    dropping.add_admin_token(ADMIN_TOKEN, ["quay_federation"])
    dropping.add_robot(ROBOT, federation=[AUDIENCED])  # restricted in Quay's own UI
    with dropping.start(pki=test_pki):
        flags = ("--quay-url", str(dropping.url), "--ca-bundle", str(test_pki.ca_cert))
        added = federation(env, dropping, "add", ROBOT, *CI_PAIR, *flags)
    assert added.returncode == 1 and added.stdout == ""
    [line] = added.stderr.splitlines()
    assert "Quay dropped the audiences quay.example.com of https://sso.example.com" in line
    assert "now accept a JWT for any audience" in line


class WriterBetween:
    """Wraps the emulator: right after our first read, another admin writes the list."""

    def __init__(self, quay: QuayEmulator, theirs: list[dict[str, Any]]) -> None:
        self.quay = quay
        self.theirs = theirs
        self.reads = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        answer: list[bytes] = self.quay(environ, start_response)
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].startswith("/api/"):
            self.reads += 1
            if self.reads == 1:
                self.quay.set_federation(ROBOT, self.theirs)
        return answer


@pytest.mark.parametrize("action", [("add", *CI_PAIR), ("remove", *CI_PAIR)])
def test_federation_writes_nothing_over_a_change_made_since_it_read(
    audience_quay: QuayEmulator, test_pki: TestPKI, env: dict[str, str], action: tuple[str, ...]
) -> None:
    """A write landing between our GET and our POST disappeared silently."""
    ci_entry = {"issuer": "https://ci.example.com", "subject": "job"}
    audience_quay.set_federation(ROBOT, [AUDIENCED, ci_entry])
    theirs = [AUDIENCED, ci_entry, {"issuer": "https://other.example.com", "subject": "theirs"}]
    if action[0] == "add":
        audience_quay.set_federation(ROBOT, [AUDIENCED])
        theirs = [AUDIENCED, {"issuer": "https://other.example.com", "subject": "theirs"}]
    with serve_wsgi(WriterBetween(audience_quay, theirs), pki=test_pki) as racing:
        flags = ("--quay-url", racing.url, "--ca-bundle", str(test_pki.ca_cert))
        result = federation(env, audience_quay, action[0], ROBOT, *action[1:], *flags)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "changed since this command read it" in line and "nothing was written" in line
    assert audience_quay.get_federation(ROBOT) == theirs


def test_doctor_warns_about_a_federation_entry_without_audiences(
    quay: QuayEmulator, oidc_provider: OIDCProvider, env: dict[str, str]
) -> None:
    """Quay deprecates entries without audiences: doctor reads the entry with the admin token
    and says which command writes the audience the configured source's JWTs carry."""
    quay.add_admin_token(ADMIN_TOKEN, ["quay_federation"])
    quay.add_robot(ROBOT, federation=[(oidc_provider.issuer, "jdoe")])
    steps = steps_of(doctor({**env, "QUAY_OAUTH_TOKEN": ADMIN_TOKEN}, quay.host, "--json"))
    entry = steps["federation entry"]
    assert entry["verdict"] == "warn" and "lists no audiences" in entry["detail"]
    assert f"federation add {ROBOT} --from-config {quay.host} writes" in entry["detail"]
    assert steps["Quay exchange"]["verdict"] == "ok"

    audience = oidc_provider.public_client
    restricted = {"issuer": oidc_provider.issuer, "subject": "jdoe", "audiences": [audience]}
    quay.set_federation(ROBOT, [restricted])
    steps = steps_of(doctor({**env, "QUAY_OAUTH_TOKEN": ADMIN_TOKEN}, quay.host, "--json"))
    assert steps["federation entry"]["verdict"] == "ok"
    assert f"accepts audiences {audience}" in steps["federation entry"]["detail"]

    without = steps_of(doctor({**env, "QUAY_OAUTH_TOKEN": ""}, quay.host, "--json"))
    assert without["federation entry"]["verdict"] == "skip"


def test_federation_add_with_an_audience_restricts_an_entry_already_there(
    audience_quay: QuayEmulator, test_pki: TestPKI, env: dict[str, str]
) -> None:
    flags = ("--quay-url", str(audience_quay.url), "--ca-bundle", str(test_pki.ca_cert))
    pair = ("--issuer", str(AUDIENCED["issuer"]), "--subject", str(AUDIENCED["subject"]))
    added = federation(env, audience_quay, "add", ROBOT, *pair, "--audience", "q2", *flags)
    assert added.returncode == 0, added
    assert audience_quay.get_federation(ROBOT) == [{**AUDIENCED, "audiences": ["q2"]}]
