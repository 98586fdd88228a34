"""The I/O of ``whisper_intensity``: one clip in, ``{"transcript", "intensity_dbfs" | "intensity_lufs", "duration_s"}`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.common.clips import clip_facts, merge_levels, no_speech, windowed
from steps.tasks.base import read_model_card
from steps.tasks.io import Answer, ClipHandler, Panel


class WhisperIntensityHandler(ClipHandler):
    demo_panels = (Panel("text", "transcript", "Transcript"), Panel("meter", "intensity", "Intensity"))
    def load(self, model_dir: Path) -> None:
        from steps.models.whisper.ctranslate import runtime_from_environment
        from steps.tasks.whisper_intensity.inference import Transcriber

        self.runtime = runtime_from_environment()
        self.transcriber = Transcriber.from_dir(model_dir, runtime=self.runtime)
        self.window_s = float(self.transcriber.whisper.features.extractor.chunk_length)
        unit = read_model_card(model_dir).get("intensity_unit", "dBFS")
        self.key = "intensity_lufs" if unit == "LUFS" else "intensity_dbfs"

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        return self.predict_batch([inputs])[0]

    def _pieces(self, pieces: list[np.ndarray]) -> list[tuple[str, float, int]]:
        texts, intensity = self.transcriber(pieces)
        return [("" if no_speech(piece) else text, float(level), piece.shape[0])
                for text, level, piece in zip(texts, intensity, pieces)]

    def predict_batch(self, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Clips longer than the model's window in windows cut at pauses (transcripts joined, intensity
        power-averaged); silent or too short clips and pieces get no transcript."""
        return [{"transcript": " ".join(text for text, _, _ in parts if text).strip(),
                 self.key: round(merge_levels([level for _, level, _ in parts], [n for _, _, n in parts]), 2),
                 **clip_facts(clip)}
                for clip, parts in zip(inputs, windowed(inputs, self.window_s, self._pieces))]

    def demo_view(self, answer: Answer) -> dict[str, Any]:
        fields = answer.json()
        return {**fields, "intensity": {"value": fields[self.key], "unit": "LUFS" if self.key == "intensity_lufs" else "dBFS"}}

    @classmethod
    def describe(cls, answer: Answer, record: Any) -> dict[str, Any]:
        return {"response": answer.shown(), "reference": {"text": record.text, "intensity": record.intensity}}


HANDLER = WhisperIntensityHandler
