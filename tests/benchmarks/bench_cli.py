#!/usr/bin/env python3
"""Benchmark the cheap commands of ``pipelines/run.py``: each in a fresh interpreter, several times, median.

Not a test: run it by hand on an otherwise idle machine::

    python tests/benchmarks/bench_cli.py                                  # ./runs, whisper_intensity, tiny
    python tests/benchmarks/bench_cli.py --runs-dir /tmp/runs --repeats 7 --profile scratch --set train.epochs=1

Measured: ``run.py list``, ``run.py --help``, ``run.py --pipeline P --dry-run`` and a fully cached
re-run of P (every stage a cache hit). The re-run needs an earlier run of P with the same profile and
``--set`` values in ``--runs-dir``; without one it is skipped with a message (make one with
``python pipelines/run.py --pipeline P --runs-dir DIR ...``). Before timing, one untimed re-run brings
the cache up to date (after a code change it re-runs the stages whose code changed: that can take
minutes), and each timed run must reuse every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_PY = str(REPO_ROOT / "pipelines" / "run.py")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, RUN_PY, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc


def median_of(label: str, args: list[str], env: dict[str, str], repeats: int) -> tuple[str, float, list[float]] | None:
    seconds = []
    for _ in range(repeats):
        elapsed, proc = timed(args, env)
        if proc.returncode != 0:
            print(f"{label}: exit code {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        seconds.append(elapsed)
    return label, statistics.median(seconds), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the earlier run is (default: $SPEECHOPS_RUNS_DIR, else ./runs)")
    parser.add_argument("--pipeline", default="whisper_intensity")
    parser.add_argument("--profile", default="tiny", help="the profile of the earlier run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="the --set values of the earlier run (repeatable)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO_ROOT))
    from pipelines.workspace import Workspace

    workspace = Workspace.at(args.runs_dir)
    env = dict(os.environ, SPEECHOPS_PROGRESS="0")
    config = ["--pipeline", args.pipeline, "--profile", args.profile, "--runs-dir", str(workspace.runs_dir),
              *[a for item in args.overrides for a in ("--set", item)]]
    rows = [
        median_of("run.py list", ["list"], env, args.repeats),
        median_of("run.py --help", ["--help"], env, args.repeats),
        median_of(f"run.py --pipeline {args.pipeline} --dry-run", [*config, "--dry-run"], env, args.repeats),
    ]
    latest = workspace.pipeline_dir(args.pipeline) / "latest"
    if not latest.exists():
        print(f"cached re-run skipped: no run of {args.pipeline} in {workspace.runs_dir} (make one with "
              f"python pipelines/run.py {' '.join(config)})")
    else:
        print(f"bringing the cache up to date (one untimed re-run of {args.pipeline}) ...", flush=True)
        elapsed, warm = timed([*config, "--quiet", "--run-id", "bench-warm"], env)
        if warm.returncode != 0:
            print(f"the untimed re-run failed (exit {warm.returncode}):\n{warm.stdout[-3000:]}", file=sys.stderr)
            return 1
        print(f"  took {elapsed:.1f} s")

        seconds = []
        for i in range(args.repeats):
            elapsed, proc = timed([*config, "--quiet", "--run-id", f"bench-{os.getpid()}-{i}"], env)
            run = json.loads((latest.resolve() / "run.json").read_text())
            missed = [name for name, stage in run["stages"].items() if stage["status"] != "cached"]
            if proc.returncode != 0 or missed:
                print(f"a re-run was not fully cached (exit {proc.returncode}; ran: {', '.join(missed) or '-'})",
                      file=sys.stderr)
                break
            seconds.append(elapsed)
        if seconds:
            rows.append((f"cached re-run of {args.pipeline}", statistics.median(seconds), seconds))

    print(f"\nmedian of {args.repeats} (fresh interpreter each; {sys.executable}):")
    for row in rows:
        if row is not None:
            label, median, seconds = row
            print(f"  {label:<48} {median:6.2f} s   (all: {', '.join(f'{s:.2f}' for s in seconds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
