"""What a task provides to the generic stages."""

from __future__ import annotations

import json
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.common.gate import Gate
from steps.common.stage import Params

if TYPE_CHECKING:  # the handler machinery imports numpy and audio code: not needed to build a pipeline
    from steps.tasks.io import Handler

MODEL_CARD = "speechops.json"


class Task:
    """A task package under ``steps/tasks/<name>/`` provides, by convention, the modules
    ``params`` (TokenizerParams, TrainParams, EvaluateParams, ExportParams), ``tokenizer``
    (``build_tokenizer``), ``train`` (``train``), ``evaluate`` (``evaluate``), ``export``
    (``export``) and ``handler`` (``HANDLER``, a ``steps.tasks.io.Handler`` class taking a model folder:
    the task's request and response formats, see ``steps/tasks/io.py``).
    Modules are imported when a stage needs them, so a light stage never imports a heavy model."""

    def __init__(self, name: str, gate: Gate, manifest_fields: tuple[str, ...] = (),
                 tune_objective: dict[str, float] | None = None, field_aliases: dict[str, str] | None = None):
        self.name = name
        self.package = f"steps.tasks.{name}"
        # the quality gate's metrics (reported at the top level of the evaluation report), each with
        # its direction and default thresholds; a profile's ``gate:`` section adjusts the thresholds
        self.gate = gate
        # record fields beyond the common ones (id, audio, duration, sample_rate, text, speaker, split,
        # intensity labels) that this task needs; prepare keeps them from every source
        self.manifest_fields = manifest_fields
        # another name a source may give one of those fields (the seed's own manifest format): prepare reads
        # ``alias`` as ``field`` when ``field`` is absent
        self.field_aliases = dict(field_aliases or {})
        # what the tune stage minimises or maximises: weights over gate metrics, scored on the validation
        # split as ``eval_<metric>`` (the Trainer's compute_metrics) or ``val_<metric>`` (the train report);
        # default: the first gate metric. Its direction is the gate's (steps/common/tune_space.py).
        self.tune_objective = dict(tune_objective or {gate.metrics[0].name: 1.0})

    def _module(self, name: str):
        return importlib.import_module(f"{self.package}.{name}")

    def params_for(self, stage: str) -> type[Params]:
        names = {"tokenizer": "TokenizerParams", "train": "TrainParams", "evaluate": "EvaluateParams",
                 "export": "ExportParams"}
        if stage not in names:
            raise KeyError(f"task {self.name} has no parameters for stage {stage!r}")
        return getattr(self._module("params"), names[stage])

    def build_tokenizer(self, params: Any, data: Path, out: Path) -> dict:
        return self._module("tokenizer").build_tokenizer(params, data, out)

    def train(self, params: Any, data: Path, tokenizer: Path, model_out: Path, checkpoints: Path,
              artifacts: Path) -> dict:
        return self._module("train").train(params, data, tokenizer, model_out, checkpoints, artifacts)

    def evaluate(self, params: Any, data: Path, model: Path, out: Path) -> dict:
        return self._module("evaluate").evaluate(params, data, model, out)

    def export(self, params: Any, data: Path, model: Path, out: Path) -> dict:
        return self._module("export").export(params, data, model, out)

    def handler_class(self) -> type[Handler]:
        """The task's I/O (content types, sample request) without loading a model: cheap to import."""
        return self._module("handler").HANDLER

    def load_handler(self, model_dir: Path) -> Handler:
        return self.handler_class()(Path(model_dir))


def write_model_card(model_dir: Path, task: str, **extra: Any) -> None:
    """Every trained model folder says which task made it, so serving can load it without a config."""
    (Path(model_dir) / MODEL_CARD).write_text(json.dumps({"task": task, **extra}, indent=2, default=str))


def read_model_card(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a speechops model folder (no {MODEL_CARD})")
    return json.loads(path.read_text())
