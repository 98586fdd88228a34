"""Batch inference with PyTorch: emotion probabilities, CTC transcripts (greedy or beam) and word emphasis
from one encoder pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from steps.tasks.prosody_ser.data import WordInputs, pad_words
from steps.tasks.prosody_ser.tokenizer import Pieces


@dataclass
class Prediction:
    emotion: str | None
    probabilities: dict[str, float]
    transcript: str | None
    words: list[str] = field(default_factory=list)
    emphasis: list[float] = field(default_factory=list)  # probability that each word is emphasised

    def answer(self, threshold: float = 0.5) -> dict:
        out: dict = {"emotion": self.emotion, "probabilities": self.probabilities, "transcript": self.transcript}
        out["emphasis"] = [{"word": w, "emphasised": bool(p >= threshold), "probability": round(float(p), 3)}
                           for w, p in zip(self.words, self.emphasis)]
        return out


def greedy_ids(log_probs: np.ndarray, frames: int) -> list[int]:
    """Arg-max per frame over the clip's frames, repeats collapsed, blanks dropped (by ``Pieces.decode``)."""
    best = log_probs[:frames].argmax(-1)
    return [int(t) for i, t in enumerate(best) if i == 0 or t != best[i - 1]]


class BeamSearch:
    """torchaudio's lexicon-free CTC beam search (flashlight-text) over the SentencePiece pieces."""

    def __init__(self, pieces: Pieces, beam_width: int):
        from torchaudio.models.decoder import ctc_decoder

        tokens = [pieces.sp.id_to_piece(i) for i in range(len(pieces))]
        self.decoder = ctc_decoder(lexicon=None, tokens=tokens, lm=None, beam_size=beam_width,
                                   blank_token=tokens[4], sil_token=tokens[3], unk_word=tokens[0])
        self.pieces = pieces

    def __call__(self, log_probs: torch.Tensor, frames: torch.Tensor) -> list[str]:
        hypotheses = self.decoder(log_probs.float().contiguous(), frames.to(torch.int32))
        return [self.pieces.decode(h[0].tokens.tolist()) if h else "" for h in hypotheses]


class Predictor:
    def __init__(self, model, pieces: Pieces, extractor):
        from steps.tasks.prosody_ser.backbone import Features

        self.model, self.pieces = model.eval(), pieces
        self.features = Features(extractor)
        self.words = WordInputs(pieces)
        self.labels = list(model.config.emotion_labels)

    @classmethod
    def from_dir(cls, model_dir: Path) -> "Predictor":
        from transformers import AutoFeatureExtractor

        from steps.tasks.prosody_ser.model import ProsodySERModel

        model = ProsodySERModel.from_pretrained(model_dir)
        return cls(model, Pieces(model_dir), AutoFeatureExtractor.from_pretrained(model_dir))

    def encode(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """One encoder pass: emotion probabilities (B, E), CTC log-probabilities (B, T, V), frames (B,)."""
        return self.encode_features(self.features(list(audios)))

    @torch.inference_mode()
    def encode_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden, mask = self.model.encode(batch["input_features"], batch["feature_mask"])
        out = {"hidden": hidden, "mask": mask, "frames": mask.sum(1)}
        if self.model.config.use_ser:
            out["emotion"] = self.model.emotion_head(hidden, mask).float().softmax(-1)
        if self.model.config.use_asr:
            out["ctc"] = self.model.ctc_head(hidden).float().log_softmax(-1)
        return out

    @torch.inference_mode()
    def emphasis(self, encoded: dict[str, torch.Tensor], words: list[list[str]]) -> list[list[float]]:
        """Per clip, the probability that each of ``words`` is emphasised (empty without the head or words)."""
        if not self.model.config.use_prosody or not any(words):
            return [[] for _ in words]
        inputs = pad_words([self.words(w) for w in words])
        logits = self.model.emphasis_head(encoded["hidden"], encoded["mask"], inputs["word_pieces"],
                                          inputs["word_position"], inputs["word_mask"])
        probs = logits.float().sigmoid().numpy()
        return [probs[b, : len(w)].tolist() for b, w in enumerate(words)]

    def transcripts(self, encoded: dict[str, torch.Tensor]) -> list[str | None]:
        if "ctc" not in encoded:
            return [None] * len(encoded["frames"])
        ctc = encoded["ctc"].numpy()
        return [self.pieces.decode(greedy_ids(lp, int(n))) for lp, n in zip(ctc, encoded["frames"])]

    def __call__(self, audios: list[np.ndarray], words: list[list[str]] | None = None) -> list[Prediction]:
        """Predictions; the emphasis is judged on ``words`` when given, else on the transcript's words."""
        encoded = self.encode(audios)
        texts = self.transcripts(encoded)
        if words is None:
            words = [(t or "").split() for t in texts]
        emphasis = self.emphasis(encoded, words)
        out = []
        for i in range(len(audios)):
            probs = ({label: round(float(p), 4) for label, p in zip(self.labels, encoded["emotion"][i])}
                     if "emotion" in encoded else {})
            emotion = max(probs, key=probs.get) if probs else None
            out.append(Prediction(emotion, probs, texts[i], words[i], emphasis[i]))
        return out
