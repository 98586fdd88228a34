"""CTC tokenizer packaging: a character vocabulary from the training transcripts (scratch), or the
checkpoint's own vocabulary (pretrained), plus a report of what whitelist filtering removes."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Literal

from steps.models.resolve import is_scratch, resolve_model_path
from steps.models.wav2vec2.vocabulary import (PAD, UNK, WORD_DELIMITER, build_vocab, filter_to_vocab, normalize,
                                              vocabulary_case)

log = logging.getLogger(__name__)


def package_ctc_tokenizer(model_id: str, texts: list[str], out: Path, *, case: Literal["lower", "upper"] = "lower",
                          min_char_count: int = 1, revision: str | None = None) -> dict:
    """Write the tokenizer, the feature extractor and ``tokenizer_info.json`` to ``out``; returns that info.

    ``case`` and ``min_char_count`` shape a scratch vocabulary; a pretrained one keeps its own case."""
    from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    if is_scratch(model_id):
        vocab = build_vocab([normalize(t, case) for t in texts], min_char_count)
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1))
        tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token=UNK, pad_token=PAD,
                                         word_delimiter_token=WORD_DELIMITER, do_lower_case=False)
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                             do_normalize=True, return_attention_mask=True)
        mode = "trained-chars"
    else:
        source = resolve_model_path(model_id, revision)
        tokenizer = AutoTokenizer.from_pretrained(source)
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(source)
        vocab = tokenizer.get_vocab()
        case = vocabulary_case(vocab)
        mode = "pretrained"
    tokenizer.save_pretrained(out)
    extractor.save_pretrained(out)

    dropped: Counter = Counter()
    for text in texts:
        filter_to_vocab(normalize(text, case), vocab, dropped)
    info = {"mode": mode, "model_id": model_id, "revision": revision, "case": case, "vocab_size": len(vocab),
            "characters": sorted(c for c in vocab if len(c) == 1),
            "filtered_characters": dict(dropped.most_common()), "filtered_total": sum(dropped.values())}
    (out / "tokenizer_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2))
    log.info("CTC vocabulary (%s, %s case): %d symbols; whitelist filtering drops %d characters %s",
             mode, case, len(vocab), info["filtered_total"], dict(dropped.most_common(10)))
    return info


def load_processors(folder: Path):
    """The (tokenizer, feature extractor) that ``package_ctc_tokenizer`` or a trained model folder holds."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    return Wav2Vec2CTCTokenizer.from_pretrained(folder), Wav2Vec2FeatureExtractor.from_pretrained(folder)
