"""Task ``whisper_intensity`` (seed 000): Whisper ASR plus an intensity regression head."""

from __future__ import annotations

from pathlib import Path

from steps.tasks.base import Predictor, Task
from steps.tasks.whisper_intensity import params as P


class WhisperIntensityTask(Task):
    name = "whisper_intensity"
    TokenizerParams = P.TokenizerParams
    TrainParams = P.TrainParams
    EvaluateParams = P.EvaluateParams
    ExportParams = P.ExportParams
    gate_metrics = ("wer", "intensity_rmse")

    def build_tokenizer(self, params, data: Path, out: Path) -> dict:
        from steps.tasks.whisper_intensity.tokenizer import build_tokenizer

        return build_tokenizer(params, data, out)

    def train(self, params, data, tokenizer, model_out, checkpoints, artifacts) -> dict:
        from steps.tasks.whisper_intensity.train import train

        return train(params, data, tokenizer, model_out, checkpoints, artifacts)

    def evaluate(self, params, data, model, out) -> dict:
        from steps.tasks.whisper_intensity.evaluate import evaluate

        return evaluate(params, data, model, out)

    def export(self, params, data, model, out) -> dict:
        from steps.tasks.whisper_intensity.export import export

        return export(params, data, model, out)

    def load_predictor(self, model_dir: Path) -> Predictor:
        from steps.tasks.whisper_intensity.inference import WhisperIntensityPredictor

        return WhisperIntensityPredictor(model_dir)


TASK = WhisperIntensityTask()
