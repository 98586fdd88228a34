"""ctc_asr building blocks: vocabulary and whitelist filtering, collation, greedy decoding, collapse check."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from steps.common.manifest import Utterance, write_manifest
from steps.tasks.ctc_asr.data import CTCCollator
from steps.tasks.ctc_asr.params import TokenizerParams
from steps.tasks.ctc_asr.tokenizer import build_tokenizer
from steps.common.metrics import ctc_collapse as check_collapse
from steps.models.wav2vec2.decoding import greedy_texts
from steps.models.wav2vec2.vocabulary import build_vocab, filter_to_vocab, normalize, vocabulary_case


def test_normalise_is_case_aware_and_drops_punctuation():
    assert normalize("  Don't  STOP, now!  ", "lower") == "don't stop now"
    assert normalize("Don't stop.", "upper") == "DON'T STOP"


def test_whitelist_filtering_counts_what_it_drops():
    vocab = build_vocab(["abc d", "cab"])
    assert vocab["[PAD]"] == 0 and "|" in vocab and vocab_case_is_lower(vocab)
    dropped: Counter = Counter()
    assert filter_to_vocab("abé cxd", vocab, dropped) == "ab cd"
    assert dropped == Counter({"é": 1, "x": 1})


def vocab_case_is_lower(vocab):
    return vocabulary_case(vocab) == "lower"


def test_tokenizer_stage_builds_a_vocabulary_and_reports_filtering(tmp_path):
    data = tmp_path / "data"
    records = [Utterance(id=str(i), audio=f"a{i}.wav", text=t, split="train")
               for i, t in enumerate(["Hello world.", "Café au lait", "hello again"])]
    write_manifest(data / "train.jsonl", records)
    (tmp_path / "tok").mkdir()
    report = build_tokenizer(TokenizerParams(model_id="scratch", case="lower", min_char_count=2), data, tmp_path / "tok")
    vocab = json.loads((tmp_path / "tok/vocab.json").read_text())
    assert {"h", "e", "l", "o"} <= set(vocab) and "é" not in vocab
    assert report["filtered_characters"]["é"] == 1 and report["filtered_total"] >= 1
    from transformers import Wav2Vec2CTCTokenizer

    tok = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.decode(tok("hello all").input_ids, group_tokens=False) == "hello all"


def test_collator_pads_audio_and_labels():
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    batch = CTCCollator(fe, use_attention_mask=True)([
        {"audio": np.ones(1600, np.float32) * 0.1, "labels": [3, 4, 5]},
        {"audio": np.ones(800, np.float32) * 0.1, "labels": [6]},
    ])
    assert batch["input_values"].shape == (2, 1600)
    assert batch["attention_mask"][1].sum() == 800
    assert batch["labels"].tolist() == [[3, 4, 5], [6, -100, -100]]


def test_greedy_decoding_ignores_padding_frames():
    class Tok:
        pad_token_id = 0

        def batch_decode(self, ids):
            names = {0: "", 1: "a", 2: " ", 3: "b"}
            out = []
            for row in ids:
                collapsed = [t for i, t in enumerate(row) if i == 0 or t != row[i - 1]]
                out.append("".join(names[t] for t in collapsed if t != 0))
            return out

    logits = np.zeros((1, 6, 4), np.float32)
    for frame, token in enumerate([1, 1, 0, 3, 3, 1]):
        logits[0, frame, token] = 1
    assert greedy_texts(logits.copy(), np.array([6]), Tok()) == ["aba"]
    assert greedy_texts(logits.copy(), np.array([5]), Tok()) == ["ab"]  # the last frame is padding


@pytest.mark.parametrize("texts,collapsed", [(["", "", "", ""], True), (["", "a b", "", ""], False)])
def test_collapse_check(texts, collapsed):
    result = check_collapse(texts, ["a b", "a b", "c", "d"], blank_ratio=0.95)
    assert result["collapsed"] is collapsed
    assert result["empty_share"] == pytest.approx(sum(not t for t in texts) / 4)
