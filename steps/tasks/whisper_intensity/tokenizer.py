"""Tokenizer stage of ``whisper_intensity``.

Pretrained start: package the checkpoint's own tokenizer and a feature extractor for the window.
Scratch start: train a byte-level BPE on the training transcripts (``tokenizers``) and wrap it with
Whisper's special tokens, so a Whisper built from config decodes with the same prefix and EOS.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.tasks.whisper_intensity.params import TokenizerParams
from steps.models.resolve import is_scratch, resolve_model_path

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    texts = [" " + r.text for r in read_manifest(split_path(data, "train"))]
    if is_scratch(params.model_id):
        tokenizer = train_bpe(texts, params.vocab_size, params.min_frequency)
        mode = "trained-bpe"
    else:
        source = resolve_model_path(params.model_id)
        tokenizer = AutoTokenizer.from_pretrained(source)
        mode = "pretrained"
    vocab = tokenizer.get_vocab()
    missing = [t for t in (SPECIAL_TOKENS[0], SPECIAL_TOKENS[1], SPECIAL_TOKENS[-1]) if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer of {params.model_id} lacks Whisper's special tokens {missing}")
    tokenizer.save_pretrained(out)
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=int(round(params.window_seconds)),
                                        return_attention_mask=True)
    extractor.save_pretrained(out)
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    info = {"mode": mode, "model_id": params.model_id, "vocab_size": len(tokenizer),
            "mean_tokens_per_utt": sum(lengths) / max(len(lengths), 1), "max_tokens": max(lengths, default=0)}
    (out / "tokenizer_info.json").write_text(json.dumps(info, indent=2))
    log.info("tokenizer (%s): %d tokens, %.1f tokens per utterance", mode, len(tokenizer), info["mean_tokens_per_utt"])
    return {**info, "metrics": {"mode": mode, "vocab": len(tokenizer), "tokens/utt": round(info["mean_tokens_per_utt"], 1)}}


def train_bpe(texts: list[str], vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
