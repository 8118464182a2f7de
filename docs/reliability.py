"""Run the reliability suites and write ``docs/reliability.md`` from what they record.

    python docs/reliability.py [--out docs/reliability.md] [--records DIR] [--only SUITE ...]

Without ``--records`` a temporary directory becomes ``$QUAYFED_RELIABILITY_OUT`` and pytest runs
``tests/test_faults.py`` (every fault x target x state), ``tests/test_fuzz.py`` (10000 examples
per target), ``tests/test_races.py`` and ``tests/test_isolation.py`` (10000 examples); each
leaves JSON lines there (``tests/support/records``). A suite's variable set in the environment
(``QUAYFED_ISOLATION_EXAMPLES=2000``) takes the place of its default.
With ``--records DIR`` the page is written from the records already in DIR. With ``--only SUITE``
(repeatable) only those suites run, and the page keeps everything else it already says: their
rows of "What was run", their sections, their lines of the verdict and the leak recorder's rows
for the new pytest sessions are put in place of (or beside) the old ones. Every figure on the
page comes from the records. The exit status is 1 when a recorded case broke its contract or a
suite failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests package, when run as a script from anywhere

from docker_credential_quayfed import __version__  # noqa: E402
from tests.support.hostile import FAULTS  # noqa: E402
from tests.support.records import OUT_ENV, read, record  # noqa: E402
from tests.test_faults import MEMORY_CEILING_MIB, STATES, TARGETS, TIMEOUT  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "reliability.md"


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    env: dict[str, str]


SUITES = (
    Suite("faults", "tests/test_faults.py", {"QUAYFED_FAULTS_FULL": "1"}),
    Suite("fuzz", "tests/test_fuzz.py", {"QUAYFED_FUZZ_EXAMPLES": "10000"}),
    Suite("races", "tests/test_races.py", {}),
    Suite(
        "isolation",
        "tests/test_isolation.py",
        {"QUAYFED_ISOLATION_EXAMPLES": "10000", "QUAYFED_ISOLATION_RANDOM": "0"},
    ),
)


def run_suites(records: Path, names: Sequence[str] = ()) -> None:
    """Run each suite that exists (those named, if any), recording command, status, duration."""
    for suite in SUITES:
        if names and suite.name not in names:
            continue
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite.path]
        # a suite's settings are defaults: the same variable in the environment wins
        chosen = {name: os.environ.get(name, value) for name, value in suite.env.items()}
        shown = " ".join([*(f"{k}={v}" for k, v in chosen.items()), "python -m pytest -q"])
        shown += f" {suite.path}"
        if not (ROOT / suite.path).exists():
            record("runs", suite=suite.name, command=shown, exit_code=None, seconds=None)
            continue
        print(f"running {shown}", file=sys.stderr, flush=True)
        env = {**os.environ, **chosen, OUT_ENV: str(records)}
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        record(
            "runs",
            suite=suite.name,
            command=shown,
            exit_code=done.returncode,
            seconds=round(time.monotonic() - started, 1),
        )


# -- judging the records -------------------------------------------------------------------
def fault_violations(row: dict[str, Any]) -> list[str]:
    """What the test found wrong with a case; judged again from the figures if not recorded."""
    if "violations" in row:
        return [str(v) for v in row["violations"]]
    found = []
    if row.get("outcome") != row.get("expected", row.get("outcome")):
        found.append(f"answered {row.get('outcome')}")
    if row.get("traceback"):
        found.append("a traceback")
    if row.get("secret_hits"):
        found.append(f"{row['secret_hits']} secrets in the output")
    if row.get("limit") is not None and (row.get("seconds") or 0) > row["limit"]:
        found.append(f"took {row['seconds']}s")
    if (row.get("maxrss_mib") or 0) > MEMORY_CEILING_MIB:
        found.append(f"peak RSS {row['maxrss_mib']} MiB")
    return found


def broken(records: Path) -> list[str]:
    """One line per recorded breach of a contract, and per suite that failed."""
    lines = []
    for row in read(records, "faults"):
        problems = fault_violations(row)
        if problems:
            where = f"{row['fault']} on {row['target']}, {row['state']}"
            lines.append(f"faults: {where}: {'; '.join(problems)}")
    for row in read(records, "fuzz"):
        if row.get("failures"):
            lines.append(f"fuzz: {row.get('target')}: {row['failures']} failures")
    for row in read(records, "races"):
        if row.get("corrupt_reads") or row.get("stuck_locks"):
            lines.append(
                f"races: {row.get('corrupt_reads')} corrupt reads, "
                f"{row.get('stuck_locks')} stuck locks"
            )
    for row in read(records, "isolation"):
        if row.get("failures"):
            lines.append(f"isolation: {row['failures']} answers to an identity Quay would refuse")
    for row in read(records, "leaks"):
        if row.get("hits"):
            lines.append(f"leaks: {row['hits']} secrets found in output")
    for row in read(records, "runs"):
        if row.get("exit_code") not in (0, None):
            lines.append(f"{row['suite']}: pytest exited with status {row['exit_code']}")
    return lines


# -- the page ------------------------------------------------------------------------------
def matrix_order(row: dict[str, Any]) -> tuple[int, int, int]:
    """The order of the fault table, then issuer, quay, both, then cold, cold-error, warm."""

    def position(value: object, order: Sequence[str]) -> int:
        return order.index(str(value)) if value in order else len(order)

    return (
        position(row.get("fault"), list(FAULTS)),
        position(row.get("target"), TARGETS),
        position(row.get("state"), STATES),
    )


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run_failed(kind: str, runs: list[dict[str, Any]]) -> list[str]:
    """A note when the suite's pytest run failed: a failing test may leave no record."""
    ran = [row for row in runs if row.get("suite") == kind]
    if not ran or ran[-1].get("exit_code") in (0, None):
        return []
    return [
        "",
        f"pytest exited with status {ran[-1]['exit_code']}: tests failed, and a failing test may "
        "have left no record here; its output names them.",
    ]


def not_run(kind: str, runs: list[dict[str, Any]]) -> str:
    ran = [row for row in runs if row.get("suite") == kind]
    if ran and ran[-1].get("exit_code") is None:
        return f"Not run: `{ran[-1]['command'].split()[-1]}` does not exist yet."
    return "Not run: no records of this kind."


def runs_section(records: Path, runs: list[dict[str, Any]], rerun: str) -> list[str]:
    lines = ["## What was run", ""]
    if runs:
        lines += table(
            ("suite", "command", "exit status", "seconds"),
            (
                (
                    row["suite"],
                    f"`{row['command']}`",
                    "not run (file absent)" if row["exit_code"] is None else row["exit_code"],
                    "-" if row["seconds"] is None else row["seconds"],
                )
                for row in runs
            ),
        )
    else:
        lines.append(f"The records in `{records}`; no runs were recorded with them.")
    lines += [
        "",
        f"docker-credential-quayfed {__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        "Rerun everything and rewrite this page:",
        "",
        "```sh",
        rerun,
        "```",
        "",
    ]
    return lines


def faults_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Hostile servers (`tests/test_faults.py`)", ""]
    if not rows:
        return [*lines, "Not run: no records of this kind.", ""]
    lines += [
        "The installed helper runs `get` as clients do, with `timeout = "
        f"{TIMEOUT}`, against a server (`tests/support/hostile.py`) that plays the OIDC issuer "
        "and Quay and misbehaves on the issuer's side, on Quay's side, or on both. States: "
        '`cold` (nothing cached, `on_failure = "anonymous"`), `cold-error` (nothing cached, '
        '`on_failure = "error"`), `warm` (a valid robot token cached inside its refresh '
        "margin). The contract: warm serves the cached token; cold answers `credentials not "
        "found in native keychain` with one line on stderr; cold-error answers one line; a "
        "robot token still good for Quay is served; within the timeout + 1 s plus the helper's "
        f"own start-up; no traceback; no secret in the output; peak RSS under "
        f"{MEMORY_CEILING_MIB:.0f} MiB.",
        "",
    ]
    rows = sorted(rows, key=matrix_order)
    kept = [row for row in rows if not fault_violations(row)]
    by_fault: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_fault.setdefault(row["fault"], []).append(row)
    survived = [f for f, group in by_fault.items() if all(not fault_violations(r) for r in group)]
    rss = [row["maxrss_mib"] for row in rows if row.get("maxrss_mib") is not None]
    lines += table(
        ("total", "figure"),
        (
            ("cases run", len(rows)),
            ("cases that kept the contract", len(kept)),
            ("faults survived (every target and state)", f"{len(survived)} of {len(by_fault)}"),
            ("longest answer", f"{max(row['seconds'] for row in rows):.2f} s"),
            ("time limit (timeout + 1 s + start-up)", f"{max(r['limit'] for r in rows):.2f} s"),
            ("memory ceiling (peak RSS of one helper)", f"{max(rss):.1f} MiB" if rss else "-"),
            ("tracebacks", sum(1 for row in rows if row.get("traceback"))),
            ("secret hits", sum(int(row.get("secret_hits") or 0) for row in rows)),
        ),
    )
    lines += ["", "### Each fault", ""]
    lines += table(
        ("fault", "what the server does", "cases", "kept", "longest answer s", "peak RSS MiB"),
        (
            (
                f"`{fault}`",
                FAULTS.get(fault, ""),
                len(group),
                sum(1 for row in group if not fault_violations(row)),
                seconds(max(row["seconds"] for row in group)),
                mib(max((r["maxrss_mib"] for r in group if r.get("maxrss_mib")), default=None)),
            )
            for fault, group in by_fault.items()
        ),
    )
    lines += ["", "### The matrix", ""]
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["fault"], row["target"], row["state"]), []).append(row)
    lines += table(
        (
            "fault",
            "target",
            "state",
            "outcome",
            "longest s",
            "traceback",
            "secret hits",
            "contract",
        ),
        (
            (
                f"`{fault}`",
                target,
                state,
                ", ".join(sorted({str(r["outcome"]) for r in group})),
                seconds(max(r["seconds"] for r in group)),
                "yes" if any(r.get("traceback") for r in group) else "no",
                max(int(r.get("secret_hits") or 0) for r in group),
                "; ".join(sorted({v for r in group for v in fault_violations(r)})) or "kept",
            )
            for (fault, target, state), group in cells.items()
        ),
    )
    return [*lines, ""]


def fuzz_section(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Fuzzing (`tests/test_fuzz.py`)", ""]
    if not rows:
        return [*lines, not_run("fuzz", runs), ""]
    totals: dict[str, list[int]] = {}
    for row in rows:
        entry = totals.setdefault(str(row.get("target")), [0, 0])
        entry[0] += int(row.get("cases") or 0)
        entry[1] += int(row.get("failures") or 0)
    lines += table(
        ("target", "cases", "failures"),
        ((f"`{target}`", cases, failures) for target, (cases, failures) in totals.items()),
    )
    return [*lines, *run_failed("fuzz", runs), ""]


RACE_FIELDS = (
    "processes",
    "killed",
    "corrupt_reads",
    "stuck_locks",
    "exchanges",
    "refresh_windows",
)


def races_section(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Races (`tests/test_races.py`)", ""]
    if not rows:
        return [*lines, not_run("races", runs), ""]
    lines += table(
        ("run", *(name.replace("_", " ") for name in RACE_FIELDS)),
        [
            *((n, *(row.get(name, "-") for name in RACE_FIELDS)) for n, row in enumerate(rows, 1)),
            ("total", *(sum(int(row.get(name) or 0) for row in rows) for name in RACE_FIELDS)),
        ],
    )
    return [*lines, *run_failed("races", runs), ""]


#: the isolation record's fields and their column headings
ISOLATION_FIELDS = {
    "examples": "examples",
    "steps": "steps",
    "gets": "gets",
    "installed_runs": "installed runs",
    "kubelet_requests": "kubelet requests",
    "served_checked": "answers checked",
    "kubelet_past_filters": "kubelet requests past the filters",
    "logins": "logins",
    "logout_races": "logout races",
    "usernames_reused": "usernames given to another",
    "seconds": "seconds",
    "failures": "failures",
}


def isolation_section(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Isolation (`tests/test_isolation.py`)", ""]
    if not rows:
        return [*lines, not_run("isolation", runs), ""]
    lines += [
        "A hypothesis state machine runs the helper against nanoidp, a Keycloak-like realm (UUID "
        "subjects, device codes, refresh tokens), the Kubernetes-like issuer and two Quay "
        "emulators while token files (one under `~`, read while the working directory moves) "
        "and a variable change hands between CI jobs and service accounts, a second issuer "
        "reuses a job's sub, a password source names another person, people log in and out of "
        "registries sharing one login through the real commands (a logout while the "
        "refresh-ahead child mints, a username given to someone else who then logs in), Quay "
        "issues tokens inside their refresh-ahead window or claiming ten hours, Quay goes down "
        "and the issuer refuses, JWTs expire, erases run, the node's kubelet policy changes and "
        "pods ask with annotations, overrides, audiences and robot names beside the allowed "
        "patterns. After every step: each "
        "robot token served for an identity is one the Quay emulator issued for that robot to "
        "that identity's iss and sub, whose federation allows it, with a credential usable now "
        "and, for the kubelet, within the node's policy; where Quay would issue, an answer came. "
        "`gets` counts the protocol `get`s (`installed runs` of them through the installed "
        "launcher, on cache hits); `answers checked` the robot tokens served and checked.",
        "",
    ]
    lines += table(
        ("run", *ISOLATION_FIELDS.values()),
        ((n, *(row.get(name, "-") for name in ISOLATION_FIELDS)) for n, row in enumerate(rows, 1)),
    )
    return [*lines, *run_failed("isolation", runs), ""]


def leaks_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Secrets in output (the leak recorder)", ""]
    if not rows:
        return [*lines, "Not run: no records of this kind.", ""]
    lines += table(
        ("pytest session", "bytes checked", "secrets", "hits"),
        [
            *(
                (n, row.get("bytes_checked", "-"), row.get("secrets", "-"), row.get("hits", "-"))
                for n, row in enumerate(rows, 1)
            ),
            (
                "total",
                sum(int(row.get("bytes_checked") or 0) for row in rows),
                sum(int(row.get("secrets") or 0) for row in rows),
                sum(int(row.get("hits") or 0) for row in rows),
            ),
        ],
    )
    return [*lines, ""]


def page(records: Path, rerun: str) -> str:
    runs = read(records, "runs")
    problems = broken(records)
    lines = [
        "# Reliability",
        "",
        "Generated by `docs/reliability.py` from the records the suites below left behind; "
        "do not edit by hand.",
        "",
        *runs_section(records, runs, rerun),
        "## Verdict",
        "",
    ]
    if problems:
        plural = "es" if len(problems) != 1 else ""
        lines += [f"{len(problems)} breach{plural} of the contract:", ""]
        lines += [f"- {problem}" for problem in problems]
    else:
        lines.append("Every recorded case kept its contract.")
    lines.append("")
    lines += faults_section(read(records, "faults"))
    lines += fuzz_section(read(records, "fuzz"), runs)
    lines += races_section(read(records, "races"), runs)
    lines += isolation_section(read(records, "isolation"), runs)
    lines += leaks_section(read(records, "leaks"))
    return "\n".join(lines).rstrip() + "\n"


#: sections another script writes into the page (docs/mutation.py): a full run keeps them
FOREIGN_SECTIONS = ("## Mutation",)


def keep_foreign_sections(old_page: str, new_page: str) -> str:
    """``new_page`` with each FOREIGN_SECTIONS section of ``old_page`` put back, before the
    leak recorder's section (where the script that writes it puts it)."""
    old, new = old_page.splitlines(), new_page.splitlines()
    for heading in FOREIGN_SECTIONS:
        start = next((n for n, line in enumerate(old) if line.startswith(heading)), None)
        if start is None or any(line.startswith(heading) for line in new):
            continue
        end = next((n for n in range(start + 1, len(old)) if old[n].startswith("## ")), len(old))
        at = next((n for n, line in enumerate(new) if line.startswith("## Secrets")), len(new))
        new = [*new[:at], *old[start:end], *new[at:]]
    return "\n".join(new).rstrip() + "\n"


# -- one suite's figures into the page that holds the others --------------------------------
#: each suite's section heading (as its section function writes it)
HEADINGS = {
    "faults": "## Hostile servers",
    "fuzz": "## Fuzzing",
    "races": "## Races",
    "isolation": "## Isolation",
}
RUNS_HEADING, VERDICT_HEADING, LEAKS_HEADING = (
    "## What was run",
    "## Verdict",
    "## Secrets in output",
)
ALL_KEPT = "Every recorded case kept its contract."


def sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines before the first ``## `` heading, then each heading with its section's lines."""
    head: list[str] = []
    parts: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            parts.append((line, [line]))
        elif parts:
            parts[-1][1].append(line)
        else:
            head.append(line)
    return head, parts


def section(parts: list[tuple[str, list[str]]], prefix: str) -> list[str] | None:
    return next((lines for heading, lines in parts if heading.startswith(prefix)), None)


def table_rows(lines: Sequence[str]) -> list[list[str]]:
    """The body rows of the first Markdown table in ``lines``, as cells."""
    rows = [line for line in lines if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def replace_table(lines: list[str], header: Sequence[str], rows: list[list[str]]) -> list[str]:
    """``lines`` with its first table (or, without one, after its heading) holding ``rows``."""
    at = [n for n, line in enumerate(lines) if line.startswith("|")]
    start, end = (at[0], at[-1] + 1) if at else (2, 2)
    return [*lines[:start], *table(header, rows), *lines[end:]]


def _count(cell: str) -> int:
    """A table cell as a count ("-", a figure the record lacked, counts as none)."""
    return int(cell) if cell.isdigit() else 0


def splice(old: str, new: str, names: Sequence[str]) -> str:
    """``old`` with the figures of the suites ``names`` from ``new`` (a page of just those)."""
    head, parts = sections(old)
    _, new_parts = sections(new)
    order = [suite.name for suite in SUITES]
    result: list[tuple[str, list[str]]] = []
    for heading, lines in parts:
        if heading.startswith(RUNS_HEADING):
            kept = [row for row in table_rows(lines) if row[0] not in names]
            fresh = table_rows(section(new_parts, RUNS_HEADING) or [])
            rows = sorted(
                kept + fresh, key=lambda row: order.index(row[0]) if row[0] in order else 99
            )
            lines = replace_table(lines, ("suite", "command", "exit status", "seconds"), rows)
        elif heading.startswith(VERDICT_HEADING):
            ours = tuple(f"- {name}:" for name in names)
            breaches = [
                line for line in lines if line.startswith("- ") and not line.startswith(ours)
            ]
            new_verdict = section(new_parts, VERDICT_HEADING) or []
            breaches += [line for line in new_verdict if line.startswith("- ")]
            plural = "es" if len(breaches) != 1 else ""
            said = [f"{len(breaches)} breach{plural} of the contract:", "", *breaches]
            lines = [heading, "", *(said if breaches else [ALL_KEPT]), ""]
        elif heading.startswith(LEAKS_HEADING):
            rows = [row for row in table_rows(lines) if row[0] != "total"]
            fresh = table_rows(section(new_parts, LEAKS_HEADING) or [])
            rows += [row for row in fresh if row[0] != "total"]
            rows = [[str(n), *row[1:]] for n, row in enumerate(rows, 1)]
            total = ["total", *(str(sum(_count(row[i]) for row in rows)) for i in (1, 2, 3))]
            lines = replace_table(
                lines, ("pytest session", "bytes checked", "secrets", "hits"), [*rows, total]
            )
        else:
            for name in names:
                if heading.startswith(HEADINGS[name]):
                    lines = section(new_parts, HEADINGS[name]) or lines
        result.append((heading, lines))
    text = "\n".join([*head, *(line for _, lines in result for line in lines)])
    return text.rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--records", type=Path, help="write the page from the records in DIR")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=[suite.name for suite in SUITES],
        help="run just this suite (repeatable) and keep the rest of the page as it is",
    )
    args = parser.parse_args(argv)
    rerun = "python docs/reliability.py"
    if args.out.resolve() != DEFAULT_OUT:
        rerun += f" --out {shlex.quote(str(args.out))}"
    if args.records is not None:
        text = page(args.records, rerun)
        problems = broken(args.records)
    else:
        with tempfile.TemporaryDirectory(prefix="quayfed-reliability-") as temp:
            records = Path(temp)
            os.environ[OUT_ENV] = str(records)
            run_suites(records, args.only)
            text = page(records, rerun)
            problems = broken(records)
    if args.only and args.out.exists():
        text = splice(args.out.read_text(), text, args.only)
    elif args.out.exists():
        text = keep_foreign_sections(args.out.read_text(), text)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
