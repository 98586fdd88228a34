"""The end-of-run summary and the dry-run plan, printed through rich."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from pipelines.backends.local import RunResult, StageResult
from pipelines.definition import Pipeline

console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _metrics(result: StageResult, limit: int = 6) -> str:
    metrics = result.report.get("metrics") or {}
    return "\n".join(f"{k}: {_fmt(v)}" for k, v in list(metrics.items())[:limit])


def _artifacts(result: StageResult) -> str:
    """Outputs as <stage>/<output>: links inside the run folder printed under the table."""
    return "\n".join(f"{result.name}/{name}" for name in result.outputs if name != "report")


def _time(result: StageResult) -> str:
    if result.status == "cached":
        return f"0s\n(ran {result.seconds:.0f}s)"
    return f"{result.seconds:.1f}s" if result.seconds else "-"


def print_summary(run: RunResult) -> None:
    table = Table(title=f"{run.pipeline} · run {run.run_id}", show_lines=True)
    for col in ("stage", "status", "time", "cache", "key metrics", "artifacts"):
        table.add_column(col, overflow="fold")
    styles = {"ran": "green", "cached": "cyan", "failed": "bold red", "skipped": "dim", "planned": "yellow"}
    for r in run.stages:
        table.add_row(r.name, f"[{styles.get(r.status, '')}]{r.status}[/]", _time(r),
                      "hit" if r.status == "cached" else ("miss" if r.status == "ran" else "-"),
                      _metrics(r), _artifacts(r))
    console.print(table)
    for r in run.stages:
        answer = r.report.get("response")
        if answer is not None:
            console.print(f"[bold]{r.name} answer[/] to {r.report.get('request', '')} at {r.report.get('endpoint', '')}:")
            console.print(f"  {json.dumps(answer, ensure_ascii=False)}", markup=False, highlight=False)
            reference = r.report.get("reference")
            if reference:
                console.print(f"  reference: {json.dumps(reference, ensure_ascii=False)}", markup=False, highlight=False)
        for line in r.report.get("notes", []) or []:
            console.print(f"[bold]{r.name}[/]: {line}")
    status = "[green]succeeded[/]" if run.ok else "[red]failed[/]"
    cwd = os.getcwd()
    run_dir = os.path.relpath(run.run_dir, cwd) if run.run_dir.startswith(cwd) else run.run_dir
    console.print(f"run {status} in {run.seconds:.1f}s · outputs, logs and reports in {run_dir}/<stage>/")


def print_plan(pipeline: Pipeline, run: RunResult, backend: str, notes: list[str] | None = None,
               compose_file: Any = None) -> None:
    console.print(f"[bold]plan[/] for pipeline [bold]{pipeline.name}[/] (task {pipeline.task}) on backend {backend}")
    table = Table(show_lines=False)
    for col in ("#", "stage", "inputs", "resources", "would"):
        table.add_column(col, overflow="fold")
    by_name = {r.name: r for r in run.stages}
    for i, stage in enumerate(pipeline.order(), 1):
        r = by_name[stage.name]
        would = {"cached": "reuse cache", "planned": "run", "skipped": "skip"}.get(r.status, r.status)
        res = stage.resources
        table.add_row(str(i), stage.name, ", ".join(f"{k}←{v}" for k, v in stage.inputs.items()) or "-",
                      f"{res.cpus:g} cpu, {res.memory_gb:g} GB" + (f", {res.gpus} gpu" if res.gpus else ""),
                      would)
    console.print(table)
    if backend == "local":
        console.print("[bold]commands[/] (each stage's container entrypoint; the backend sets the paths)")
    else:
        console.print(f"[bold]commands[/] (run from the repository; SPEECHOPS_RUN_DIR=<run folder>; "
                      f"compose file {compose_file})")
    for stage in pipeline.order():
        command = by_name[stage.name].command
        text = ("python " + " ".join(command[1:])) if backend == "local" else " ".join(
            f"'{c}'" if " " in c else c for c in command)
        console.print(f"  {stage.name}: {text}", soft_wrap=True, markup=False, highlight=False)
    for note in notes or []:
        console.print(f"[bold]check[/]: {note}", soft_wrap=True)
    console.print("[bold]resolved config[/]")
    console.print(yaml.safe_dump(pipeline.config, sort_keys=False).rstrip())
