"""The prepare stage on good and broken inputs: every broken file is rejected with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from steps.common.manifest import read_manifest
from steps.prepare import PrepareParams, prepare
from tests.conftest import tone


def _rejects(path: Path) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in map(json.loads, (path / "rejects.jsonl").read_text().splitlines())}


def test_prepare_labels_and_splits(make_corpus, tmp_path):
    manifest = make_corpus(12)
    report = prepare(PrepareParams(source=str(manifest), min_duration=0.5, max_duration=5), None,
                     tmp_path / "data", tmp_path / "rejects")
    train = read_manifest(tmp_path / "data" / "train.jsonl")
    assert report["counts"] == {"train": 8, "validation": 2, "test": 2}
    assert report["rejected"] == 0
    levels = {r.id: r.rms_dbfs for r in train}
    # u002 was written at -35 dBFS, u005 at -27.5 dBFS (tone() scales to an exact RMS level)
    assert abs(levels["u002"] - (-35.0)) < 0.2
    assert abs(levels["u005"] - (-27.5)) < 0.2
    assert all(r.intensity == r.rms_dbfs and -70 <= r.lufs <= 0 for r in train)
    assert all((tmp_path / "data" / r.audio).is_file() for r in train)


def test_prepare_lufs_target(make_corpus, tmp_path):
    manifest = make_corpus(6)
    prepare(PrepareParams(source=str(manifest), intensity="lufs"), None, tmp_path / "d", tmp_path / "r")
    recs = read_manifest(tmp_path / "d" / "train.jsonl")
    assert recs and all(r.intensity == r.lufs and r.intensity != r.rms_dbfs for r in recs)


def test_broken_files_are_rejected_with_reasons(tmp_path):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    good = tone(1.5, dbfs=-20)
    sf.write(root / "audio/good.wav", good, 16000)
    sf.write(root / "audio/good2.wav", good, 16000)
    sf.write(root / "audio/stereo8k.wav", tone(1.5, rate=8000, channels=2, dbfs=-25), 8000)
    full = (root / "audio/good.wav").read_bytes()
    (root / "audio/truncated.wav").write_bytes(full[:30])
    (root / "audio/empty.wav").write_bytes(b"")
    (root / "audio/random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    nan = good.copy()
    nan[100] = np.nan
    sf.write(root / "audio/nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "audio/short.wav", tone(0.1), 16000)
    (tmp_path / "secret.wav").write_bytes(full)
    rows = [
        {"id": "good", "audio": "audio/good.wav", "text": "hello there", "split": "train"},
        {"id": "good2", "audio": "audio/good2.wav", "text": "hello again", "split": "test"},
        {"id": "stereo8k", "audio": "audio/stereo8k.wav", "text": "resampled and downmixed", "split": "train"},
        {"id": "truncated", "audio": "audio/truncated.wav", "text": "x"},
        {"id": "empty", "audio": "audio/empty.wav", "text": "x"},
        {"id": "random", "audio": "audio/random.wav", "text": "x"},
        {"id": "nan", "audio": "audio/nan.wav", "text": "x"},
        {"id": "short", "audio": "audio/short.wav", "text": "x"},
        {"id": "escape", "audio": "../secret.wav", "text": "x"},
        {"id": "absolute", "audio": str(tmp_path / "secret.wav"), "text": "x"},
        {"id": "missing", "audio": "audio/nope.wav", "text": "x"},
        {"id": "notext", "audio": "audio/good.wav", "text": "  "},
        {"id": "good", "audio": "audio/good.wav", "text": "duplicate id"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = prepare(PrepareParams(source=str(root)), None, tmp_path / "data", tmp_path / "rejects")

    rejects = _rejects(tmp_path / "rejects")
    assert set(rejects) == {"truncated", "empty", "random", "nan", "short", "escape", "absolute", "missing",
                            "notext", "good"}
    assert "NaN" in rejects["nan"]
    assert "escapes the data root" in rejects["escape"] and "escapes" in rejects["absolute"]
    assert "too short" in rejects["short"]
    assert "empty transcript" == rejects["notext"]
    assert "duplicate" in rejects["good"]
    assert report["rejected"] == 10
    kept = {r.id: r for r in read_manifest(tmp_path / "data" / "train.jsonl")}
    assert set(kept) == {"good", "stereo8k"}
    stereo = kept["stereo8k"]
    audio, rate = sf.read(tmp_path / "data" / stereo.audio)
    assert rate == 16000 and audio.ndim == 1
    assert stereo.extra["source_sample_rate"] == 8000 and stereo.extra["source_channels"] == 2
    assert abs(stereo.duration - 1.5) < 0.01


def test_folder_source_with_transcripts(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    for i in range(5):
        sf.write(root / f"clip{i}.flac", tone(1.0, seed=i), 16000)
        (root / f"clip{i}.txt").write_text(f"clip {i}")
    report = prepare(PrepareParams(source=str(root), validation_fraction=0.0, test_fraction=0.0), None,
                     tmp_path / "d", tmp_path / "r")
    assert report["counts"]["train"] == 5
    assert {r.text for r in read_manifest(tmp_path / "d" / "train.jsonl")} == {f"clip {i}" for i in range(5)}


def test_max_per_split_caps_and_drops_audio(make_corpus, tmp_path):
    manifest = make_corpus(12)
    prepare(PrepareParams(source=str(manifest), max_per_split=3), None, tmp_path / "d", tmp_path / "r")
    assert len(read_manifest(tmp_path / "d" / "train.jsonl")) == 3
    assert len(list((tmp_path / "d" / "audio").iterdir())) == 3 + 2 + 2


def test_the_guard_set_becomes_its_own_split_and_is_never_trained_on(make_corpus, tmp_path):
    manifest = make_corpus(12)
    guard = make_corpus(5, folder="general")  # the same ids: the guard's are prefixed
    report = prepare(PrepareParams(source=str(manifest), guard=str(guard), min_duration=0.5, max_duration=5), None,
                     tmp_path / "data", tmp_path / "rejects")
    assert report["counts"] == {"train": 8, "validation": 2, "test": 2, "guard": 5}
    assert report["metrics"]["guard_utts"] == 5 and report["rejected"] == 0
    guard_recs = read_manifest(tmp_path / "data" / "guard.jsonl")
    assert sorted(r.id for r in guard_recs) == [f"guard-u{i:03d}" for i in range(5)]
    assert all(r.split == "guard" and r.intensity is not None for r in guard_recs)
    trained = {r.id for split in ("train", "validation", "test")
               for r in read_manifest(tmp_path / "data" / f"{split}.jsonl")}
    assert not trained & {r.id for r in guard_recs}
    assert all((tmp_path / "data" / r.audio).is_file() for r in guard_recs)


def test_the_bundled_guard_set_is_general_english_outside_the_training_vocabulary():
    from steps.corpus.generate_corpus_guard import vocabulary_overlap
    from steps.prepare import BUNDLED_MANIFEST, BUNDLED_SOURCES

    guard = BUNDLED_SOURCES["bundled:guard"]
    records = [json.loads(line) for line in guard.read_text().splitlines()]
    assert len(records) >= 200 and {r["split"] for r in records} == {"test"}
    corpus_voices = {json.loads(line)["voice"] for line in BUNDLED_MANIFEST.read_text().splitlines()}
    assert not {r["voice"] for r in records} & corpus_voices, "voices the training corpus does not have"
    assert vocabulary_overlap(guard, BUNDLED_MANIFEST)["types_in_corpus"] < 0.4
    levels = [r["rms_dbfs"] for r in records]
    assert min(levels) < -45, "quieter than anything in the training corpus"
