"""The I/O of ``ctc_asr``: one clip in, ``{"text"}`` out (the seed's answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.tasks.io import ClipHandler


class CTCHandler(ClipHandler):
    def load(self, model_dir: Path) -> None:
        from steps.models.wav2vec2.transcriber import CTCTranscriber

        self.transcriber = CTCTranscriber.from_dir(model_dir)

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        texts, _ = self.transcriber([inputs])
        return {"text": texts[0]}


HANDLER = CTCHandler
