"""The stage contract: container paths from the environment, options on the command line, a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from steps.common import contract
from steps.common.stage import PARAMS_JSON, StageError, params_args, parse_cli_values, stage_values
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


def test_parameters_reach_the_stage_exactly_as_validated():
    values = {"max_duration": 6.0, "flag": True, "splits": {"train": "a"}, "name": "--x", "skip": None, "n": 3}
    assert stage_values(params_args(values)) == values, "one JSON document: types and null survive"
    pieces = params_args(values, max_length=40)
    assert len(pieces) > 2 and all(len(p) <= 40 for p in pieces)
    assert stage_values(pieces) == values, "a document cut into pieces (SageMaker's 256-character arguments)"


def test_options_override_the_document_and_hyperparameters_come_first():
    argv = [*params_args({"epochs": 1.0, "lr": 0.1}), "--epochs", "3"]
    hyper = {PARAMS_JSON: '{"epochs": 2.0, "seed": 7, "lr": 0.5}', "lr": "0.2", "task": "t"}
    assert stage_values(argv, hyper) == {"epochs": "3", "lr": 0.1, "seed": 7, "task": "t"}
    assert parse_cli_values(["--max-duration", "6", "--splits", '{"train": "a"}']) == {
        "max_duration": "6", "splits": {"train": "a"}}
    with pytest.raises(StageError, match="JSON object"):
        stage_values(["--params-json", "[1, 2]"])
    with pytest.raises(StageError, match="not valid JSON"):
        stage_values(["--params-json", "{epochs: 1}"])


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


def test_paths_given_on_the_command_line(make_corpus, tmp_path):
    """What Kubeflow's artifact placeholders hand a stage: its folders and a metric file, as arguments;
    the stage writes exactly there (nothing under the default root) and the metric file holds the number."""
    manifest = make_corpus(6)
    root, out = tmp_path / "opt_ml", tmp_path / "kfp"
    env = {"PATH": "/usr/bin:/bin", "SPEECHOPS_ML_ROOT": str(root), "PYTHONPATH": str(REPO_ROOT),
           "SPEECHOPS_PROGRESS": "0", "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "steps.prepare", "--source", str(manifest), "--max-duration", "5",
            "--output-path", "report", str(out / "report"), "--output-path", "data", str(out / "data"),
            "--output-path", "rejects", str(out / "rejects"), "--input-path", "raw", str(tmp_path / "none")]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "report/report.json").read_text())["counts"]["train"] == 4
    assert (out / "data/train.jsonl").is_file() and not (root / "processing/output/data").exists()

    rest, metric_files = contract.take_path_options(["--task", "t", "--metric-file", "wer", "/x/wer"], "processing")
    assert rest == ["--task", "t"] and metric_files == {"wer": Path("/x/wer")}
    contract.write_metric_files({"metrics": {"wer": 0.25}}, {"wer": tmp_path / "wer"})
    assert float((tmp_path / "wer").read_text()) == 0.25
    with pytest.raises(KeyError, match="no metric 'cer'"):
        contract.write_metric_files({"metrics": {"wer": 0.25}}, {"cer": tmp_path / "cer"})
    with pytest.raises(ValueError, match="two values"):
        contract.take_path_options(["--input-path", "data"], "processing")


def test_bad_option_exits_2_with_a_failure_reason(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SPEECHOPS_ML_ROOT": str(tmp_path), "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "steps.prepare", "--max-duration", "long"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "max_duration" in (tmp_path / "output/failure").read_text()
