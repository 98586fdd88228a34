"""The I/O of ``ctc_asr``: one clip in, ``{"text"}`` out (the seed's answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.common.clips import no_speech
from steps.tasks.io import ClipHandler


class CTCHandler(ClipHandler):
    def load(self, model_dir: Path) -> None:
        from steps.models.wav2vec2.transcriber import CTCTranscriber

        self.transcriber = CTCTranscriber.from_dir(model_dir)

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        return self.predict_batch([inputs])[0]

    def predict_batch(self, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
        """CTC reads any length; silent or too short clips get no text (and the reason)."""
        if self.transcriber.features.use_attention_mask:
            texts, _ = self.transcriber(inputs)
        else:  # zero padding would change the other clips' answers: one at a time
            texts = [self.transcriber([clip])[0][0] for clip in inputs]
        answers = []
        for clip, text in zip(inputs, texts):
            reason = no_speech(clip)
            answers.append({"text": "", "no_speech": reason} if reason else {"text": text})
        return answers


HANDLER = CTCHandler
