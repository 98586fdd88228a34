"""The one entrypoint mechanism every stage uses.

A stage module declares a ``StageSpec`` (its kind, named inputs and outputs, its parameter model)
and a typed function. ``run_stage`` turns its options into that parameter model, resolves the
container paths, calls the function and writes the JSON report. No stage has an argparse block of
its own.

How parameters travel (one mechanism for every backend): the backend passes the validated
parameters as ONE JSON document, ``--params-json '{"epochs": 1.0, "max_items": null}'``
(``params_args``), so every value, ``null`` included, reaches the stage exactly as it was validated.
Training stages also read SageMaker's ``hyperparameters.json``, where the same document is the
``params_json`` hyper-parameter. Single ``--key value`` options (and single hyper-parameters) are
still accepted, for humans and for values SageMaker fills in at run time; they override the
document. Precedence, lowest first: hyperparameters.json's document, its other keys, the command
line's document, its other options.
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


PARAMS_JSON = "params_json"  # the option --params-json, the hyper-parameter params_json
PARAMS_JSON_OPTION = "--params-json"
# SageMaker caps each container argument at 256 characters (AppSpecification.ContainerArguments)
MAX_CONTAINER_ARGUMENT = 256


def parse_cli_values(argv: list[str]) -> dict[str, Any]:
    """``--max-duration 6 --flag true`` -> {"max_duration": "6", "flag": "true"}; JSON lists/objects decoded.

    ``--params-json`` keeps its text; given several times, its pieces are joined (a long document
    is split across container arguments, see ``params_args``).
    """
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
        key = key.replace("-", "_")
        if key == PARAMS_JSON:
            values[key] = values.get(key, "") + value
            continue
        if value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        values[key] = value
    return values


def params_document(values: dict[str, Any]) -> str:
    """The validated parameters as the compact JSON document the stage receives."""
    return json.dumps(values, separators=(",", ":"))


def params_args(values: dict[str, Any], max_length: int | None = None) -> list[str]:
    """What a backend puts on a stage's command line: ``--params-json DOCUMENT``.

    With ``max_length`` (SageMaker Processing: 256 characters per argument) a longer document is cut
    into pieces, ``--params-json=PIECE --params-json=PIECE ...``, which the stage joins again.
    """
    document = params_document(values)
    if max_length is None or len(document) <= max_length:
        return [PARAMS_JSON_OPTION, document]
    size = max_length - len(PARAMS_JSON_OPTION) - 1
    return [f"{PARAMS_JSON_OPTION}={document[i:i + size]}" for i in range(0, len(document), size)]


def stage_values(argv: list[str], hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw parameter values of a stage invocation (``task`` included), in order of precedence:
    hyperparameters.json's ``params_json``, its other keys, ``--params-json``, the other options."""
    values: dict[str, Any] = {}
    for layer in (dict(hyperparameters or {}), parse_cli_values(argv)):
        document = layer.pop(PARAMS_JSON, None)
        if document is not None:
            values.update(_decode_document(document))
        values.update(layer)
    return values


def _decode_document(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        document = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise StageError(f"{PARAMS_JSON_OPTION} is not valid JSON ({exc}); "
                         "give an object such as '{\"epochs\": 2, \"max_items\": null}'") from None
    if not isinstance(document, dict):
        raise StageError(f"{PARAMS_JSON_OPTION} must be a JSON object of parameter names to values")
    return document


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
        argv, metric_files = contract.take_path_options(argv, spec.kind)
    except ValueError as exc:
        log.error("invalid options for stage '%s': %s", spec.name, exc)
        return EXIT_BAD_PARAMS
    try:
        hyperparameters = contract.read_hyperparameters() if spec.kind == "training" else {}
        values = stage_values(argv, hyperparameters)
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
        try:
            contract.write_metric_files(report, metric_files)
        except KeyError as exc:
            raise StageError(f"{exc.args[0]}; {contract.METRIC_FILE_OPTION} asked for it") from None
        log.info("stage %s done in %.1fs; report %s", spec.name, time.time() - started, path)
        return 0
    except StageError as exc:  # an expected failure that says what to do: one sentence, no traceback
        headline = f"stage '{spec.name}' failed: {exc}"
        log.error("%s", headline)
        contract.write_failure(headline)
        return EXIT_FAILED
    except Exception as exc:  # the entrypoint is the one place that turns any failure into an exit code
        headline = f"stage '{spec.name}' failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", headline, traceback.format_exc())
        contract.write_failure(headline)
        return EXIT_FAILED


def _print_help(spec: StageSpec, argv: list[str]) -> None:
    values = parse_cli_values(argv) if argv else {}
    task = values.get("task")
    print(f"python -m steps.{spec.name} [--task NAME] [--params-json JSON] [--option value ...]\n")
    print(f"{spec.kind} stage; inputs: {', '.join(spec.inputs) or '-'}; outputs: {', '.join(spec.all_outputs)}")
    print("paths come from the SageMaker container layout (see steps/common/contract.py)\n")
    if spec.needs_task and not task:
        from steps.tasks import TASKS

        print(f"its parameters depend on the task; pass --task NAME with one of: {', '.join(TASKS)}")
        print(f"  e.g. python -m steps.{spec.name} --help --task {next(iter(TASKS))}")
        return
    try:
        model = spec.params(task)
    except KeyError as exc:
        print(f"no parameters to show: {exc.args[0] if exc.args else exc}")
        return
    print(f"parameters{f' (task {task})' if task else ''}: --params-json '{{\"name\": value, ...}}' "
          "(JSON values, null included), or --name value per parameter")
    for line in parameter_help(model):
        print(line)


def parameter_help(model: type[BaseModel]) -> list[str]:
    """One entry per parameter: the option, its type, choices and bounds, its default, its description."""
    lines = []
    for name, info in model.model_fields.items():
        kind = _type_text(info.annotation)
        bounds = _bounds_text(info.metadata)
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            default = f"default {json.dumps(value) if _jsonable(value) else repr(value)}"
        lines.append(f"  --{name.replace('_', '-'):<30} {kind}{f' ({bounds})' if bounds else ''}; {default}")
        if info.description:
            lines.append(f"  {'':<32} {info.description}")
    return lines


def _type_text(annotation: Any) -> str:
    """``int | None`` -> ``int or null``; ``Literal['rms', 'lufs']`` -> ``one of rms, lufs``."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_text(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else getattr(origin, "__name__", "")
    if isinstance(annotation, type):
        return {"str": "text", "float": "number", "int": "integer", "bool": "true/false"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation)


def _bounds_text(metadata: list[Any]) -> str:
    """pydantic's ``Field(ge=..., lt=...)`` constraints as ``>= 0, < 1``."""
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}
    parts = []
    for item in metadata:
        for attr, symbol in symbols.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
