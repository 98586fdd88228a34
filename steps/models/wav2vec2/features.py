"""Audio -> wav2vec2 inputs: normalised, zero-padded input values, and masks."""

from __future__ import annotations

import numpy as np
import torch


class CTCFeatures:
    """``input_values``, ``attention_mask`` (only for models that take one) and ``sample_mask``
    (always: 1 on real samples, to count each clip's valid output frames)."""

    def __init__(self, extractor, use_attention_mask: bool):
        self.extractor = extractor
        self.use_attention_mask = use_attention_mask

    def __call__(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        batch = self.extractor(list(audios), sampling_rate=16000, padding=True, return_attention_mask=True,
                               return_tensors="pt")
        out = {"input_values": batch["input_values"]}
        if self.use_attention_mask:
            out["attention_mask"] = batch["attention_mask"]
        out["sample_mask"] = batch["attention_mask"]
        return out
