"""Reading source manifests: our keys and NeMo's, type checks, ids derived from file names."""

from __future__ import annotations

import pytest

from steps.common.manifest import ManifestError, Reject, iter_source_manifest, source_record


def test_nemo_and_own_keys():
    rec = source_record({"audio_filepath": "a/b.wav", "duration": 1.5, "text": "hi", "emotion": "sad"})
    assert (rec.audio, rec.duration, rec.text, rec.id, rec.extra) == ("a/b.wav", 1.5, "hi", "", {"emotion": "sad"})
    rec = source_record({"id": 7, "audio": "x.wav", "speaker": 3, "text": None})
    assert (rec.id, rec.speaker, rec.text) == ("7", "3", "")


@pytest.mark.parametrize("data, reason", [
    ([1, 2], "JSON object"),
    ({"text": "x"}, "needs 'audio' or 'audio_filepath'"),
    ({"audio": ""}, "'audio' must be a non-empty string"),
    ({"audio": "a.wav", "duration": True}, "'duration' must be a number"),
    ({"audio": "a.wav", "text": ["x"]}, "'text' must be a string"),
    ({"audio": "a.wav", "sample_rate": 16000.5}, "'sample_rate' must be a positive integer"),
    ({"audio": "a.wav", "id": {"x": 1}}, "'id' must be a non-empty string"),
    ({"audio": "a.wav", "speaker": [1]}, "'speaker' must be a string"),
])
def test_wrong_records(data, reason):
    with pytest.raises(ManifestError, match=reason):
        source_record(data)


def test_lines_with_derived_unique_ids(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a/x.wav"}\n\n{"audio": "b/x.wav"}\n{"id": "x-3", "audio": "c/y.wav"}\n'
                    '{"audio": "d/x.wav"}\nnot json\n')
    lines = list(iter_source_manifest(path))
    assert [line.where for line in lines] == ["m.jsonl:1", "m.jsonl:3", "m.jsonl:4", "m.jsonl:5", "m.jsonl:6"]
    assert [line.record.id for line in lines[:4]] == ["x", "x-2", "x-3", "x-4"]
    assert lines[4].record is None and lines[4].message.startswith("m.jsonl:6: not valid JSON")


def test_reject_writes_where_only_when_set():
    assert "where" not in Reject(id="a", audio="b", reason="r").to_dict()
    assert Reject(id="a", audio="b", reason="r", where="m.jsonl:2").to_dict()["where"] == "m.jsonl:2"
