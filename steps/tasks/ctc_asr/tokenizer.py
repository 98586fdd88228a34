"""Tokenizer stage of ``ctc_asr``: a character vocabulary from the training transcripts (scratch),
or the checkpoint's own vocabulary (pretrained), plus a report of what whitelist filtering removes."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.tasks.ctc_asr.params import TokenizerParams
from steps.models.resolve import is_scratch, resolve_model_path
from steps.tasks.ctc_asr.vocabulary import (PAD, UNK, WORD_DELIMITER, build_vocab, filter_to_vocab, normalize,
                                             vocabulary_case)

log = logging.getLogger(__name__)


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    texts = [r.text for r in read_manifest(split_path(data, "train"))]
    if is_scratch(params.model_id):
        case = params.case
        normalised = [normalize(t, case) for t in texts]
        vocab = build_vocab(normalised, params.min_char_count)
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1))
        tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token=UNK, pad_token=PAD,
                                         word_delimiter_token=WORD_DELIMITER, do_lower_case=False)
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                             do_normalize=True, return_attention_mask=True)
        mode = "trained-chars"
    else:
        source = resolve_model_path(params.model_id)
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
    info = {"mode": mode, "model_id": params.model_id, "case": case, "vocab_size": len(vocab),
            "characters": sorted(c for c in vocab if len(c) == 1),
            "filtered_characters": dict(dropped.most_common()), "filtered_total": sum(dropped.values())}
    (out / "tokenizer_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2))
    log.info("CTC vocabulary (%s, %s case): %d symbols; whitelist filtering drops %d characters %s",
             mode, case, len(vocab), info["filtered_total"], dict(dropped.most_common(10)))
    return {**info, "metrics": {"mode": mode, "vocab": len(vocab), "filtered_chars": info["filtered_total"]}}
