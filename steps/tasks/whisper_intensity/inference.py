"""Batch inference (PyTorch, or CTranslate2 for encoder and decoder): greedy transcripts and intensity from
one encoder pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.models.whisper.ctranslate import CT2Whisper, Runtime
from steps.models.whisper.decoding import DecodingSpec
from steps.models.whisper.transcriber import WhisperTranscriber
from steps.tasks.whisper_intensity.model import WhisperForASRAndIntensity


class Transcriber:
    """Transcripts (Whisper's greedy decoding, ``steps.models.whisper``) and intensity in dB from one encoder pass."""

    def __init__(self, model: WhisperForASRAndIntensity, tokenizer, extractor, spec: DecodingSpec | None = None,
                 engine: CT2Whisper | None = None):
        self.whisper = WhisperTranscriber(model, tokenizer, extractor, spec, engine)
        self.model = self.whisper.model

    @classmethod
    def from_dir(cls, model_dir: Path, max_new_tokens: int = 64, runtime: Runtime | None = None) -> "Transcriber":
        whisper = WhisperTranscriber.from_dir(model_dir, max_new_tokens, model_class=WhisperForASRAndIntensity,
                                              runtime=runtime)
        return cls(whisper.model, whisper.tokenizer, whisper.features.extractor, whisper.spec, whisper.engine)

    @torch.inference_mode()
    def intensity(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return self.model.to_db(self.model.predict_intensity(hidden, batch["feature_mask"],
                                                             batch["input_features"])).numpy()

    def __call__(self, audios: list[np.ndarray], cached: bool = True) -> tuple[list[str], np.ndarray]:
        hidden, batch = self.whisper.encode_batch(audios)
        return self.whisper.decode(hidden, cached), self.intensity(hidden, batch)
