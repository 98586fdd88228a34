"""The forgetting guard: the base model at its full window on the guard set (cached), the report it feeds,
and the gate metric every Whisper task declares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steps.common.manifest import Utterance
from steps.models.whisper import guard
from steps.models.whisper.build import build_whisper
from steps.models.whisper.prompt import ENGLISH_ONLY, decoding_spec
from steps.models.whisper.tokenizer import special_tokens, train_bpe

TEXTS = [" the server went down", " the night was long", " server down again"] * 3


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny Whisper saved with Whisper's full 30 s window, as a pretrained checkpoint would be."""
    from transformers import WhisperFeatureExtractor

    tokenizer = train_bpe(TEXTS, vocab_size=200, min_frequency=1, specials=special_tokens(ENGLISH_ONLY))
    full = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    torch.manual_seed(0)
    model = build_whisper("scratch", tokenizer, full, d_model=32, layers=1, heads=2, ffn_dim=64)
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    window = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=2, return_attention_mask=True)
    return str(folder), tokenizer, window


def _clips(n: int = 3) -> tuple[list[Utterance], list[np.ndarray]]:
    rng = np.random.default_rng(1)
    records = [Utterance(id=f"g{i}", audio=f"g{i}.wav", text=TEXTS[i]) for i in range(n)]
    return records, [rng.standard_normal(16000).astype(np.float32) * 0.05 for _ in range(n)]


def test_the_base_model_is_scored_at_its_full_window_once_then_read_from_the_cache(base_model, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(guard, "CACHE", tmp_path / "baselines")
    folder, tokenizer, window = base_model  # the fine-tuned model's extractor has a 2 s window
    spec = decoding_spec(tokenizer, ENGLISH_ONLY, 4)
    records, audios = _clips()
    first = guard.base_full_window(folder, None, tokenizer, window, spec, records, audios, batch_size=2)
    assert first["cached"] is False and first["window_s"] == 30 and len(first["hypotheses"]) == 3
    assert first["wer"] >= 0 and len(list((tmp_path / "baselines").glob("*.json"))) == 1
    again = guard.base_full_window(folder, None, tokenizer, window, spec, records, audios, batch_size=2)
    assert again["cached"] is True and again["hypotheses"] == first["hypotheses"] and again["wer"] == first["wer"]
    audios[0] = audios[0] * 2  # other clips: another key, scored afresh
    other = guard.base_full_window(folder, None, tokenizer, window, spec, records, audios, batch_size=2)
    assert other["cached"] is False and len(list((tmp_path / "baselines").glob("*.json"))) == 2


def test_the_guard_report_compares_with_the_base_and_feeds_the_gate():
    records = [Utterance(id="a", audio="a.wav", text="please charge my laptop"),
               Utterance(id="b", audio="b.wav", text="the lift is broken")]
    base = {"model": "bundled:whisper-tiny.en", "window_s": 30, "wer": 0.125, "cer": 0.05, "cached": True,
            "hypotheses": ["please charge my laptop", "the lift is broke"]}
    report = guard.guard_report(records, ["please charge my lap top", "the list is broken"], base)
    assert report["wer"] == pytest.approx(3 / 8) and report["wer_increase"] == pytest.approx(3 / 8 - 0.125)
    assert report["samples"][1] == {"id": "b", "reference": "the lift is broken", "hypothesis": "the list is broken",
                                    "base_hypothesis": "the lift is broke"}
    metrics = guard.guard_metrics(report)
    assert metrics["guard_wer_increase"] == pytest.approx(0.25) and metrics["guard_base_wer"] == 0.125


@pytest.mark.parametrize("task", ["whisper_intensity", "whisper_asr"])
def test_every_whisper_task_gates_on_the_guard(task):
    from steps.tasks import get_task

    rule = get_task(task).gate.metric("guard_wer_increase")
    assert rule.direction == "lower" and rule.limit == 0.01
