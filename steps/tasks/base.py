"""What a task provides to the generic stages."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from steps.common.stage import Params

MODEL_CARD = "speechops.json"


class Predictor(ABC):
    """Inference on one clip of 16 kHz mono float32 audio: what the serving app calls."""

    @abstractmethod
    def predict(self, audio: np.ndarray) -> dict[str, Any]: ...


class Task(ABC):
    name: ClassVar[str]
    TokenizerParams: ClassVar[type[Params]]
    TrainParams: ClassVar[type[Params]]
    EvaluateParams: ClassVar[type[Params]]
    ExportParams: ClassVar[type[Params]]

    def params_for(self, stage: str) -> type[Params]:
        models = {
            "tokenizer": self.TokenizerParams,
            "train": self.TrainParams,
            "evaluate": self.EvaluateParams,
            "export": self.ExportParams,
        }
        if stage not in models:
            raise KeyError(f"task {self.name} has no parameters for stage {stage!r}")
        return models[stage]

    @abstractmethod
    def build_tokenizer(self, params: Any, data: Path, out: Path) -> dict: ...

    @abstractmethod
    def train(self, params: Any, data: Path, tokenizer: Path, model_out: Path, checkpoints: Path,
              artifacts: Path) -> dict: ...

    @abstractmethod
    def evaluate(self, params: Any, data: Path, model: Path, out: Path) -> dict: ...

    @abstractmethod
    def export(self, params: Any, data: Path, model: Path, out: Path) -> dict: ...

    @abstractmethod
    def load_predictor(self, model_dir: Path) -> Predictor: ...

    # Quality-gate metrics a task reports at top level of its evaluation report (lower is better).
    gate_metrics: ClassVar[tuple[str, ...]] = ("wer",)


def write_model_card(model_dir: Path, task: str, **extra: Any) -> None:
    """Every trained model folder says which task made it, so serving can load it without a config."""
    (Path(model_dir) / MODEL_CARD).write_text(json.dumps({"task": task, **extra}, indent=2, default=str))


def read_model_card(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a speechops model folder (no {MODEL_CARD})")
    return json.loads(path.read_text())
