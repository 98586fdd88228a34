"""The local backend: content-addressed cache, atomic publication, clear failures."""

from __future__ import annotations

import json

import pytest

from pipelines.backends.local import LocalBackend, StageFailed
from pipelines.definition import Pipeline, PipelineError, Stage


def _pipeline(source: str, **prepare) -> Pipeline:
    return Pipeline(name="unit", task="whisper_intensity",
                    stages=(Stage("prepare", "prepare", params={"source": source, **prepare}),))


def test_second_run_reuses_the_cache_and_changes_invalidate_it(make_corpus, tmp_path):
    manifest = make_corpus(6)
    backend = LocalBackend(tmp_path / "runs", echo=False)
    first = backend.run(_pipeline(str(manifest)), run_id="a")
    assert first.stage("prepare").status == "ran"
    second = backend.run(_pipeline(str(manifest)), run_id="b")
    assert second.stage("prepare").status == "cached"
    assert second.stage("prepare").key == first.stage("prepare").key
    assert (tmp_path / "runs/unit/latest").resolve().name == "b"
    assert (tmp_path / "runs/unit/b/prepare/data/train.jsonl").is_file()
    # a parameter change and a data change each give a new key
    third = backend.run(_pipeline(str(manifest), max_duration=4.0), run_id="c")
    assert third.stage("prepare").status == "ran"
    (manifest.parent / "audio" / "u001.wav").write_bytes((manifest.parent / "audio" / "u002.wav").read_bytes())
    fourth = backend.run(_pipeline(str(manifest)), run_id="d")
    assert fourth.stage("prepare").status == "ran"
    assert fourth.stage("prepare").key != first.stage("prepare").key


def test_incomplete_cache_entry_is_not_trusted(make_corpus, tmp_path):
    manifest = make_corpus(6)
    backend = LocalBackend(tmp_path / "runs", echo=False)
    key = backend.run(_pipeline(str(manifest)), run_id="a").stage("prepare").key
    entry = backend.cache.entry("prepare", key)
    (entry / "_complete.json").unlink()  # as if the stage had been killed before publication
    again = backend.run(_pipeline(str(manifest)), run_id="b")
    assert again.stage("prepare").status == "ran"
    assert (entry / "_complete.json").is_file()


def test_failing_stage_names_itself_and_shows_the_log(tmp_path):
    backend = LocalBackend(tmp_path / "runs", echo=False)
    with pytest.raises(StageFailed) as err:
        backend.run(_pipeline(str(tmp_path / "does-not-exist")), run_id="x")
    assert err.value.result.name == "prepare"
    assert "not found" in err.value.result.error
    assert "FileNotFoundError" in err.value.tail
    run = json.loads((tmp_path / "runs/unit/x/run.json").read_text())
    assert run["status"] == "failed"
    assert not list((tmp_path / "runs/.cache").glob(".tmp-*")), "a failed stage must not leave staging folders"
    assert (tmp_path / "runs/unit/x/prepare/failed-outputs").is_dir(), "partial outputs are kept for inspection"
    assert not list((tmp_path / "runs/.cache").glob("prepare-*")), "and never published to the cache"


def test_only_needs_cached_inputs(make_corpus, tmp_path):
    manifest = make_corpus(6)
    pipeline = Pipeline(name="unit", task="whisper_intensity", stages=(
        Stage("prepare", "prepare", params={"source": str(manifest)}),
        Stage("tokenizer", "tokenizer", {"data": "prepare.data"}, params={"model_id": "scratch", "vocab_size": 300}),
    ))
    backend = LocalBackend(tmp_path / "runs", echo=False)
    with pytest.raises(PipelineError, match="no cached output"):
        backend.run(pipeline, only_stage="tokenizer")
    backend.run(pipeline, run_id="full")
    only = backend.run(pipeline, run_id="only", only_stage="tokenizer")
    assert [s.status for s in only.stages] == ["cached", "ran"]


def test_dry_run_runs_nothing(make_corpus, tmp_path):
    backend = LocalBackend(tmp_path / "runs", echo=False)
    result = backend.run(_pipeline(str(make_corpus(4))), dry_run=True)
    assert result.stage("prepare").status == "planned"
    assert "steps.prepare" in " ".join(result.stage("prepare").command)
    assert not (tmp_path / "runs/unit").exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_left_running_by_a_dead_runner_is_marked_abandoned_and_its_staging_removed(make_corpus, tmp_path, capsys):
    import os
    import socket

    manifest = make_corpus(6)
    backend = LocalBackend(tmp_path / "runs", echo=False)
    dead = _dead_pid()
    left = tmp_path / "runs/unit/old"
    left.mkdir(parents=True)
    (left / "run.json").write_text(json.dumps({"status": "running", "runner_pid": dead, "host": socket.gethostname()}))
    alive = tmp_path / "runs/unit/busy"  # a runner that still lives (this process) is left alone
    alive.mkdir()
    (alive / "run.json").write_text(json.dumps({"status": "running", "runner_pid": os.getpid(),
                                                "host": socket.gethostname()}))
    cache = tmp_path / "runs/.cache"
    (cache / f".tmp-prepare-abc-{dead}").mkdir(parents=True)
    (cache / f".tmp-prepare-abc-{os.getpid()}x").mkdir()  # not a pid suffix: not ours to judge

    result = backend.run(_pipeline(str(manifest)), run_id="new")
    assert result.stage("prepare").status == "ran"
    record = json.loads((left / "run.json").read_text())
    assert record["status"] == "abandoned" and record["abandoned_found_at"]
    assert json.loads((alive / "run.json").read_text())["status"] == "running"
    assert "'old' was left running by a runner that is gone" in capsys.readouterr().err
    assert not (cache / f".tmp-prepare-abc-{dead}").exists()
    assert (cache / f".tmp-prepare-abc-{os.getpid()}x").exists()
    new = json.loads((tmp_path / "runs/unit/new/run.json").read_text())
    assert new["status"] == "succeeded" and new["runner_pid"] == os.getpid()
