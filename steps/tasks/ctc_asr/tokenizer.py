"""Tokenizer stage of ``ctc_asr``: a CTC character vocabulary (``steps.models.wav2vec2``), or the
checkpoint's own, plus a report of what whitelist filtering removes."""

from __future__ import annotations

from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.models.wav2vec2.tokenizer import package_ctc_tokenizer
from steps.tasks.ctc_asr.params import TokenizerParams


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    texts = [r.text for r in read_manifest(split_path(data, "train"))]
    info = package_ctc_tokenizer(params.model_id, texts, out, case=params.case, min_char_count=params.min_char_count,
                                 revision=params.revision)
    return {**info, "metrics": {"mode": info["mode"], "vocab": info["vocab_size"],
                                "filtered_chars": info["filtered_total"]}}
