"""ctc_asr through the real CLI on a reduced setting: every stage runs; a collapsed training run is stopped.

The reduced run trains for a few steps only, so its model still emits blanks: the collapse guard is
switched off for that smoke run and exercised on its own in the second test.
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
    "--set", "prepare.max_per_split=32",
    "--set", "train.epochs=1", "--set", "train.batch_size=8", "--set", "train.hidden_size=64",
    "--set", "train.layers=1", "--set", "train.heads=2", "--set", "train.ffn_dim=128", "--set", "train.conv_dim=32",
    "--set", "train.max_eval_samples=8", "--set", "train.eval_every_epochs=1",
    "--set", "evaluate.max_items=8", "--set", "export.max_items=4", "--set", "export.timing_repeats=1",
]


def _run(runs_dir, run_id: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs_dir}/mlflow.db")
    return subprocess.run(
        [sys.executable, "pipelines/run.py", "--pipeline", "ctc_asr", *REDUCED, *extra,
         "--runs-dir", str(runs_dir), "--run-id", run_id, "--quiet"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ctc_asr") / "runs"
    done = _run(runs, "smoke", "--set", "train.detect_collapse=false")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs


def test_ctc_pipeline_end_to_end(smoke_run):
    runs = smoke_run
    stages = json.loads((runs / "ctc_asr/smoke/run.json").read_text())["stages"]
    assert [s["status"] for s in stages.values()] == ["ran"] * 7

    def report(stage):
        return json.loads((runs / "ctc_asr/smoke" / stage / "report.json").read_text())

    assert report("tokenizer")["vocab_size"] > 20
    assert 0 <= report("evaluate")["cer"]
    assert report("export")["parity"]["all_transcripts_identical"]
    assert report("export")["parity"]["max_logit_diff"] < 1e-3
    deploy = report("deploy")
    assert set(deploy["response"]) == {"text"} and deploy["malformed_request"]["status"] == 400


def test_collapsed_training_stops_the_run_with_a_clear_message(tmp_path):
    runs = tmp_path / "runs"
    failed = _run(runs, "broken", "--set", "train.lr=0.1")
    assert failed.returncode == 1
    assert "stage 'train' failed" in failed.stdout and "collapsed" in failed.stdout
    stages = json.loads((runs / "ctc_asr/broken/run.json").read_text())["stages"]
    assert stages["train"]["status"] == "failed" and "register" not in stages
    assert (runs / "ctc_asr/broken/train/failed-outputs/artifacts/loss_curve.png").is_file()


@pytest.mark.browser
def test_the_demo_shows_the_transcript_of_an_upload(smoke_run, tmp_path):
    from tests.demo_driver import check_transcript_page

    check_transcript_page("ctc_asr", smoke_run, smoke_run / "ctc_asr/smoke", tmp_path)
