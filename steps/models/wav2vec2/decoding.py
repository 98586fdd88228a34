"""CTC decoding of logits: greedy over each clip's valid frames, or beam search with a KenLM model."""

from __future__ import annotations

import numpy as np


def greedy_texts(logits: np.ndarray, frames: np.ndarray, tokenizer) -> list[str]:
    """Arg-max per frame, padding frames set to blank; the tokenizer collapses repeats and blanks."""
    ids = logits.argmax(axis=-1)
    for row, n in enumerate(frames):
        ids[row, int(n):] = tokenizer.pad_token_id
    return [t.strip() for t in tokenizer.batch_decode(ids)]


class BeamSearch:
    """pyctcdecode beam search with a KenLM model over the tokenizer's characters (both optional
    dependencies: ``pip install pyctcdecode kenlm``)."""

    def __init__(self, tokenizer, kenlm_model: str, beam_width: int = 32):
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError as exc:
            raise ImportError("kenlm_model needs pyctcdecode and kenlm: pip install pyctcdecode kenlm") from exc
        vocab = tokenizer.get_vocab()
        labels = [""] * len(vocab)
        for token, index in vocab.items():
            labels[index] = " " if token == tokenizer.word_delimiter_token else (
                "" if token in (tokenizer.pad_token, tokenizer.unk_token) else token)
        self.decoder = build_ctcdecoder(labels, kenlm_model_path=kenlm_model)
        self.beam_width = beam_width

    def __call__(self, logits: np.ndarray, frames: np.ndarray) -> list[str]:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return [self.decoder.decode(lp[: int(n)], beam_width=self.beam_width).strip() for lp, n in zip(log_probs, frames)]
