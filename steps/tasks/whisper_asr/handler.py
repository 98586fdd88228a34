"""The I/O of ``whisper_asr``: one clip in, ``{"text", "language"}`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.tasks.io import ClipHandler


class WhisperASRHandler(ClipHandler):
    def load(self, model_dir: Path) -> None:
        from steps.tasks.whisper_asr.transcriber import load_transcriber

        self.transcriber, card = load_transcriber(model_dir)
        self.language = card.get("language")

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        return {"text": self.transcriber([inputs])[0], "language": self.language}


HANDLER = WhisperASRHandler
