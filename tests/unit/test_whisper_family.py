"""steps.models.whisper: the decoder prompt (English-only and forced language/task), labels, tokenizer
packaging, greedy decoding with and without the key/value cache, and ONNX parity, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steps.models.whisper.build import build_whisper
from steps.models.whisper.decoding import greedy_decode
from steps.models.whisper.prompt import (ENGLISH_ONLY, EOT, NO_TIMESTAMPS, SOT, DecoderPrompt, TranscriptLabels,
                                         decoding_spec, token_ids)
from steps.models.whisper.tokenizer import SPECIAL_TOKENS, package_tokenizer, special_tokens, train_bpe

HINDI = DecoderPrompt(language="hi", task="transcribe")
TEXTS = [" the server went down", " नमस्ते दुनिया", " the night was long", " server down again"] * 3


@pytest.fixture(scope="module")
def hindi_tokenizer():
    return train_bpe(TEXTS, vocab_size=300, min_frequency=1, specials=special_tokens(HINDI))


def test_prompt_tokens():
    assert ENGLISH_ONLY.tokens == (SOT, NO_TIMESTAMPS)
    assert HINDI.tokens == (SOT, "<|hi|>", "<|transcribe|>", NO_TIMESTAMPS)
    assert DecoderPrompt(language="<|hi|>", task="transcribe") == HINDI
    assert DecoderPrompt(task="translate").tokens == (SOT, "<|translate|>", NO_TIMESTAMPS)
    with pytest.raises(ValueError, match="transcribe"):
        DecoderPrompt(language="hi", task="summarise")
    with pytest.raises(ValueError, match="language code"):
        DecoderPrompt(language="<||>")


def test_scratch_tokenizer_keeps_the_english_ids_and_adds_the_language(hindi_tokenizer):
    assert special_tokens(HINDI) == [*SPECIAL_TOKENS, "<|hi|>"]
    vocab = hindi_tokenizer.get_vocab()
    assert [vocab[t] for t in special_tokens(HINDI)] == [0, 1, 2, 3, 4, 5]


def test_multilingual_decoding_spec_forces_language_and_task(hindi_tokenizer):
    sot, hi, transcribe, nots, eos = token_ids(hindi_tokenizer, (SOT, "<|hi|>", "<|transcribe|>", NO_TIMESTAMPS, EOT))
    spec = decoding_spec(hindi_tokenizer, HINDI, max_new_tokens=7)
    assert spec.prefix == (sot, hi, transcribe, nots) and spec.eos == eos and spec.max_new_tokens == 7
    assert eos not in spec.suppress and {sot, hi, transcribe, nots} <= set(spec.suppress)
    assert decoding_spec(hindi_tokenizer).prefix == (sot, nots)  # English-only: today's prompt


def test_labels_follow_the_prompt(hindi_tokenizer):
    hi, transcribe, nots, eos = token_ids(hindi_tokenizer, ("<|hi|>", "<|transcribe|>", NO_TIMESTAMPS, EOT))
    text_ids = hindi_tokenizer(" नमस्ते दुनिया", add_special_tokens=False).input_ids
    assert TranscriptLabels(hindi_tokenizer, HINDI)("नमस्ते दुनिया ") == [hi, transcribe, nots, *text_ids, eos]
    assert TranscriptLabels(hindi_tokenizer)("नमस्ते दुनिया") == [nots, *text_ids, eos]


def test_a_prompt_the_tokenizer_lacks_is_an_error():
    english = train_bpe(TEXTS, vocab_size=300, min_frequency=1)
    with pytest.raises(ValueError, match=r"<\|hi\|>"):
        decoding_spec(english, HINDI)


def test_package_tokenizer_for_a_multilingual_prompt(tmp_path):
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    info = package_tokenizer("scratch", TEXTS, tmp_path, window_seconds=2, vocab_size=300, min_frequency=1,
                             prompt=HINDI)
    assert info["prompt"] == list(HINDI.tokens) and info["mode"] == "trained-bpe"
    assert json.loads((tmp_path / "tokenizer_info.json").read_text())["vocab_size"] == info["vocab_size"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert decoding_spec(tokenizer, HINDI).prefix == HINDI.ids(tokenizer)
    assert WhisperFeatureExtractor.from_pretrained(tmp_path).chunk_length == 2


@pytest.fixture(scope="module")
def tiny_transcriber(hindi_tokenizer):
    from transformers import WhisperFeatureExtractor

    from steps.models.whisper.transcriber import WhisperTranscriber

    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=1, return_attention_mask=True)
    torch.manual_seed(0)
    model = build_whisper("scratch", hindi_tokenizer, extractor, d_model=32, layers=1, heads=2, ffn_dim=64)
    assert model.config.max_source_positions == 50
    return WhisperTranscriber(model, hindi_tokenizer, extractor, decoding_spec(hindi_tokenizer, HINDI, 6))


def _audio(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(8000 + 2000 * i).astype(np.float32) * 0.1 for i in range(n)]


def test_greedy_decoding_forces_the_prompt_and_the_cache_changes_nothing(tiny_transcriber):
    hidden, mask = tiny_transcriber.encode(_audio())
    assert hidden.shape[:2] == (2, 50) and mask.shape == (2, 100)
    seen = []

    def spy(ids, states):
        seen.append(ids.copy())
        return tiny_transcriber.step(ids, states)

    uncached = greedy_decode(spy, hidden, tiny_transcriber.spec)
    assert seen[0].tolist() == [list(tiny_transcriber.spec.prefix)] * 2
    assert greedy_decode(tiny_transcriber.cached_step(), hidden, tiny_transcriber.spec) == uncached
    assert tiny_transcriber(_audio()) == tiny_transcriber(_audio(), cached=False)


def test_onnx_export_gives_identical_transcripts(tiny_transcriber, tmp_path):
    pytest.importorskip("onnxruntime")
    from steps.models.whisper.onnx import EncoderStep, OnnxWhisper, export_decoder, export_encoder

    model = tiny_transcriber.model
    hidden = export_encoder(EncoderStep(model), model.config, tmp_path / "encoder.onnx", opset=18)
    export_decoder(model, tiny_transcriber.spec.prefix, hidden, tmp_path / "decoder.onnx", opset=18)
    assert not model.training  # the exporter must not leave dropout on
    onnx = OnnxWhisper(tmp_path / "encoder.onnx", tmp_path / "decoder.onnx", tiny_transcriber)
    texts, extra = onnx(_audio())
    assert extra == [] and texts == tiny_transcriber(_audio(), cached=False)



def test_ctranslate2_runtime_gives_the_pytorch_transcripts(tmp_path, monkeypatch):
    """The serving runtime ``ctranslate2`` on the bundled pretrained tiny.en and sample-corpus speech: converted
    with CTranslate2's own converter (once, cached by the weights' digest), encoder states within float noise,
    identical greedy transcripts under the forced prompt (float32)."""
    pytest.importorskip("ctranslate2")
    from steps.common.audio import load_audio
    from steps.models.whisper import ct2 as bundled
    from steps.models.whisper import ctranslate
    from steps.models.whisper.ctranslate import Runtime
    from steps.models.whisper.transcriber import WhisperTranscriber

    monkeypatch.setattr(ctranslate, "CACHE", tmp_path / "cache")
    model_dir = bundled.bundled_whisper_tiny_en()
    corpus = Path(__file__).resolve().parents[2] / "steps" / "corpus" / "sample"
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()[:4]]
    audios = [load_audio(corpus / row["audio"]) for row in rows]
    reference = WhisperTranscriber.from_dir(model_dir)
    fast = WhisperTranscriber.from_dir(model_dir, runtime=Runtime("ctranslate2", "float32"))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [ctranslate.model_digest(model_dir)]
    assert torch.allclose(fast.encode(audios)[0], reference.encode(audios)[0], atol=1e-3)
    texts = fast(audios)
    assert texts == reference(audios) and all(texts)


def test_ctranslate2_refuses_a_vocabulary_with_special_tokens_first(tiny_transcriber, tmp_path):
    """CTranslate2 reads every id after <|notimestamps|> as a timestamp: a scratch BPE (specials at 0..5)
    would decode to nonsense, so it is refused with the way out."""
    from steps.models.whisper.ctranslate import Runtime
    from steps.models.whisper.transcriber import WhisperTranscriber

    tiny_transcriber.model.save_pretrained(tmp_path)
    tiny_transcriber.tokenizer.save_pretrained(tmp_path)
    tiny_transcriber.features.extractor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--runtime torch"):
        WhisperTranscriber.from_dir(tmp_path, runtime=Runtime("ctranslate2"))


def test_runtime_is_a_configuration_value(monkeypatch):
    from steps.models.whisper.ctranslate import Runtime, runtime_from_environment

    monkeypatch.delenv("SPEECHOPS_RUNTIME", raising=False)
    monkeypatch.delenv("SPEECHOPS_CT2_COMPUTE_TYPE", raising=False)
    assert runtime_from_environment() == Runtime("torch", "float32")
    monkeypatch.setenv("SPEECHOPS_RUNTIME", "ctranslate2")
    monkeypatch.setenv("SPEECHOPS_CT2_COMPUTE_TYPE", "int8")
    assert runtime_from_environment() == Runtime("ctranslate2", "int8")
    monkeypatch.setenv("SPEECHOPS_RUNTIME", "tensorrt")
    with pytest.raises(SystemExit, match="torch, ctranslate2"):
        runtime_from_environment()
