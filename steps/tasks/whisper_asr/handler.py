"""The I/O of ``whisper_asr``: one clip in, ``{"text", "language", "duration_s"}`` out (and ``no_speech`` with
the reason for a silent or too short clip); clips longer than the window are transcribed in pieces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.common.clips import clip_facts, no_speech, windowed
from steps.tasks.io import ClipHandler, Panel


class WhisperASRHandler(ClipHandler):
    demo_panels = (Panel("text", "text", "Transcript"), Panel("text", "language", "Language"))
    def load(self, model_dir: Path) -> None:
        from steps.models.whisper.ctranslate import runtime_from_environment
        from steps.tasks.whisper_asr.transcriber import load_transcriber

        self.runtime = runtime_from_environment()
        self.transcriber, card = load_transcriber(model_dir, runtime=self.runtime)
        self.window_s = float(self.transcriber.features.extractor.chunk_length)
        self.language = card.get("language")

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        return self.predict_batch([inputs])[0]

    def _pieces(self, pieces: list[np.ndarray]) -> list[str]:
        return ["" if no_speech(piece) else text for text, piece in zip(self.transcriber(pieces), pieces)]

    def predict_batch(self, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Clips longer than the window in windows cut at pauses; silent or too short ones get no text."""
        return [{"text": " ".join(t for t in texts if t).strip(), "language": self.language, **clip_facts(clip)}
                for clip, texts in zip(inputs, windowed(inputs, self.window_s, self._pieces))]


HANDLER = WhisperASRHandler
