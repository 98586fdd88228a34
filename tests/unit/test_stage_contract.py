"""The stage contract: container paths from the environment, options on the command line, a report."""

from __future__ import annotations

import json
import subprocess
import sys

from steps.common import contract
from steps.common.stage import parse_cli_values, to_cli_args
from tests.conftest import REPO_ROOT


def test_paths_default_to_sagemaker_layout(monkeypatch):
    for var in ("SPEECHOPS_ML_ROOT", "SM_CHANNEL_DATA", "SM_MODEL_DIR", "SPEECHOPS_INPUT_DATA"):
        monkeypatch.delenv(var, raising=False)
    assert str(contract.input_dir("processing", "data")) == "/opt/ml/processing/input/data"
    assert str(contract.input_dir("training", "data")) == "/opt/ml/input/data/data"
    assert str(contract.container_output_path("training", "model")) == "/opt/ml/model"
    assert str(contract.container_output_path("training", "checkpoints")) == "/opt/ml/checkpoints"
    monkeypatch.setenv("SM_CHANNEL_DATA", "/x/y")
    assert str(contract.input_dir("training", "data")) == "/x/y"


def test_cli_values_round_trip():
    values = {"max_duration": 6.0, "flag": True, "splits": {"train": "a"}, "name": "x", "skip": None}
    parsed = parse_cli_values(to_cli_args(values))
    assert parsed == {"max_duration": "6.0", "flag": "true", "splits": {"train": "a"}, "name": "x"}


def test_entrypoint_runs_in_a_sagemaker_style_root(make_corpus, tmp_path):
    """python -m steps.prepare with only SPEECHOPS_ML_ROOT set: everything lands under the SageMaker layout."""
    manifest = make_corpus(6)
    root = tmp_path / "opt_ml"
    env = {"PATH": "/usr/bin:/bin", "SPEECHOPS_ML_ROOT": str(root), "PYTHONPATH": str(REPO_ROOT),
           "SPEECHOPS_PROGRESS": "0", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "steps.prepare", "--source", str(manifest), "--max-duration", "5"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((root / "processing/output/report/report.json").read_text())
    assert report["stage"] == "prepare" and report["counts"]["train"] == 4
    assert (root / "processing/output/data/train.jsonl").is_file()
    assert (root / "processing/output/rejects/rejects.jsonl").is_file()


def test_bad_option_exits_2_with_a_failure_reason(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SPEECHOPS_ML_ROOT": str(tmp_path), "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "steps.prepare", "--max-duration", "long"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "max_duration" in (tmp_path / "output/failure").read_text()
