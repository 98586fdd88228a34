"""Prepare keeps the task's fields from every source, reads NeMo-style manifests and reports bad lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

import steps.prepare as prepare_mod
from steps.common.manifest import read_manifest
from steps.common.stage import StageError, run_stage
from steps.prepare import SPEC, PrepareParams, prepare
from steps.tasks import get_task
from tests.conftest import tone

TASK = "ctc_asr"  # a real task; its manifest_fields are monkeypatched per test


@pytest.fixture
def needs(monkeypatch):
    def _needs(*fields: str) -> None:
        monkeypatch.setattr(get_task(TASK), "manifest_fields", tuple(fields))

    return _needs


def _write_clips(root: Path, names: list[str], seconds: float = 0.6) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, tone(seconds, seed=i, dbfs=-25), 16000)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _all_kept(data: Path) -> dict[str, dict]:
    return {r["id"]: r for split in ("train", "validation", "test") for r in _rows(data / f"{split}.jsonl")}


def _params(source: Path, **kw) -> PrepareParams:
    return PrepareParams(source=str(source), validation_fraction=0.0, test_fraction=0.0, **kw)


def test_task_fields_kept_from_jsonl_and_missing_ones_rejected(tmp_path, needs):
    needs("emotion", "words", "speaker")
    root = tmp_path / "c"
    _write_clips(root, ["a.wav", "b.wav", "c.wav", "d.wav"])
    words = [{"word": "hello", "emphasis": 1}, {"word": "there", "emphasis": 0}]
    rows = [
        {"id": "a", "audio": "a.wav", "text": "hello there", "speaker": "s1", "emotion": "happy", "words": words,
         "pair_id": "p1"},
        {"id": "b", "audio": "b.wav", "text": "hello there", "speaker": "s2", "words": words},
        {"id": "c", "audio": "c.wav", "text": "hello there", "speaker": "s2", "emotion": None, "words": words},
        {"id": "d", "audio": "d.wav", "text": "hello there", "emotion": "sad", "words": words},
    ]
    manifest = root / "list.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = prepare(_params(manifest), None, tmp_path / "d", tmp_path / "r", task=TASK)

    kept = _all_kept(tmp_path / "d")
    assert set(kept) == {"a"}
    assert kept["a"]["emotion"] == "happy" and kept["a"]["words"] == words and kept["a"]["pair_id"] == "p1"
    rejects = {r["id"]: r["reason"] for r in _rows(tmp_path / "r" / "rejects.jsonl")}
    assert rejects == {"b": f"missing field 'emotion' that task {TASK} needs",
                       "c": f"missing field 'emotion' that task {TASK} needs",
                       "d": f"missing field 'speaker' that task {TASK} needs"}
    assert report["reject_reasons"] == {"missing field 'emotion' that task ctc_asr needs": 2,
                                        "missing field 'speaker' that task ctc_asr needs": 1}


def test_without_task_every_field_still_travels(tmp_path):
    root = tmp_path / "c"
    _write_clips(root, ["a.wav"])
    (root / "manifest.jsonl").write_text(json.dumps(
        {"id": "a", "audio": "a.wav", "text": "x", "style": "loud", "meta": {"k": [1, 2]}}) + "\n")
    prepare(_params(root), None, tmp_path / "d", tmp_path / "r")
    assert _all_kept(tmp_path / "d")["a"]["meta"] == {"k": [1, 2]}


def test_task_fields_kept_from_the_bundled_corpus(tmp_path, needs, monkeypatch):
    """The real bundled records (first few, with their audio), read through source=bundled."""
    needs("emotion", "pair_id", "words", "emphasis", "style")
    lines = prepare_mod.BUNDLED_MANIFEST.read_text().splitlines()[:6]
    originals = [json.loads(line) for line in lines]
    bundled = tmp_path / "sample"
    for rec in originals:
        (bundled / rec["audio"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prepare_mod.BUNDLED_MANIFEST.parent / rec["audio"], bundled / rec["audio"])
    (bundled / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setitem(prepare_mod.BUNDLED_SOURCES, "bundled", bundled / "manifest.jsonl")

    report = prepare(PrepareParams(source="bundled"), None, tmp_path / "d", tmp_path / "r", task=TASK)
    kept = _all_kept(tmp_path / "d")
    assert report["rejected"] == 0 and len(kept) == len(originals)
    for rec in originals:
        for name in ("emotion", "pair_id", "words", "emphasis", "style", "speaker"):
            assert kept[rec["id"]][name] == rec[name]


def test_the_whole_bundled_manifest_reads_without_bad_lines():
    from steps.common.manifest import iter_source_manifest

    lines = list(iter_source_manifest(prepare_mod.BUNDLED_MANIFEST))
    assert lines and all(line.record is not None for line in lines)
    assert all("emotion" in line.record.extra and "pair_id" in line.record.extra for line in lines)


def test_nemo_manifest_is_read(tmp_path):
    root = tmp_path / "nemo"
    _write_clips(root, ["wavs/one.wav", "wavs/two.wav", "other/one.wav"])
    rows = [
        {"audio_filepath": "wavs/one.wav", "duration": 0.6, "text": "first clip"},
        {"audio_filepath": str(root / "wavs/two.wav"), "duration": 0.6, "text": "second clip"},  # absolute, inside
        {"audio_filepath": "other/one.wav", "duration": 0.6, "text": "third clip", "emotion": "neutral"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = prepare(_params(root), None, tmp_path / "d", tmp_path / "r")

    kept = _all_kept(tmp_path / "d")
    assert report["rejected"] == 0
    assert {k: v["text"] for k, v in kept.items()} == {"one": "first clip", "two": "second clip",
                                                      "one-2": "third clip"}
    assert kept["one-2"]["emotion"] == "neutral" and "audio_filepath" not in kept["one"]
    assert all((tmp_path / "d" / r["audio"]).is_file() for r in kept.values())


def test_path_escape_in_audio_filepath_is_rejected(tmp_path):
    root = tmp_path / "nemo"
    _write_clips(root, ["ok.wav"])
    _write_clips(tmp_path, ["secret.wav"])
    rows = [
        {"audio_filepath": "ok.wav", "duration": 0.6, "text": "fine"},
        {"audio_filepath": "../secret.wav", "duration": 0.6, "text": "escape"},
        {"audio_filepath": str(tmp_path / "secret.wav"), "duration": 0.6, "text": "absolute"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = prepare(_params(root), None, tmp_path / "d", tmp_path / "r")
    rejects = _rows(tmp_path / "r" / "rejects.jsonl")
    assert report["rejected"] == 2 and set(_all_kept(tmp_path / "d")) == {"ok"}
    assert all("escapes the data root" in r["reason"] for r in rejects)


BAD_LINES = [
    '{"id": "good", "audio": "good.wav", "text": "fine"}',
    '{"id": "broken", "audio": ',             # 2: invalid JSON
    '["a", "list"]',                           # 3: not an object
    '{"id": "noaudio", "text": "x"}',          # 4: no audio key
    '',                                        # blank lines are not lines of records
    '{"id": "baddur", "audio": "good.wav", "duration": "long", "text": "x"}',  # 6: wrong type
    '{"audio_filepath": 5, "text": "x"}',      # 7: wrong type
]


def _bad_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    _write_clips(root, ["good.wav"])
    (root / "manifest.jsonl").write_text("\n".join(BAD_LINES) + "\n")
    return root


def test_bad_lines_are_skipped_with_file_and_line(tmp_path, caplog):
    report = prepare(_params(_bad_corpus(tmp_path)), None, tmp_path / "d", tmp_path / "r")
    rejects = _rows(tmp_path / "r" / "rejects.jsonl")
    assert [r["where"] for r in rejects] == [f"manifest.jsonl:{n}" for n in (2, 3, 4, 6, 7)]
    assert all(r["reason"].startswith(r["where"] + ": ") for r in rejects)
    reasons = [r["reason"] for r in rejects]
    assert "not valid JSON" in reasons[0] and "JSON object" in reasons[1] and "audio_filepath" in reasons[2]
    assert "'duration' must be a number" in reasons[3] and "'audio' must be a non-empty string" in reasons[4]
    assert [r["id"] for r in rejects][2:4] == ["noaudio", "baddur"]
    assert report["bad_lines"] == 5 and report["reject_reasons"] == {"bad manifest line": 5}
    assert set(_all_kept(tmp_path / "d")) == {"good"}
    assert "Traceback" not in caplog.text and "manifest.jsonl:2: not valid JSON" in caplog.text


def test_bad_line_with_fail_stops_the_stage(tmp_path):
    with pytest.raises(StageError) as info:
        prepare(_params(_bad_corpus(tmp_path), on_bad_line="fail"), None, tmp_path / "d", tmp_path / "r")
    assert str(info.value).startswith("manifest.jsonl:2: not valid JSON")
    assert not (tmp_path / "d" / "train.jsonl").exists()


def test_fail_through_the_entrypoint_writes_the_sentence(tmp_path, monkeypatch):
    source = _bad_corpus(tmp_path)
    monkeypatch.setenv("SPEECHOPS_ML_ROOT", str(tmp_path / "ml"))
    rc = run_stage(SPEC, ["--task", TASK, "--source", str(source), "--on-bad-line", "fail"])
    failure = (tmp_path / "ml" / "output" / "failure").read_text()
    assert rc == 1 and "manifest.jsonl:2: not valid JSON" in failure


def test_hf_row_keeps_task_fields_from_columns():
    params = PrepareParams(source="hf:x", hf_field_columns={"emotion": "label"})
    row = {"audio": {"path": "a.wav"}, "text": "hi", "label": 2, "words": [{"w": "hi", "emphasis": 1}],
           "speaker_id": 7}
    rec, error = prepare_mod._hf_record(row, "train", 3, params, ("emotion", "words"),
                                        {"label": ["angry", "happy", "sad"].__getitem__})
    assert error is None and rec.id == "train-0000003" and rec.speaker == "7"
    assert rec.extra == {"emotion": "sad", "words": [{"w": "hi", "emphasis": 1}]}
    rec, error = prepare_mod._hf_record({"audio": {"path": "b.wav"}, "text": "x"}, "test", 0, params, ("emotion",))
    assert error is None and "emotion" not in rec.extra  # then rejected as a missing field
    assert prepare_mod._check_record(rec, ("emotion",), "t") == "missing field 'emotion' that task t needs"
