"""The whole whisper_intensity pipeline through the real CLI, on a reduced setting of the bundled corpus.

A tiny Whisper built from config trains for a few steps; every stage runs for real (prepare,
tokenizer, train, evaluate, export to ONNX, MLflow registration, a served endpoint answering).
A second identical run must reuse every stage from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

REDUCED = [
    "--profile", "scratch",
    "--set", "prepare.max_per_split=48",
    "--set", "tokenizer.vocab_size=400",
    "--set", "train.epochs=1", "--set", "train.batch_size=8", "--set", "train.d_model=64",
    "--set", "train.layers=1", "--set", "train.heads=2", "--set", "train.ffn_dim=128",
    "--set", "train.max_eval_samples=8",
    "--set", "evaluate.max_items=8", "--set", "evaluate.max_new_tokens=12",
    "--set", "export.max_items=4", "--set", "export.max_new_tokens=12",
]


def _run(runs_dir, run_id: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs_dir}/mlflow.db")
    return subprocess.run(
        [sys.executable, "pipelines/run.py", "--pipeline", "whisper_intensity", *REDUCED,
         "--runs-dir", str(runs_dir), "--run-id", run_id, "--quiet"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


def test_pipeline_end_to_end_then_fully_cached(tmp_path):
    runs = tmp_path / "runs"
    first = _run(runs, "first")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = json.loads((runs / "whisper_intensity/first/run.json").read_text())
    assert run["status"] == "succeeded"
    stages = run["stages"]
    assert [stages[s]["status"] for s in stages] == ["ran"] * 7

    def report(stage):
        return json.loads((runs / "whisper_intensity/first" / stage / "report.json").read_text())

    assert report("prepare")["counts"]["train"] == 48
    evaluation = report("evaluate")
    assert 0 <= evaluation["wer"] and 0 <= evaluation["cer"]
    assert evaluation["intensity"]["baseline_regressor"]["rmse"] < evaluation["intensity"]["mean_predictor"]["rmse"]
    export = report("export")
    assert export["parity"]["all_transcripts_identical"]
    assert export["parity"]["max_intensity_diff_db"] < 0.01
    # a vocabulary trained from scratch puts special tokens first: CTranslate2 cannot run it, and says so
    assert "--runtime torch" in export["ctranslate2"]["skipped"]
    assert (runs / "whisper_intensity/first/export/onnx/encoder.onnx").is_file()
    assert report("register")["model_version"] == "1"
    deploy = report("deploy")
    assert set(deploy["response"]) >= {"transcript", "intensity_dbfs"}
    assert deploy["malformed_request"]["status"] == 400
    assert "deploy answer" in first.stdout

    # what `run.py serve` loads: the registered version, from the MLflow registry
    from serving.loader import load_handler_from_registry
    from steps.common.audio import load_audio, to_wav_bytes
    from steps.tasks.io import Request

    handler, uri = load_handler_from_registry(f"sqlite:///{runs}/mlflow.db", "whisper_intensity")
    assert uri == "models:/whisper_intensity/1"
    clip = REPO_ROOT / "steps/corpus/sample/audio/s0002_spk04.opus"
    answer = handler(Request(to_wav_bytes(load_audio(clip)), "audio/wav")).json()
    assert isinstance(answer["transcript"], str) and -60 <= answer["intensity_dbfs"] <= 0

    second = _run(runs, "second")
    assert second.returncode == 0, second.stdout[-3000:]
    rerun = json.loads((runs / "whisper_intensity/second/run.json").read_text())
    assert [s["status"] for s in rerun["stages"].values()] == ["cached"] * 7
