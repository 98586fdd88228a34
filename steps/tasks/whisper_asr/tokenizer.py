"""Tokenizer stage of ``whisper_asr``: the multilingual tokenizer with its language and task set, and a
feature extractor for the encoder window; together, the seed's ``WhisperProcessor`` (one folder)."""

from __future__ import annotations

from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.models.whisper.prompt import DecoderPrompt
from steps.models.whisper.tokenizer import package_tokenizer
from steps.tasks.whisper_asr.params import TokenizerParams


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    prompt = DecoderPrompt(language=params.language, task=params.whisper_task)
    texts = [" " + r.text for r in read_manifest(split_path(data, "train"))]
    info = package_tokenizer(params.model_id, texts, out, window_seconds=params.window_seconds, prompt=prompt,
                             vocab_size=params.vocab_size, min_frequency=params.min_frequency, revision=params.revision)
    return {**info, "metrics": {"mode": info["mode"], "prompt": "".join(prompt.tokens), "window_s": params.window_seconds,
                                "tokens/utt": round(info["mean_tokens_per_utt"], 1), "max_tokens": info["max_tokens"]}}
