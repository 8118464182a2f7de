"""Run the parts that meet the real peers and print the README's table of what they tested.

    python docs/real_peers.py [--records DIR]

Runs ``CI=true python -m pytest -m PART`` for each part (``keycloak``, ``kubelet_code``,
``more_clients``, ``node_install``, ``platforms``: nothing may be skipped), timing each, and
prints a Markdown table: the peer, the versions the part pins (read from the files that pin
them: Keycloak's start-up record, ``tests/kubelet_code/*.mod``, ``.ci/more-clients.sh``,
``tests/platforms/*/go.mod``, the installed buildah and podman), what pytest counted and how
long the part took. With ``--records DIR`` no test runs: the table is made from a run's records
(each part's line in ``real-peers.jsonl``, written by an earlier run of this script, and
Keycloak's ``keycloak.jsonl``). The exit status is 1 when a part failed or skipped anything.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests package, when run as a script from anywhere

from tests.support.records import OUT_ENV, read, record  # noqa: E402

#: (marker, the peer as the table names it, where its tests are)
PARTS = (
    ("keycloak", "Keycloak (the walkthrough's issuer)", "tests/keycloak"),
    ("kubelet_code", "the kubelet's own credential-provider code", "tests/test_kubelet_code.py"),
    ("more_clients", "helm, oras and crane", "tests/e2e/test_more_clients.py"),
    (
        "node_install",
        "buildah and podman: the installer image against a fake host root",
        "tests/test_node_install.py",
    ),
    ("platforms", "Butane and kind's config types", "tests/test_platforms.py"),
)
_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected)")


def counted(output: str) -> dict[str, int]:
    """What pytest's last summary line counted: passed, failed, skipped, error(s)."""
    lines = [line for line in output.splitlines() if " in " in line and _SUMMARY.search(line)]
    found: dict[str, int] = {}
    for number, word in _SUMMARY.findall(lines[-1] if lines else ""):
        found[word.rstrip("s") if word.startswith("error") else word] = int(number)
    return found


def kubernetes_releases() -> list[str]:
    """The k8s.io/kubernetes releases tests/kubelet_code pins, newest first."""
    pinned = re.compile(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v[0-9.]+)$", re.M)
    files = (ROOT / "tests" / "kubelet_code").glob("*.mod")
    releases = [found for path in files for found in pinned.findall(path.read_text())]
    return sorted(releases, key=lambda v: tuple(map(int, v[1:].split("."))), reverse=True)


def client_versions() -> dict[str, str]:
    """helm, oras and crane as .ci/more-clients.sh pins them."""
    text = (ROOT / ".ci" / "more-clients.sh").read_text()
    return dict(re.findall(r'^\s*"(\w+)\s+\S+\s+\S+\s+(v[0-9.]+)"', text, re.M))


def tool_version(tool: str) -> str:
    """``buildah 1.28.2``: what ``TOOL --version`` says its version is."""
    try:
        said = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except OSError:
        return f"{tool} (not installed)"
    found = re.search(r"version (\S+)", said)
    return f"{tool} {found.group(1) if found else '(unknown)'}"


def platform_tools() -> dict[str, str]:
    """Butane and kind as tests/platforms pins them."""
    pins = {
        "Butane": ("butane", "github.com/coreos/butane"),
        "kind": ("kindconfig", "sigs.k8s.io/kind"),
    }
    found = {}
    for name, (folder, module) in pins.items():
        text = (ROOT / "tests" / "platforms" / folder / "go.mod").read_text()
        pinned = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v[0-9.]+)$", text, re.M)
        found[name] = pinned.group(1) if pinned else "(not pinned)"
    return found


def run_part(marker: str, where: str, records: Path) -> dict[str, Any]:
    """``pytest -m MARKER WHERE`` under CI=true; what it counted and its wall time."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker]
    started = time.monotonic()
    done = subprocess.run(
        [*command, where],
        cwd=ROOT,
        env={**os.environ, "CI": "true", OUT_ENV: str(records)},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    sys.stderr.write(done.stdout[-3000:] + done.stderr[-2000:])
    found = {"part": marker, "seconds": round(seconds, 1), "exit": done.returncode}
    found.update(counted(done.stdout))
    return found


def versions(marker: str, records: Path) -> str:
    if marker == "keycloak":
        started = read(records, "keycloak")
        if not started:
            return "(no Keycloak start-up recorded)"
        newest = started[-1]
        return (
            f"Keycloak {newest['version']} (`keycloak-quarkus-dist`), started in "
            f"{newest['startup_seconds']:.0f} s"
        )
    if marker == "kubelet_code":
        return "k8s.io/kubernetes " + " and ".join(kubernetes_releases())
    if marker == "node_install":
        return ", ".join(tool_version(tool) for tool in ("buildah", "podman"))
    if marker == "platforms":
        return ", ".join(f"{name} {version}" for name, version in platform_tools().items())
    return ", ".join(f"{name} {version}" for name, version in client_versions().items())


def table(parts: Sequence[dict[str, Any]], records: Path) -> str:
    names = {marker: peer for marker, peer, _ in PARTS}
    rows = [
        "| peer | versions | tests | time |",
        "|---|---|---|---|",
    ]
    for part in parts:
        tests = f"{part.get('passed', 0)} passed"
        for word in ("failed", "skipped", "error"):
            if part.get(word):
                tests += f", {part[word]} {word}"
        rows.append(
            f"| {names[part['part']]} | {versions(part['part'], records)} | {tests} "
            f"| {part['seconds']:.0f} s |"
        )
    return "\n".join(rows) + "\n"


def healthy(part: dict[str, Any]) -> bool:
    broken = part.get("failed") or part.get("skipped") or part.get("error")
    return part["exit"] == 0 and not broken and part.get("passed", 0) > 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, help="make the table from these records")
    args = parser.parse_args(argv)
    if args.records is not None:
        parts = read(args.records, "real-peers")
        records = args.records
    else:
        records = Path(tempfile.mkdtemp(prefix="quayfed-real-peers-"))
        os.environ[OUT_ENV] = str(records)
        parts = []
        for marker, _, where in PARTS:
            part = run_part(marker, where, records)
            record("real-peers", **part)
            parts.append(part)
    sys.stdout.write(table(parts, records))
    return 0 if parts and all(map(healthy, parts)) else 1


if __name__ == "__main__":
    sys.exit(main())
