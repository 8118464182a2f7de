"""Does the isolation state machine find what it claims? Apply each known crossover bug (a
mutant) to a scratch copy of the repository and run only ``tests/test_isolation.py`` against it.

Each mutant is a list of exact (file, old text, new text) replacements in the package; a snippet
that no longer occurs exactly once stops the run (the code moved on: update the mutant). The
scratch copy has a virtual environment of its own whose installed executables load the mutated
package (the launcher's cache hit included), with the dependencies of the interpreter running
this script. The unmutated copy runs first and must pass.

For each mutant the table says whether the state machine failed, which rule and check failed,
after how many examples (the failing one included) and seconds; it goes into
``docs/reliability.md`` as a section of its own (``docs/reliability.py`` writes the others).

    python docs/mutation.py                   # every mutant, the CI example count, once
    python docs/mutation.py --runs 3          # three runs in a row: every one must kill
    python docs/mutation.py --only key-without-sub --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "docker_credential_quayfed"
DEFAULT_OUT = ROOT / "docs" / "reliability.md"
TEST = "tests/test_isolation.py"
#: the examples CI runs (the test's own default)
CI_EXAMPLES = 300
HEADING = "## Mutation (`docs/mutation.py`)"
#: the section goes before this one, when the page has no mutation section yet
BEFORE = "## Secrets in output"
#: a run of the state machine never takes longer than this (a hang is a failure of its own)
RUN_TIMEOUT = 1800


@dataclass(frozen=True)
class Mutant:
    """A crossover bug: ``replacements`` are (file under the package, old text, new text)."""

    name: str
    bug: str
    replacements: tuple[tuple[str, str, str], ...]
    #: why the state machine may not see it, when known (shown when it survives)
    note: str = ""


MUTANTS = (
    Mutant(
        "key-without-sub",
        "the cache key leaves out the principal's sub",
        (
            (
                "fastpath.py",
                "    parts = (registry, robot, quay_url, kind, issuer, subject, audience)\n",
                "    parts = (registry, robot, quay_url, kind, issuer, audience)\n",
            ),
        ),
    ),
    Mutant(
        "key-without-iss",
        "the cache key leaves out the principal's iss",
        (
            (
                "fastpath.py",
                "    parts = (registry, robot, quay_url, kind, issuer, subject, audience)\n",
                "    parts = (registry, robot, quay_url, kind, subject, audience)\n",
            ),
        ),
    ),
    Mutant(
        "override-wrong-table",
        "a host override is checked against the target host's table, not the image's",
        (
            (
                "kubelet.py",
                "    if override not in own.allow_override_to:\n",
                "    target = settings.kubelet.get(override)\n"
                '    if own.key not in getattr(target, "allow_override_to", ()):\n',
            ),
        ),
    ),
    Mutant(
        "logout-leaves-siblings",
        "logout erases the robot tokens of its own registry only, not of those sharing the login",
        (
            (
                "commands/login.py",
                "    return sum(cache.erase(other.key) for other in sharing)\n",
                "    return cache.erase(sharing[0].key)\n",
            ),
        ),
    ),
    Mutant(
        "fastpath-ignores-jwt-expiry",
        "the fast path serves a token file's robot token after the JWT in the file expired",
        (
            (
                "fastpath.py",
                "    if principal is None or expires is None or expires - now <= DEFAULT_SKEW:\n",
                "    if principal is None:\n",
            ),
        ),
    ),
    Mutant(
        "kubelet-key-namespace",
        "a pod's cache key is cut to its namespace (system:serviceaccount:NS)",
        (
            (
                "broker.py",
                "        carried_jwt = oidc_token\n",
                "        carried_jwt = oidc_token\n"
                "        principal = identity.Principal(\n"
                "            principal.kind,\n"
                "            principal.issuer,\n"
                '            principal.subject.rpartition(":")[0],\n'
                "            principal.audience,\n"
                "        )\n",
            ),
        ),
    ),
    Mutant(
        "allow-list-prefix",
        "the node's robots globs also match by prefix (org+alpha lets in org+alphax)",
        (
            (
                "config.py",
                "any(fnmatch.fnmatchcase(robot, p) for p in self.robots)",
                "any(fnmatch.fnmatchcase(robot, p) or robot.startswith(p) for p in self.robots)",
            ),
        ),
    ),
    Mutant(
        "stale-serve-across-identities",
        "when Quay or the issuer fails, another identity's still-valid token for the registry "
        "and robot is served",
        (
            (
                "broker.py",
                '                    return serve_fallback(f"refreshing the robot token failed '
                '({exc.message})")\n'
                "                raise\n",
                '                    return serve_fallback(f"refreshing the robot token failed '
                '({exc.message})")\n'
                "                if isinstance(exc, (NetworkError, IssuerError)):\n"
                "                    from docker_credential_quayfed import fastpath\n"
                "                    from docker_credential_quayfed.cache import decode_token\n"
                "\n"
                '                    pattern = f"{fastpath.key_file_prefix(host)}*.token"\n'
                "                    for path in sorted(cache.directory.glob(pattern)):\n"
                "                        other = decode_token(path.read_text(), host)\n"
                "                        if other is not None and other.robot == registry.robot:\n"
                "                            if other.valid(clock(), SKEW):\n"
                "                                return Outcome(other, STALE)\n"
                "                raise\n",
            ),
        ),
    ),
    Mutant(
        "tilde-read-twice",
        "token_file = '~/...' is kept as written: the fast path opens ./~/... of the working "
        "directory while the source reads $HOME/...",
        (
            (
                "config.py",
                "        if values.get(name):\n"
                "            values[name] = paths.resolve_path(values[name], str(path.parent))\n",
                '        if values.get(name) and name != "token_file":\n'
                "            values[name] = paths.resolve_path(values[name], str(path.parent))\n",
            ),
            (
                "fastpath.py",
                '    if not path.startswith("/"):\n'
                "        return None  # written by an older version, unresolved: the full path "
                "decides\n",
                "",
            ),
        ),
    ),
    Mutant(
        "logout-races-refresh",
        "logout takes no locks, and a mint does not check that its login still stands before "
        "keeping the token",
        (
            (
                "commands/login.py",
                "    revoked = False\n"
                "    with _holding_the_login(request, sharing, registry.timeout):\n",
                "    revoked = False\n    with contextlib.nullcontext():\n",
            ),
            ("broker.py", "    _check_still_theirs(registry, request, credential)\n", ""),
        ),
    ),
    Mutant(
        "login-by-preferred-username",
        "a login's person is its preferred_username, not its iss and sub, and a login keeps "
        "what the previous person's login minted (the finding as it was)",
        (
            (
                "logins.py",
                "        person = (issuer, subject, "
                'username if isinstance(username, str) else "")\n',
                "        shown = username if isinstance(username, str) and username else subject\n"
                '        person = (issuer, shown, username if isinstance(username, str) else "")\n',
            ),
            (
                "commands/login.py",
                "        # What an earlier login minted (whoever it named) must not outlive it.\n"
                "        _forget_what_the_login_minted(request, sharing)\n",
                "",
            ),
        ),
    ),
    Mutant(
        "robot-lifetime-unbounded",
        "a robot token's claimed life is believed however long (no MAX_ROBOT_TOKEN_LIFETIME)",
        (
            (
                "cache.py",
                "    if expires_at - issued_at > fastpath.MAX_ROBOT_TOKEN_LIFETIME:\n"
                "        # Quay's tokens live an hour",
                "    if False:\n        # Quay's tokens live an hour",
            ),
        ),
    ),
)
BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


class SnippetMissing(SystemExit):
    """A mutant's old text does not occur exactly once: the code changed under it."""


def apply(package: Path, mutant: Mutant) -> None:
    """Apply ``mutant`` to the package at ``package`` (a scratch copy); loud when it cannot."""
    for name, old, new in mutant.replacements:
        path = package / name
        text = path.read_text()
        found = text.count(old)
        if found != 1:
            raise SnippetMissing(
                f"mutant {mutant.name}: the text to replace occurs {found} times in "
                f"{PACKAGE}/{name} (it must occur once):\n{old}"
            )
        path.write_text(text.replace(old, new))


@dataclass
class Outcome:
    """One run of the state machine: killed (it failed) or not, and where."""

    mutant: str
    killed: bool
    examples: int
    seconds: float
    rule: str = ""
    check: str = ""
    detail: str = field(default="", repr=False)


def project_files() -> list[str]:
    """The files of the working tree git would commit (tracked, and new ones not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


class Scratch:
    """A copy of the repository and a virtual environment whose package is that copy's."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.repo = directory / "repo"
        self.venv = directory / "venv"
        for name in project_files():
            target = self.repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
        self.pristine = directory / "pristine"
        shutil.copytree(self.repo / PACKAGE, self.pristine)
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(self.venv)],
            check=True,
        )
        self.python = self.venv / "bin" / "python3"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.site = Path(purelib)
        # The dependencies: those of the interpreter running this script, after our own.
        (self.site / "quayfed-mutation-deps.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
        )
        here = Path(sys.executable).parent
        for script in ("docker-credential-quayfed", "quay-credential-provider"):
            if (here / script).exists():
                shutil.copy2(here / script, self.venv / "bin" / script)

    def reset(self, mutant: Mutant | None) -> None:
        """The package as it is in the working tree, then ``mutant`` applied (None: none),
        in the copy and in the environment's site-packages alike."""
        package = self.repo / PACKAGE
        shutil.rmtree(package)
        shutil.copytree(self.pristine, package)
        if mutant is not None:
            apply(package, mutant)
        installed = self.site / PACKAGE
        shutil.rmtree(installed, ignore_errors=True)
        shutil.copytree(package, installed, ignore=shutil.ignore_patterns("__pycache__"))

    def run(self, name: str, examples: int) -> Outcome:
        records = self.directory / f"records-{name}"
        shutil.rmtree(records, ignore_errors=True)
        records.mkdir()
        env = {
            **os.environ,
            "QUAYFED_ISOLATION_EXAMPLES": str(examples),
            "QUAYFED_ISOLATION_SHRINK": "0",
            "QUAYFED_RELIABILITY_OUT": str(records),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.pop("QUAYFED_ISOLATION_RANDOM", None)
        command = [str(self.python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", TEST]
        started = time.monotonic()
        try:
            ran = subprocess.run(
                command,
                cwd=self.repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
            output, code = ran.stdout + ran.stderr, ran.returncode
        except subprocess.TimeoutExpired as exc:
            output, code = f"timed out after {RUN_TIMEOUT}s: {exc}", -1
        seconds = round(time.monotonic() - started, 1)
        figures = _last_record(records / "isolation.jsonl")
        outcome = Outcome(name, code != 0, figures.get("examples", 0), seconds)
        if code != 0:
            outcome.rule, outcome.check = failed_where(output)
            outcome.detail = output[-4000:]
        return outcome


def _last_record(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    if not lines:
        return {}
    record = json.loads(lines[-1])
    return {name: value for name, value in record.items() if isinstance(value, int)}


_STEP = re.compile(r"^\s*(?:E\s+)?(?:\|\s*)?state\.(\w+)\(")
_CHECK = re.compile(r"^\s*(?:E\s+)?(?:\|\s*)?(AssertionError|\w+Error): (.*)$")


#: the state machine's invariant: it checks every answer after each step
INVARIANT = "served_only_to_whom_quay_issued"


def failed_where(output: str) -> tuple[str, str]:
    """The falsifying example's last rule (and whether the invariant after it failed) and the
    first line of the failed check."""
    rule = check = ""
    for line in output.splitlines():
        step = _STEP.match(line)
        if step and step.group(1) not in ("teardown", INVARIANT):
            rule = step.group(1)
        elif step and step.group(1) == INVARIANT and rule:
            rule = rule.split(" ")[0] + f" (then {INVARIANT})"
        found = _CHECK.match(line)
        if found and not check:
            check = found.group(2).strip()
    if not check:
        check = output.strip().splitlines()[-1] if output.strip() else "no output"
    return rule or "-", check


# -- the page ----------------------------------------------------------------------------------
def _cell(text: str, limit: int = 110) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def section(runs: list[list[Outcome]], baseline: list[Outcome], examples: int) -> list[str]:
    """The mutation section of the reliability page: one row per mutant and run."""
    lines = [
        HEADING,
        "",
        f"Each known crossover bug applied alone to a scratch copy, then only "
        f"`{TEST}` run against it ({examples} examples, derandomized, the CI count; "
        f"no shrinking, so the figures are where the failure was first met). "
        f"The unmutated copy: "
        + ", ".join(
            f"{'passed' if not outcome.killed else 'FAILED'} ({outcome.examples} examples, "
            f"{outcome.seconds} s)"
            for outcome in baseline
        )
        + ". Rerun: `python docs/mutation.py --runs 3`.",
        "",
        "| mutant | the bug | run | killed | examples | seconds | failing rule | failed check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, outcomes in enumerate(runs, 1):
        for outcome in outcomes:
            mutant = BY_NAME[outcome.mutant]
            lines.append(
                f"| `{mutant.name}` | {_cell(mutant.bug, 200)} | {n} | "
                f"{'yes' if outcome.killed else '**no**'} | {outcome.examples} | "
                f"{outcome.seconds} | {outcome.rule or '-'} | {_cell(outcome.check or '-')} |"
            )
    survivors = sorted({o.mutant for outcomes in runs for o in outcomes if not o.killed})
    lines += [
        "",
        "Every mutant was killed on every run."
        if not survivors
        else "Survived at least once: " + ", ".join(f"`{name}`" for name in survivors) + ".",
    ]
    lines += [f"`{name}`: {BY_NAME[name].note}." for name in survivors if BY_NAME[name].note]
    return [*lines, ""]


def splice(page: str, lines: list[str]) -> str:
    """``page`` with its mutation section replaced by ``lines`` (or inserted before BEFORE);
    every other section is left as it is."""
    old = page.splitlines()
    start = next((n for n, line in enumerate(old) if line.startswith(HEADING)), None)
    if start is None:
        at = next((n for n, line in enumerate(old) if line.startswith(BEFORE)), len(old))
        new = [*old[:at], *lines, *old[at:]]
    else:
        end = next((n for n in range(start + 1, len(old)) if old[n].startswith("## ")), len(old))
        new = [*old[:start], *lines, *old[end:]]
    return "\n".join(new).rstrip() + "\n"


# -- running ------------------------------------------------------------------------------------
def run_all(names: Sequence[str], examples: int, runs: int, jobs: int) -> tuple[
    list[list[Outcome]], list[Outcome]
]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="quayfed-mutation-") as temp:
        scratches = [Scratch(Path(temp) / f"worker-{n}") for n in range(jobs)]
        for scratch in scratches:  # every snippet applies, before anything runs
            for name in names:
                scratch.reset(BY_NAME[name])
        scratches[0].reset(None)
        baseline = [scratches[0].run("unmutated", examples)]
        report(baseline[0])
        if baseline[0].killed:
            print(baseline[0].detail, file=sys.stderr)
            raise SystemExit("the unmutated copy fails the state machine: fix that first")
        all_runs: list[list[Outcome]] = []
        for _ in range(runs):
            pending = list(names)
            outcomes: dict[str, Outcome] = {}
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in [
                    pool.submit(_work, scratch, pending, outcomes, examples)
                    for scratch in scratches
                ]:
                    future.result()
            all_runs.append([outcomes[name] for name in names])
        return all_runs, baseline


def _work(
    scratch: Scratch, pending: list[str], outcomes: dict[str, Outcome], examples: int
) -> None:
    """Run the mutants left in ``pending`` one after another in ``scratch``."""
    while pending:
        name = pending.pop(0)
        scratch.reset(BY_NAME[name])
        outcomes[name] = scratch.run(name, examples)
        report(outcomes[name])


def report(outcome: Outcome) -> None:
    if outcome.mutant == "unmutated":
        said = "FAILED" if outcome.killed else "passed"
    else:
        said = "killed" if outcome.killed else "SURVIVED"
    where = f" by {outcome.rule}: {_cell(outcome.check, 160)}" if outcome.killed else ""
    print(
        f"{outcome.mutant}: {said} after {outcome.examples} examples, {outcome.seconds}s{where}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), default=[])
    parser.add_argument("--examples", type=int, default=CI_EXAMPLES)
    parser.add_argument("--runs", type=int, default=1, help="runs in a row (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-write", action="store_true", help="leave the page as it is")
    args = parser.parse_args(argv)
    names = args.only or [mutant.name for mutant in MUTANTS]
    runs, baseline = run_all(names, args.examples, args.runs, max(1, args.jobs))
    if not args.no_write:
        text = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(splice(text, section(runs, baseline, args.examples)))
        print(f"wrote {args.out}", file=sys.stderr)
    survived = [o.mutant for outcomes in runs for o in outcomes if not o.killed]
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
