"""The quality gate's absolute limits checked against an evaluate report: ``python -m steps.common.gate_check``.

An orchestrator whose conditions compare one value with another (Kubeflow's ``dsl.If``) runs this between
evaluate and register: it reads the report's metrics, applies the pipeline's ``Gate`` (each metric in its
direction, ``<=`` when lower is better, ``>=`` when higher is) with the limits given at run time (pipeline
parameters), prints one line per metric and writes ``pass`` or ``fail`` to ``--result``. A missing or
non-finite metric fails. The relative thresholds (``min_improvement``, ``max_regression``) need the
champion: the register stage applies them, as on every backend::

    python -m steps.common.gate_check --gate-json '{"metrics": [...]}' --report DIR \\
        --limit wer 0.5 --limit intensity_rmse 3 --result PATH
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from steps.common.contract import REPORT_FILE
from steps.common.gate import Gate, finite

PASS, FAIL = "pass", "fail"


def check(gate: Gate, metrics: dict, limits: dict[str, float]) -> tuple[bool, list[str]]:
    """Whether every metric with a limit meets it, and one line per metric saying so."""
    lines, ok = [], True
    for metric in gate.metrics:
        limit = limits.get(metric.name, metric.limit)
        if limit is None:
            continue
        value = metrics.get(metric.name)
        if not finite(value):
            ok = False
            lines.append(f"{metric.name}: no finite value in the report ({value!r}): fail")
            continue
        held = metric.model_copy(update={"limit": float(limit)}).meets_limit(float(value))
        ok &= held
        lines.append(f"{metric.name} = {value:.6g} {metric.op} {float(limit):g}: {'holds' if held else 'fails'}")
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.common.gate_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gate-json", required=True, help="the pipeline's gate (Gate.model_dump_json())")
    parser.add_argument("--report", type=Path, required=True, help="the evaluate stage's report folder (or file)")
    parser.add_argument("--limit", nargs=2, action="append", default=[], metavar=("METRIC", "VALUE"),
                        help="the absolute limit of a metric for this run (default: the gate's)")
    parser.add_argument("--result", type=Path, required=True, help="where 'pass' or 'fail' is written")
    args = parser.parse_args(argv)
    try:
        gate = Gate.model_validate_json(args.gate_json)
        limits = {name: float(value) for name, value in args.limit}
        report_file = args.report / REPORT_FILE if args.report.is_dir() else args.report
        metrics = json.loads(report_file.read_text()).get("metrics") or {}
    except (ValueError, OSError) as exc:
        print(f"gate check: cannot read its inputs: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(limits) - set(gate.names))
    if unknown:
        print(f"gate check: {', '.join(unknown)} not among the gate's metrics ({', '.join(gate.names)})", file=sys.stderr)
        return 2
    ok, lines = check(gate, metrics, limits)
    for line in lines:
        print(f"gate: {line}")
    print(f"gate: {'passed: register and deploy run' if ok else 'failed: register and deploy are skipped'}")
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(PASS if ok else FAIL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
