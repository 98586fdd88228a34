"""The stage contract: where a stage finds its inputs and puts its outputs.

Every stage runs in a container that follows SageMaker's conventions, so one image runs on every
backend. A stage never hard-codes a path; it asks this module, which reads the environment and
falls back to SageMaker's defaults:

=============  ====================================================  ==========================
kind           inputs                                                outputs
=============  ====================================================  ==========================
processing     ``$SPEECHOPS_INPUT_<NAME>`` or                        ``$SPEECHOPS_OUTPUT_<NAME>`` or
               ``/opt/ml/processing/input/<name>``                   ``/opt/ml/processing/output/<name>``
training       ``$SM_CHANNEL_<NAME>`` or ``/opt/ml/input/data/<name>``  ``model``: ``$SM_MODEL_DIR`` or
                                                                     ``/opt/ml/model``;
                                                                     ``checkpoints``: ``/opt/ml/checkpoints``;
                                                                     others: ``$SM_OUTPUT_DATA_DIR/<name>``
=============  ====================================================  ==========================

``$SPEECHOPS_ML_ROOT`` replaces ``/opt/ml`` as a whole (tests, the local backend). Backends import
the ``*_env`` helpers below to set the same variables, so the naming lives in one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

StageKind = Literal["processing", "training"]

ML_ROOT_ENV = "SPEECHOPS_ML_ROOT"
DEFAULT_ML_ROOT = "/opt/ml"
REPORT_OUTPUT = "report"
REPORT_FILE = "report.json"


def ml_root() -> Path:
    return Path(os.environ.get(ML_ROOT_ENV, DEFAULT_ML_ROOT))


def input_env(kind: StageKind, name: str) -> str:
    """The environment variable that overrides input ``name`` of a stage of ``kind``."""
    key = name.upper().replace("-", "_")
    return f"SM_CHANNEL_{key}" if kind == "training" else f"SPEECHOPS_INPUT_{key}"


def output_env(kind: StageKind, name: str) -> str:
    """The environment variable that overrides output ``name`` of a stage of ``kind``."""
    key = name.upper().replace("-", "_")
    if kind == "training":
        if name == "model":
            return "SM_MODEL_DIR"
        if name == "checkpoints":
            return "SPEECHOPS_CHECKPOINT_DIR"
        return f"SPEECHOPS_OUTPUT_{key}"
    return f"SPEECHOPS_OUTPUT_{key}"


def container_input_path(kind: StageKind, name: str, root: Path | None = None) -> Path:
    """The path SageMaker mounts input ``name`` at, inside the container."""
    root = root or Path(DEFAULT_ML_ROOT)
    if kind == "training":
        return root / "input" / "data" / name
    return root / "processing" / "input" / name


def container_output_path(kind: StageKind, name: str, root: Path | None = None) -> Path:
    """The path SageMaker collects output ``name`` from, inside the container."""
    root = root or Path(DEFAULT_ML_ROOT)
    if kind == "training":
        if name == "model":
            return root / "model"
        if name == "checkpoints":
            return root / "checkpoints"
        return root / "output" / "data" / name
    return root / "processing" / "output" / name


def input_dir(kind: StageKind, name: str) -> Path:
    value = os.environ.get(input_env(kind, name))
    return Path(value) if value else container_input_path(kind, name, ml_root())


def output_dir(kind: StageKind, name: str) -> Path:
    value = os.environ.get(output_env(kind, name))
    path = Path(value) if value else container_output_path(kind, name, ml_root())
    path.mkdir(parents=True, exist_ok=True)
    return path


def hyperparameters_file() -> Path:
    return ml_root() / "input" / "config" / "hyperparameters.json"


def read_hyperparameters() -> dict[str, str]:
    """SageMaker's hyper-parameters (all values are strings there); empty outside training jobs."""
    path = hyperparameters_file()
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {str(k): v for k, v in data.items()}


def failure_file() -> Path:
    return Path(os.environ.get("SPEECHOPS_FAILURE_FILE", ml_root() / "output" / "failure"))


def write_failure(message: str) -> None:
    """Record why a stage failed where SageMaker (and our backends) look for it."""
    path = failure_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message[:4000])
    except OSError:  # a read-only or missing root must not hide the original failure
        pass


def write_report(kind: StageKind, report: dict) -> Path:
    """Write the stage's JSON report (read by later stages, gates and the run summary)."""
    path = output_dir(kind, REPORT_OUTPUT) / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(path)
    return path


INPUT_PATH_OPTION, OUTPUT_PATH_OPTION, METRIC_FILE_OPTION = "--input-path", "--output-path", "--metric-file"


def take_path_options(argv: list[str], kind: StageKind) -> tuple[list[str], dict[str, Path]]:
    """Paths an orchestrator hands a stage on its command line, as Kubeflow's artifact placeholders do:

    * ``--input-path NAME PATH`` / ``--output-path NAME PATH`` set the variables above (so the stage reads
      and writes there, exactly as with the environment);
    * ``--metric-file NAME PATH`` asks for the report's metric ``NAME`` written to ``PATH`` (a pipeline
      parameter a condition can read).

    Returns the other arguments, and the metric files asked for. Raises ``ValueError`` on a malformed option.
    """
    rest: list[str] = []
    metric_files: dict[str, Path] = {}
    i = 0
    while i < len(argv):
        option = argv[i]
        if option not in (INPUT_PATH_OPTION, OUTPUT_PATH_OPTION, METRIC_FILE_OPTION):
            rest.append(option)
            i += 1
            continue
        if len(argv[i + 1:i + 3]) < 2:
            raise ValueError(f"{option} takes two values, NAME and PATH")
        name, path = argv[i + 1], argv[i + 2]
        if option == INPUT_PATH_OPTION:
            os.environ[input_env(kind, name)] = path
        elif option == OUTPUT_PATH_OPTION:
            os.environ[output_env(kind, name)] = path
        else:
            metric_files[name] = Path(path)
        i += 3
    return rest, metric_files


def write_metric_files(report: dict, metric_files: dict[str, Path]) -> None:
    """Each asked-for metric of the report, as plain text (a number) in its file."""
    metrics = report.get("metrics") or {}
    for name, path in metric_files.items():
        if metrics.get(name) is None:
            raise KeyError(f"the report has no metric {name!r} (it has {', '.join(metrics) or 'none'})")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics[name]))
