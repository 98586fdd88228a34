"""ctc_asr with the tune stage on, through the real CLI on the reduced setting of the pipeline test:
two short trials (one epoch each), then train with the best values, and the summary says so."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_ctc_asr_pipeline import _run

pytestmark = pytest.mark.integration
pytest.importorskip("optuna")


def test_tune_searches_then_train_uses_the_best_values(tmp_path):
    runs = tmp_path / "runs"
    done = _run(runs, "tuned", "--set", "train.detect_collapse=false", "--set", "tune.enabled=true",
                "--set", "tune.n_trials=2", "--set", "evaluate.compare_base_model=false",
                "--set", "tune.budget={epochs: 1, eval_every_epochs: 1, detect_collapse: false}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = runs / "ctc_asr/tuned"
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert list(stages)[:4] == ["prepare", "tokenizer", "tune", "train"]
    assert all(s["status"] == "ran" for s in stages.values())

    tune = json.loads((run / "tune/report.json").read_text())
    assert tune["objective"] == "wer" and tune["direction"] == "lower"
    assert len(tune["trials"]) == 2 and tune["metrics"]["trials_complete"] >= 1
    best = json.loads((run / "tune/best/best_params.json").read_text())
    assert set(best["params"]) == {"lr", "batch_size"}
    for name in ("trials.csv", "trials.json", "optimization_history.png", "study.journal"):
        assert (run / "tune/trials" / name).is_file(), name

    train = json.loads((run / "train/report.json").read_text())
    assert train["tuned"]["values"] == best["params"]
    assert train["params"]["lr"] == pytest.approx(best["params"]["lr"])
    assert "trained with the tuned values" in done.stdout
