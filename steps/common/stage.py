"""The one entrypoint mechanism every stage uses.

A stage module declares a ``StageSpec`` (its kind, named inputs and outputs, its parameter model)
and a typed function. ``run_stage`` turns command-line options (``--key value``, as SageMaker
Processing passes them) and, for training stages, SageMaker's ``hyperparameters.json`` into that
parameter model, resolves the container paths, calls the function and writes the JSON report.
No stage has an argparse block of its own.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from steps.common import contract
from steps.common.console import setup_logging

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_BAD_PARAMS = 2


class Params(BaseModel):
    """Base of every stage's parameters: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StageError(RuntimeError):
    """A failure with a headline and what to do about it."""


@dataclass(frozen=True)
class StageIO:
    inputs: dict[str, Path]
    outputs: dict[str, Path]


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: contract.StageKind
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # task name (or None) -> the parameter model of this stage
    params: Callable[[str | None], type[Params]]
    # (params, task, io) -> report dict
    run: Callable[[Any, str | None, StageIO], dict]
    optional_inputs: tuple[str, ...] = field(default=())
    needs_task: bool = True
    # params -> local files or folders whose content the stage reads besides its wired inputs
    # (e.g. prepare's source); backends hash them into the cache key.
    external_inputs: Callable[[Any], list[Path]] = field(default=lambda params: [])

    @property
    def all_outputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.outputs, contract.REPORT_OUTPUT)))


def parse_cli_values(argv: list[str]) -> dict[str, Any]:
    """``--max-duration 6 --flag true`` -> {"max_duration": "6", "flag": "true"}; JSON lists/objects decoded."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise StageError(f"unexpected argument {arg!r}: options are --name value pairs")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise StageError(f"option --{key} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        if value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        values[key.replace("-", "_")] = value
    return values


def to_cli_args(values: dict[str, Any]) -> list[str]:
    """The inverse of ``parse_cli_values``: what backends put on a stage's command line."""
    args: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        args += [f"--{key.replace('_', '-')}", text]
    return args


def build_params(spec: StageSpec, task: str | None, values: dict[str, Any]) -> Params:
    model = spec.params(task)
    return model.model_validate(values)


def resolve_io(spec: StageSpec) -> StageIO:
    inputs: dict[str, Path] = {}
    for name in spec.inputs:
        path = contract.input_dir(spec.kind, name)
        if not path.exists() and name not in spec.optional_inputs:
            raise StageError(
                f"input '{name}' of stage '{spec.name}' not found at {path}; "
                f"set {contract.input_env(spec.kind, name)} or mount it there"
            )
        if path.exists():
            inputs[name] = path
    outputs = {name: contract.output_dir(spec.kind, name) for name in spec.all_outputs}
    return StageIO(inputs=inputs, outputs=outputs)


def run_stage(spec: StageSpec, argv: list[str] | None = None) -> int:
    """Parse, validate, run, report. Returns the process exit code."""
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if spec.kind == "training" and argv[:1] == ["train"]:
        argv = argv[1:]  # SageMaker starts training images as `<image> train` (tuning jobs use that default)
    if argv and argv[0] in ("-h", "--help"):
        _print_help(spec, argv[1:])
        return 0
    started = time.time()
    try:
        values: dict[str, Any] = {}
        if spec.kind == "training":
            values.update(contract.read_hyperparameters())
        values.update(parse_cli_values(argv))
        task = values.pop("task", None)
        if spec.needs_task and not task:
            raise StageError(f"stage '{spec.name}' needs --task NAME")
        params = build_params(spec, task, values)
    except (StageError, ValidationError) as exc:
        message = f"invalid parameters for stage '{spec.name}': {exc}"
        log.error(message)
        contract.write_failure(message)
        return EXIT_BAD_PARAMS
    try:
        io = resolve_io(spec)
        log.info("stage %s (task %s) starting; inputs %s", spec.name, task, {k: str(v) for k, v in io.inputs.items()})
        report = spec.run(params, task, io) or {}
        report = {
            "stage": spec.name,
            "task": task,
            "params": params.model_dump(mode="json"),
            "elapsed_s": round(time.time() - started, 3),
            **report,
        }
        path = contract.write_report(spec.kind, report)
        log.info("stage %s done in %.1fs; report %s", spec.name, time.time() - started, path)
        return 0
    except Exception as exc:  # the entrypoint is the one place that turns any failure into an exit code
        headline = f"stage '{spec.name}' failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", headline, traceback.format_exc())
        contract.write_failure(headline)
        return EXIT_FAILED


def _print_help(spec: StageSpec, argv: list[str]) -> None:
    values = parse_cli_values(argv) if argv else {}
    task = values.get("task")
    print(f"python -m steps.{spec.name} [--task NAME] [--option value ...]\n")
    print(f"{spec.kind} stage; inputs: {', '.join(spec.inputs) or '-'}; outputs: {', '.join(spec.all_outputs)}")
    print("paths come from the SageMaker container layout (see steps/common/contract.py)\n")
    try:
        model = spec.params(task)
    except Exception as exc:  # noqa: BLE001 - help must still print something useful
        print(f"(pass --task NAME to list the task's options: {exc})")
        return
    print("options:")
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else f"default {info.default!r}"
        desc = f"  {info.description}" if info.description else ""
        print(f"  --{name.replace('_', '-'):<28} {default}{desc}")
