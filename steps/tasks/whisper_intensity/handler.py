"""The I/O of ``whisper_intensity``: one clip in, ``{"transcript", "intensity_dbfs" | "intensity_lufs", "duration_s"}`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.common.audio import TARGET_SAMPLE_RATE
from steps.tasks.base import read_model_card
from steps.tasks.io import Answer, ClipHandler


class WhisperIntensityHandler(ClipHandler):
    def load(self, model_dir: Path) -> None:
        from steps.tasks.whisper_intensity.inference import Transcriber

        self.transcriber = Transcriber.from_dir(model_dir)
        unit = read_model_card(model_dir).get("intensity_unit", "dBFS")
        self.key = "intensity_lufs" if unit == "LUFS" else "intensity_dbfs"

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        texts, intensity = self.transcriber([inputs])
        return {"transcript": texts[0], self.key: round(float(intensity[0]), 2),
                "duration_s": round(inputs.shape[0] / TARGET_SAMPLE_RATE, 3)}

    @classmethod
    def describe(cls, answer: Answer, record: Any) -> dict[str, Any]:
        return {"response": answer.shown(), "reference": {"text": record.text, "intensity": record.intensity}}


HANDLER = WhisperIntensityHandler
