"""Start-up and peak memory of the self-contained kubelet provider (one folder behind a link,
packaging/build_frozen.py) beside the zipapp run as the provider, alternated in one run.

    python benchmarks/bench_frozen.py --frozen dist/quay-credential-provider \\
        --zipapp dist/docker-credential-quayfed [--onefile PATH] [--rounds N] [--json PATH]

Two requests each: ``--version`` (start-up and nothing else) and a node-identity request for a
registry the node has not configured (answered without auth from the configuration: the
package imported, the request parsed, the answer written). Times are medians of wall time;
peak memory is ``ru_maxrss`` from ``measure.c``'s wait4, which covers the process and any child
it waited for (a onefile executable's Python child too). ``--onefile`` adds an executable
built the older way, for comparison. Sizes: the folder, its tarball, the zipapp.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench_get import PROVIDER, answers_without_auth, helper_env, provider_request, size_of
from measure import Command, MeasureError, Runner, alternate


def answers_version(out: bytes) -> bool:
    return out.startswith(f"{PROVIDER} ".encode())


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def commands_for(
    label: str, executable: Path, env: dict[str, str], request: bytes
) -> list[Command]:
    argv = [str(executable)]
    return [
        Command(f"{label} --version", [*argv, "--version"], env, answer_ok=answers_version),
        Command(f"{label} request", argv, env, request, answer_ok=answers_without_auth),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frozen", type=Path, required=True, help="the link to the folder")
    parser.add_argument("--zipapp", type=Path, required=True, help="the single-file zipapp")
    parser.add_argument("--onefile", type=Path, help="a onefile build, to compare")
    parser.add_argument("--rounds", type=int, default=20, help="samples per command (%(default)s)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quayfed-bench-frozen-") as temp:
        workdir = Path(temp)
        runner = Runner(workdir)
        env = helper_env(workdir / "provider", "")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        request = provider_request()
        # Under the provider's name, the zipapp runs the provider.
        link = workdir / "zipapp-bin" / PROVIDER
        link.parent.mkdir()
        link.symlink_to(args.zipapp.absolute())
        builds = [("one-folder", args.frozen.absolute()), ("zipapp", link)]
        if args.onefile:
            builds.append(("onefile", args.onefile.absolute()))
        by_build = {label: commands_for(label, path, env, request) for label, path in builds}
        try:
            for commands in by_build.values():
                runner.run(commands[0])  # the zipapp unpacks itself on its first run
            for index in range(2):  # each request alternated across the builds
                alternate(runner, [c[index] for c in by_build.values()], args.rounds)
        except MeasureError as exc:
            print(f"bench_frozen: {exc}", file=sys.stderr)
            return 1
    baseline = by_build["zipapp"]
    rows = []
    print(f"{args.rounds} rounds, medians; peak memory: ru_maxrss")
    print(f"{'command':<28} {'wall':>9} {'vs zipapp':>9} {'peak':>9} {'vs zipapp':>9}")
    for commands in by_build.values():
        for command, base in zip(commands, baseline):
            seconds, peak = command.median_seconds(), command.median_peak_mib()
            base_peak = base.median_peak_mib()
            peak_text = f"{peak:.1f} MiB" if peak is not None else "-"
            peak_ratio = f"{peak / base_peak:.2f}x" if peak and base_peak else "-"
            print(
                f"{command.label:<28} {seconds * 1000:>6.1f} ms "
                f"{seconds / base.median_seconds():>8.2f}x {peak_text:>9} {peak_ratio:>9}"
            )
            rows.append({"command": command.label, "seconds": seconds, "peak_mib": peak})
    frozen = args.frozen.absolute()
    sizes = {"one-folder": size_of(str(frozen)), "zipapp": size_of(str(args.zipapp))}
    for tarball in sorted(frozen.parent.glob(f"{frozen.name}-*.tar.gz"))[-1:]:
        sizes["tarball"] = size_of(str(tarball))
    if args.onefile:
        sizes["onefile"] = size_of(str(args.onefile))
    print("sizes: " + ", ".join(f"{name} {mib(size)}" for name, size in sizes.items()))
    if args.json:
        figures = {"rounds": args.rounds, "rows": rows, "sizes": sizes}
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
