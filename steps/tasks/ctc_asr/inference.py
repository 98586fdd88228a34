"""CTC inference with PyTorch: greedy decoding over the valid frames of each clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.tasks.base import Predictor
from steps.tasks.ctc_asr.data import CTCCollator


def uses_attention_mask(config) -> bool:
    """wav2vec2 checkpoints with group-norm feature encoders were trained on zero padding, without a mask."""
    return getattr(config, "feat_extract_norm", "layer") == "layer"


def greedy_texts(logits: np.ndarray, frames: np.ndarray, tokenizer) -> list[str]:
    """Arg-max per frame, padding frames set to blank; the tokenizer collapses repeats and blanks."""
    ids = logits.argmax(axis=-1)
    for row, n in enumerate(frames):
        ids[row, int(n):] = tokenizer.pad_token_id
    return [t.strip() for t in tokenizer.batch_decode(ids)]


class CTCTranscriber:
    def __init__(self, model, tokenizer, extractor):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.collator = CTCCollator(extractor, uses_attention_mask(model.config))

    @classmethod
    def from_dir(cls, model_dir: Path) -> "CTCTranscriber":
        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

        return cls(Wav2Vec2ForCTC.from_pretrained(model_dir), Wav2Vec2CTCTokenizer.from_pretrained(model_dir),
                   Wav2Vec2FeatureExtractor.from_pretrained(model_dir))

    def output_frames(self, sample_mask: torch.Tensor) -> np.ndarray:
        return self.model._get_feat_extract_output_lengths(sample_mask.sum(-1)).numpy()

    @torch.inference_mode()
    def logits(self, audios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.collator.features(audios)
        frames = self.output_frames(batch.pop("sample_mask"))
        return self.model(**batch).logits.numpy(), frames

    def __call__(self, audios: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
        logits, frames = self.logits(audios)
        return greedy_texts(logits, frames, self.tokenizer), frames


class CTCPredictor(Predictor):
    def __init__(self, model_dir: Path):
        self.transcriber = CTCTranscriber.from_dir(Path(model_dir))

    def predict(self, audio: np.ndarray) -> dict:
        texts, _ = self.transcriber([audio])
        return {"text": texts[0]}


PREDICTOR = CTCPredictor
