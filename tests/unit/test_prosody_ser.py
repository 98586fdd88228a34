"""prosody_ser: the SentencePiece contract, the three heads and their loss, the speaker-held-out split and the
seed's own manifest format in prepare, the metrics and the acoustic baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from steps.common.manifest import Utterance, read_manifest
from steps.prepare import PrepareParams, prepare
from steps.tasks.prosody_ser.baselines import FEATURES, acoustic_statistics
from steps.tasks.prosody_ser.data import Collator, ProsodyDataset, pad_words
from steps.tasks.prosody_ser.metrics import emotion_scores, emphasis_scores
from steps.tasks.prosody_ser.model import IGNORE, ProsodySERConfig, ProsodySERModel, ctc_loss, word_positions
from steps.tasks.prosody_ser.params import TokenizerParams, TrainParams
from steps.tasks.prosody_ser.tokenizer import BLANK, Pieces, build_tokenizer, words_of
from tests.conftest import tone

SENTENCES = ["the red kettle is on the table", "anna will visit paris today", "we are meeting carl soon",
             "the blue bottle fell off the shelf", "peter sold his old bicycle"]


def _records(n: int = 10) -> list[dict]:
    rows = []
    for i in range(n):
        words = SENTENCES[i % len(SENTENCES)].split()
        rows.append({"id": f"u{i}", "audio": f"audio/u{i}.wav", "text": " ".join(words).capitalize() + ".",
                     "words": words, "emphasis": [int(j == i % len(words)) for j in range(len(words))],
                     "emotion": ["neutral", "happy", "sad", "angry"][i % 4], "speaker": f"spk{i % 5}"})
    return rows


def _write_split(folder: Path, rows: list[dict], name: str = "train") -> Path:
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        sf.write(folder / row["audio"], tone(1.0 + 0.1 * (i % 3), freq=120 + 15 * i, seed=i, dbfs=-25), 16000)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    data = tmp_path / "data"
    _write_split(data, _records())
    out = tmp_path / "tok"
    out.mkdir()
    build_tokenizer(TokenizerParams(vocab_size=60, window_seconds=2), data, out)
    return out


def test_sentencepiece_has_the_seeds_special_ids_and_a_blank_no_text_produces(tokenizer_dir):
    pieces = Pieces(tokenizer_dir)
    assert [pieces.sp.id_to_piece(i) for i in range(5)] == ["<unk>", "<s>", "</s>", "<pad>", "<blank>"]
    ids = pieces.encode(["the", "red", "kettle"])
    assert BLANK not in ids and min(ids) > BLANK
    assert pieces.decode(ids + [BLANK, 3]) == "the red kettle"
    info = json.loads((tokenizer_dir / "tokenizer_info.json").read_text())
    assert info["specials"] == {"unk": 0, "bos": 1, "eos": 2, "pad": 3, "blank": 4}


def test_an_existing_tokenizer_is_loaded_not_retrained(tokenizer_dir, tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "loaded"
    out.mkdir()
    params = TokenizerParams(retrain_tokenizer=False, tokenizer_path=str(tokenizer_dir / "spm.model"), window_seconds=2)
    assert build_tokenizer(params, data, out)["mode"] == "loaded"
    assert (out / "spm.model").read_bytes() == (tokenizer_dir / "spm.model").read_bytes()
    with pytest.raises(ValueError, match="tokenizer_path"):
        TokenizerParams(retrain_tokenizer=False)


def test_words_come_from_the_manifest_or_the_transcript():
    with_words = Utterance(id="a", audio="a.wav", text="ignored", extra={"words": ["Hello", "World"]})
    assert words_of(with_words, lowercase=True) == ["hello", "world"]
    assert words_of(Utterance(id="b", audio="b.wav", text="Two words"), lowercase=False) == ["Two", "words"]


def _tiny_model(tokenizer_dir: Path, **config) -> ProsodySERModel:
    from transformers import WhisperConfig

    backbone = WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=1, encoder_attention_heads=2,
                             encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                             max_source_positions=100).to_dict()
    torch.manual_seed(0)
    return ProsodySERModel(ProsodySERConfig(backbone=backbone, emotion_labels=["angry", "happy", "neutral", "sad"],
                                            vocab_size=len(Pieces(tokenizer_dir)), head_dim=32, dropout=0.0,
                                            **config))


def _batch(tokenizer_dir: Path, tmp_path: Path):
    from transformers import WhisperFeatureExtractor

    data = tmp_path / "data"
    records = read_manifest(data / "train.jsonl")[:4]
    pieces = Pieces(tokenizer_dir)
    dataset = ProsodyDataset(records, data / "train.jsonl", pieces, ["angry", "happy", "neutral", "sad"])
    return Collator(WhisperFeatureExtractor.from_pretrained(tokenizer_dir))([dataset[i] for i in range(4)])


def test_every_head_trains_and_each_can_be_switched_off(tokenizer_dir, tmp_path):
    batch = _batch(tokenizer_dir, tmp_path)
    full = _tiny_model(tokenizer_dir)
    out = full(**batch)
    assert out["emotion_logits"].shape == (4, 4)
    assert out["ctc_logits"].shape[:2] == (4, 100)
    assert out["emphasis_logits"].shape == batch["word_mask"].shape
    out["loss"].backward()
    for head in (full.emotion_head, full.ctc_head, full.emphasis_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    only_ser = _tiny_model(tokenizer_dir, use_asr=False, use_prosody=False)
    out = only_ser(**batch)
    assert set(out) == {"emotion_logits", "loss", "frames"}
    out["loss"].backward()
    assert all(p.grad is None for p in only_ser.ctc_head.parameters())
    assert all(p.grad is None for p in only_ser.emphasis_head.parameters())


def test_the_ctc_head_may_have_a_hidden_layer_and_saves_and_loads_with_it(tokenizer_dir, tmp_path):
    batch = _batch(tokenizer_dir, tmp_path)
    linear, deeper = _tiny_model(tokenizer_dir), _tiny_model(tokenizer_dir, ctc_hidden_dim=48)
    assert [m.out_features for m in linear.ctc_head if isinstance(m, torch.nn.Linear)] == [len(Pieces(tokenizer_dir))]
    assert [m.out_features for m in deeper.ctc_head if isinstance(m, torch.nn.Linear)] == \
        [48, len(Pieces(tokenizer_dir))]
    deeper(**batch)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deeper.ctc_head.parameters())
    deeper.save_pretrained(tmp_path / "saved")
    loaded = ProsodySERModel.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.ctc_hidden_dim == 48
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch)["ctc_logits"], deeper.eval()(**batch)["ctc_logits"])


def test_the_loss_is_the_alpha_weighted_sum_of_the_heads(tokenizer_dir, tmp_path):
    batch = _batch(tokenizer_dir, tmp_path)
    alone = {}
    for head in ("ser", "asr", "prosody"):
        model = _tiny_model(tokenizer_dir, use_ser=head == "ser", use_asr=head == "asr",
                            use_prosody=head == "prosody", alpha_ser=1.0, alpha_asr=1.0, alpha_prosody=1.0).eval()
        with torch.no_grad():
            alone[head] = float(model(**batch)["loss"])
    weighted = _tiny_model(tokenizer_dir, alpha_ser=1.0, alpha_asr=0.1, alpha_prosody=0.5).eval()
    expected = alone["ser"] + 0.1 * alone["asr"] + 0.5 * alone["prosody"]
    with torch.no_grad():
        assert float(weighted(**batch)["loss"]) == pytest.approx(expected, rel=1e-4)


def test_ctc_regularisers_change_the_loss_in_their_direction():
    torch.manual_seed(0)
    logits = torch.randn(2, 30, 12)
    logits[..., BLANK] += 3.0  # mostly blank
    mask = torch.ones(2, 30, dtype=torch.bool)
    labels = torch.tensor([[5, 6, 7], [8, 9, IGNORE]])
    plain = ctc_loss(logits, mask, labels, ProsodySERConfig())
    assert float(ctc_loss(logits, mask, labels, ProsodySERConfig(ctc_entropy_weight=0.5))) < float(plain)
    assert float(ctc_loss(logits, mask, labels, ProsodySERConfig(ctc_blank_penalty=10.0, ctc_blank_threshold=0.3))) \
        > float(plain)
    assert float(ctc_loss(logits, mask, labels, ProsodySERConfig(ctc_blank_penalty=10.0, ctc_blank_threshold=1.0))) \
        == pytest.approx(float(plain))
    assert float(ctc_loss(logits, mask, labels, ProsodySERConfig(ctc_confidence_penalty=1.0))) > float(plain)
    assert float(ctc_loss(logits, mask, labels, ProsodySERConfig(ctc_label_smoothing=0.2))) != pytest.approx(float(plain))


def test_word_positions_cover_the_sentence_in_order():
    places = word_positions(["a", "longer", "sentence"])
    centres = [c for c, _ in places]
    assert centres == sorted(centres) and 0 < centres[0] < centres[-1] < 1
    assert sum(share for _, share in places) == pytest.approx(1.0)
    padded = pad_words([([[5], [6, 7]], places[:2]), ([[8]], places[:1])])
    assert padded["word_pieces"].shape == (2, 2, 2) and padded["word_mask"].tolist() == [[True, True], [True, False]]


def test_a_waveform_encoder_backbone_trains_saves_and_loads(tmp_path):
    """The seed's other backbones (XLS-R, MMS, Wav2Vec2-BERT) come by hub id; offline, a small wav2vec2 from
    config takes the same path: waveform in, frames from the clip's length, the three heads on top."""
    from steps.tasks.prosody_ser.backbone import SCRATCH_WAV2VEC2, Features, feature_extractor, scratch_config
    from steps.tasks.prosody_ser.inference import Predictor

    data = tmp_path / "data"
    _write_split(data, _records(4))
    tok = tmp_path / "tok"
    tok.mkdir()
    build_tokenizer(TokenizerParams(model_id=SCRATCH_WAV2VEC2, vocab_size=60), data, tok)
    extractor = feature_extractor(SCRATCH_WAV2VEC2, None, 6)
    assert not Features(extractor).whisper
    backbone = scratch_config(SCRATCH_WAV2VEC2, 32, 1, 2, 64, 0)
    model = ProsodySERModel(ProsodySERConfig(backbone=backbone, emotion_labels=["a", "b"], vocab_size=len(Pieces(tok)),
                                             head_dim=16))
    records = read_manifest(data / "train.jsonl")
    dataset = ProsodyDataset(records, data / "train.jsonl", Pieces(tok), ["a", "b"])
    for record in records:
        record.extra["emotion"] = "a"
    batch = Collator(extractor)([dataset[i] for i in range(4)])
    out = model(**batch)
    frames = out["frames"].tolist()
    assert frames[0] == frames[3] < frames[1] < frames[2]  # 1.0, 1.1, 1.2, 1.0 s: frames follow each clip's length
    out["loss"].backward()
    model.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")
    for name in ("spm.model", "ctc_text.json"):
        (tmp_path / "model" / name).write_bytes((tok / name).read_bytes())
    predictor = Predictor.from_dir(tmp_path / "model")
    prediction = predictor([tone(0.8, seed=3)], [["the", "red"]])[0]
    assert set(prediction.probabilities) == {"a", "b"} and len(prediction.emphasis) == 2


def test_backbone_and_heads_get_their_own_learning_rates(tokenizer_dir):
    model = _tiny_model(tokenizer_dir, backbone_lr=1e-5, head_lr=5e-4)
    backbone, heads = model.optimizer_groups(0.0)
    assert backbone["lr"] == 1e-5 and heads["lr"] == 5e-4
    trainable = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)  # not the fixed positions
    assert sum(p.numel() for p in backbone["params"]) == trainable
    with pytest.raises(ValueError, match="every head is switched off"):
        TrainParams(use_alpha_ser=False, use_alpha_asr=False, use_alpha_prosody=False)


def test_emotion_and_emphasis_scores():
    scores = emotion_scores(["a", "a", "a", "b"], ["a", "a", "a", "a"], ["a", "b"])
    assert scores["accuracy"] == 0.75 and scores["uar"] == 0.5 and scores["confusion"] == [[3, 0], [1, 0]]
    marks = [[0, 1, 0], [1, IGNORE]]
    perfect = emphasis_scores(marks, [[0.1, 0.9, 0.2], [0.8, 0.9]])
    assert perfect["f1"] == 1.0 and perfect["words"] == 4 and perfect["emphasised"] == 2
    assert emphasis_scores(marks, [[0.0] * 3, [0.0] * 2])["f1"] == 0.0


def test_acoustic_statistics_are_finite_even_for_silence():
    voice = acoustic_statistics(tone(1.5, freq=200, seed=1), words=4)
    silence = acoustic_statistics(np.zeros(800, dtype=np.float32), words=1)
    assert voice.shape == silence.shape == (len(FEATURES),)
    assert np.isfinite(voice).all() and np.isfinite(silence).all()
    higher = acoustic_statistics(tone(1.5, freq=300, seed=1), words=4)
    assert higher[0] > voice[0]  # f0 median in semitones follows the pitch


def test_prepare_holds_speakers_out_whatever_split_the_source_gives(tmp_path):
    rows = _records(10)
    for row in rows:
        row["split"] = "train"
    manifest = _write_split(tmp_path / "corpus", rows, "manifest")
    no_speaker = dict(rows[0], id="nobody", speaker=None)
    with open(manifest, "a") as handle:
        handle.write(json.dumps(no_speaker) + "\n")
    params = PrepareParams(source=str(manifest), speaker_splits={"validation": ["spk1"], "test": ["spk3", "spk4"]})
    report = prepare(params, None, tmp_path / "data", tmp_path / "rejects", task="prosody_ser")
    assert report["speakers_by_split"] == {"train": ["spk0", "spk2"], "validation": ["spk1"],
                                           "test": ["spk3", "spk4"]}
    rejects = [json.loads(line) for line in (tmp_path / "rejects/rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == ["nobody"] and "speaker" in rejects[0]["reason"]
    with pytest.raises(ValueError, match="both"):
        PrepareParams(speaker_splits={"validation": ["a"], "test": ["a"]})


def test_prepare_reads_the_seeds_own_manifests_without_conversion(tmp_path):
    audio_root = tmp_path / "AUDIO"
    seed_rows = {}
    for split, ids in (("train", range(0, 6)), ("validation", range(6, 8)), ("test", range(8, 10))):
        seed_rows[split] = []
        for i in ids:
            words = SENTENCES[i % len(SENTENCES)].split()
            (audio_root / "clips").mkdir(parents=True, exist_ok=True)
            sf.write(audio_root / "clips" / f"c{i}.wav", tone(1.0, seed=i, dbfs=-25), 16000)
            seed_rows[split].append({"audio_filepath": f"clips/c{i}.wav", "words": words,
                                     "prosody_annotations": [int(j == 1) for j in range(len(words))], "emotion": i % 4})
    files = {}
    for split, rows in seed_rows.items():
        files[split] = tmp_path / "json" / f"ser_{split}.jsonl"
        files[split].parent.mkdir(exist_ok=True)
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    escaping = tmp_path / "json" / "escape.jsonl"
    escaping.write_text(json.dumps({"audio_filepath": "../json/ser_train.jsonl", "words": ["a"],
                                    "prosody_annotations": [0], "emotion": 1}) + "\n")
    params = PrepareParams(split_manifests={k: str(v) for k, v in files.items()}, audio_root=str(audio_root))
    report = prepare(params, None, tmp_path / "data", tmp_path / "rejects", task="prosody_ser")
    assert report["counts"] == {"train": 6, "validation": 2, "test": 2} and report["rejected"] == 0
    first = read_manifest(tmp_path / "data/train.jsonl")[0]
    assert first.text == "the red kettle is on the table" and first.extra["emphasis"][1] == 1
    assert first.extra["emotion"] == 0 and "prosody_annotations" not in first.extra
    bad = PrepareParams(split_manifests={"train": str(escaping)}, audio_root=str(audio_root))
    with pytest.raises(ValueError, match="no usable training utterances"):
        prepare(bad, None, tmp_path / "d2", tmp_path / "r2", task="prosody_ser")
    assert "escapes" in (tmp_path / "r2/rejects.jsonl").read_text()
