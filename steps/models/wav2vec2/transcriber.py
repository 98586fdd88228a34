"""CTC inference with PyTorch: greedy decoding over the valid frames of each clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.models.wav2vec2.build import uses_attention_mask
from steps.models.wav2vec2.decoding import greedy_texts
from steps.models.wav2vec2.features import CTCFeatures
from steps.models.wav2vec2.tokenizer import load_processors


class CTCTranscriber:
    def __init__(self, model, tokenizer, extractor):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.features = CTCFeatures(extractor, uses_attention_mask(model.config))

    @classmethod
    def from_dir(cls, model_dir: Path) -> "CTCTranscriber":
        from transformers import Wav2Vec2ForCTC

        return cls(Wav2Vec2ForCTC.from_pretrained(model_dir), *load_processors(model_dir))

    def output_frames(self, sample_mask: torch.Tensor) -> np.ndarray:
        """Valid output frames per clip, from its mask of real samples."""
        return self.model._get_feat_extract_output_lengths(sample_mask.sum(-1)).numpy()

    @torch.inference_mode()
    def logits(self, audios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.features(audios)
        frames = self.output_frames(batch.pop("sample_mask"))
        return self.model(**batch).logits.numpy(), frames

    def __call__(self, audios: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
        logits, frames = self.logits(audios)
        return greedy_texts(logits, frames, self.tokenizer), frames
