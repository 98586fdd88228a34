"""The reduced whisper_intensity pipeline through Kubeflow Pipelines' own local runner (kfp.local,
SubprocessRunner, no cluster, no registry): every stage runs, the evaluate report matches the local
backend's on the same setting, a second run is answered from KFP's cache, and a failed gate skips
register and deploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_whisper_intensity_pipeline import REDUCED

pytestmark = pytest.mark.integration
pytest.importorskip("kfp")

# the scratch profile sets no absolute limit; one here makes the gate component part of the run
WITH_GATE = [*REDUCED, "--set", "gate.wer.limit=5.0"]
TOLERANCE = 1e-6


def _run(runs_dir, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs_dir}/mlflow.db")
    return subprocess.run([sys.executable, "pipelines/run.py", "--pipeline", "whisper_intensity", *WITH_GATE,
                           "--runs-dir", str(runs_dir), *extra], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def _local_kfp_runs(runs_dir):
    root = runs_dir / "whisper_intensity" / "kubeflow" / "local"
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)


def test_kfp_local_run_matches_the_local_backend(tmp_path):
    local = _run(tmp_path / "local", "--quiet")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    kfp_runs = tmp_path / "kfp"
    first = _run(kfp_runs, "--backend", "kubeflow", "--kfp-local")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = _local_kfp_runs(kfp_runs)[-1]
    for stage in ("prepare", "tokenizer", "train", "evaluate", "export", "register", "deploy"):
        assert (run_dir / stage / "report" / "report.json").is_file(), stage
    assert "gate: wer = " in first.stdout and "'pass'" in first.stdout

    def metrics(path):
        return json.loads(path.read_text())["metrics"]

    mine = metrics(next((tmp_path / "local" / "whisper_intensity").glob("2*/evaluate/report.json")))
    theirs = metrics(run_dir / "evaluate" / "report" / "report.json")
    assert mine.keys() == theirs.keys()
    for key, value in mine.items():
        assert theirs[key] == pytest.approx(value, abs=TOLERANCE), key
    deploy = json.loads((run_dir / "deploy" / "report" / "report.json").read_text())
    assert set(deploy["response"]) >= {"transcript", "intensity_dbfs"}

    # a limit no model meets: KFP's cache answers for the stages before the gate, register and deploy are skipped
    second = _run(kfp_runs, "--backend", "kubeflow", "--kfp-local", "--param", "max_wer=0.0")
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    assert "the quality gate failed" in second.stdout and "Traceback" not in second.stdout + second.stderr
    latest = _local_kfp_runs(kfp_runs)[-1]
    assert latest != run_dir and sorted(p.name for p in latest.iterdir() if p.is_dir()) == ["quality-gate"]
    for stage in ("prepare", "train", "evaluate"):
        assert f"│ {stage}" in second.stdout and "cached" in second.stdout.split(f"│ {stage}", 1)[1].split("\n", 1)[0]
