"""Audio -> Whisper's encoder inputs: log-mel features padded (or cut) to the window, and the mel-frame mask."""

from __future__ import annotations

import numpy as np
import torch


class WhisperFeatures:
    def __init__(self, extractor):
        self.extractor = extractor

    def __call__(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        out = self.extractor(list(audios), sampling_rate=16000, return_attention_mask=True, return_tensors="pt",
                             truncation=True)
        return {"input_features": out["input_features"], "feature_mask": out["attention_mask"]}
