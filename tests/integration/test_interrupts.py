"""Killed runs: SIGTERM to the runner during training stops the stage, records the run as interrupted, leaves no
temporary folder in the cache and exits 143; the same command then resumes training from its last complete
checkpoint and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_whisper_intensity_pipeline import REDUCED

pytestmark = pytest.mark.integration
LONGER = [*REDUCED, "--set", "train.epochs=12", "--set", "train.checkpoint_steps=4", "--set", "export.max_items=2"]


def test_sigterm_during_training_is_recorded_and_the_same_command_resumes(tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs}/mlflow.db")
    command = [sys.executable, "pipelines/run.py", "--pipeline", "whisper_intensity", *LONGER, "--runs-dir", str(runs),
               "--quiet"]
    runner = subprocess.Popen([*command, "--run-id", "first"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and runner.poll() is None:  # wait for a complete checkpoint of train
        if list((runs / ".checkpoints").glob("train-*/checkpoint-*/speechops-complete.json")):
            break
        time.sleep(0.5)
    assert runner.poll() is None, runner.communicate()[0][-3000:]
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 143, output[-3000:]
    assert "interrupted by SIGTERM during stage 'train'" in output
    record = json.loads((runs / "whisper_intensity/first/run.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == "SIGTERM" and record["interrupted_at"]
    assert record["stages"]["train"]["status"] == "interrupted"
    assert not list((runs / ".cache").glob(".tmp-*")), "a temporary folder was left in the cache"
    assert not (runs / "whisper_intensity/latest").exists()

    again = subprocess.run([*command, "--run-id", "second"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    train = json.loads((runs / "whisper_intensity/second/train/report.json").read_text())
    assert train["resumed_from"] and "checkpoint-" in train["resumed_from"]
    assert json.loads((runs / "whisper_intensity/second/run.json").read_text())["stages"]["prepare"]["status"] == "cached"
    assert (runs / "whisper_intensity/latest").resolve().name == "second"
