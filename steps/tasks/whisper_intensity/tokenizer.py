"""Tokenizer stage of ``whisper_intensity``: an English-only Whisper tokenizer (``steps.models.whisper``).

Pretrained start: package the checkpoint's own tokenizer and a feature extractor for the window.
Scratch start: train a byte-level BPE on the training transcripts, with Whisper's special tokens.
"""

from __future__ import annotations

from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.models.whisper.tokenizer import package_tokenizer
from steps.tasks.whisper_intensity.params import TokenizerParams


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    texts = [" " + r.text for r in read_manifest(split_path(data, "train"))]
    info = package_tokenizer(params.model_id, texts, out, window_seconds=params.window_seconds,
                             vocab_size=params.vocab_size, min_frequency=params.min_frequency,
                             revision=params.revision)
    return {**info, "metrics": {"mode": info["mode"], "vocab": info["vocab_size"],
                                "tokens/utt": round(info["mean_tokens_per_utt"], 1)}}
