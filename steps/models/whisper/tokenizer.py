"""Whisper tokenizer packaging: the checkpoint's own tokenizer, or a byte-level BPE for a model built
from config, plus a feature extractor for the encoder window.

A scratch BPE carries Whisper's special tokens (and the decoder prompt's language and task tokens),
so a Whisper built from config decodes with the same prompt and EOS as a pretrained one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from steps.models.resolve import is_scratch, resolve_model_path
from steps.models.whisper.prompt import ENGLISH_ONLY, EOT, NO_TIMESTAMPS, SOT, TRANSCRIBE, DecoderPrompt

log = logging.getLogger(__name__)

# a scratch tokenizer's first ids, in this order (models trained before the prompt was configurable rely on it)
SPECIAL_TOKENS = (EOT, SOT, "<|en|>", TRANSCRIBE, NO_TIMESTAMPS)


def special_tokens(prompt: DecoderPrompt = ENGLISH_ONLY) -> list[str]:
    """Whisper's special tokens, then any of the prompt's (e.g. ``<|hi|>``) not among them."""
    return list(dict.fromkeys((*SPECIAL_TOKENS, *prompt.tokens)))


def train_bpe(texts: list[str], vocab_size: int, min_frequency: int, specials: list[str] | None = None):
    """A byte-level BPE on ``texts``; ``specials[0]`` is EOS, BOS, UNK and padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = specials or special_tokens()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=specials[0], eos_token=specials[0],
                                   unk_token=specials[0], pad_token=specials[0],
                                   additional_special_tokens=specials[1:])


def package_tokenizer(model_id: str, texts: list[str], out: Path, *, window_seconds: float,
                      vocab_size: int = 1000, min_frequency: int = 2, prompt: DecoderPrompt = ENGLISH_ONLY,
                      revision: str | None = None) -> dict:
    """Write the tokenizer, a feature extractor for a ``window_seconds`` window and ``tokenizer_info.json``
    to ``out``; returns that info. ``texts`` are the training transcripts (scratch BPE and statistics)."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    if is_scratch(model_id):
        tokenizer = train_bpe(texts, vocab_size, min_frequency, special_tokens(prompt))
        mode = "trained-bpe"
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_id, revision))
        mode = "pretrained"
    missing = [t for t in (EOT, *prompt.tokens) if t not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"tokenizer of {model_id} lacks Whisper's special tokens {missing} (decoder prompt "
                         f"{''.join(prompt.tokens)}); a language token needs a multilingual checkpoint")
    if prompt.language and hasattr(tokenizer, "set_prefix_tokens"):
        # a multilingual Whisper tokenizer: its own encoding then starts with the same prompt (the seed's
        # processor "with language and task set"); saved in tokenizer_config.json
        tokenizer.set_prefix_tokens(language=prompt.language, task=prompt.task, predict_timestamps=False)
    tokenizer.save_pretrained(out)
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=int(round(window_seconds)),
                                        return_attention_mask=True)
    extractor.save_pretrained(out)
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    info = {"mode": mode, "model_id": model_id, "revision": revision, "vocab_size": len(tokenizer),
            "prompt": list(prompt.tokens),
            "mean_tokens_per_utt": sum(lengths) / max(len(lengths), 1), "max_tokens": max(lengths, default=0)}
    (out / "tokenizer_info.json").write_text(json.dumps(info, indent=2))
    log.info("tokenizer (%s): %d tokens, %.1f tokens per utterance", mode, len(tokenizer), info["mean_tokens_per_utt"])
    return info


def load_processors(folder: Path):
    """The (tokenizer, feature extractor) that ``package_tokenizer`` or a trained model folder holds."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    return AutoTokenizer.from_pretrained(folder), WhisperFeatureExtractor.from_pretrained(folder)
