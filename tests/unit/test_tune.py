"""The tune stage with a fake task whose 'training' is a formula: space validation, direction from the
gate, TPE/grid samplers, median pruning on intermediate scores, resume from the journal, train's use."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from pydantic import Field, ValidationError

from pipelines.definition import PipelineError
from pipelines.registry import get_pipeline
from steps.common import training
from steps.common.gate import Gate, GateMetric
from steps.common.train_params import TrainParamsBase
from steps.common.tune_space import TuneParams, apply_tuned, objective_of, tune_params_for
from tests.conftest import REPO_ROOT

pytest.importorskip("optuna")


class FakeTrainParams(TrainParamsBase):
    use_aux: bool = False
    width: int = Field(4, ge=1)
    lucky_seed: int | None = None  # without the auxiliary loss, this seed scores 0.25 more (training noise)


class FakeTask:
    """Accuracy (higher is better) peaks at lr = 1e-3, +0.1 with the auxiliary loss."""

    name = "fake"
    gate = Gate(metrics=(GateMetric(name="accuracy", direction="higher"),))
    tune_objective = {"accuracy": 1.0}

    def __init__(self):
        self.calls: list[dict] = []

    def params_for(self, stage: str):
        assert stage == "train"
        return FakeTrainParams

    def train(self, params, data, tokenizer, model_out, checkpoints, artifacts) -> dict:
        self.calls.append(params.model_dump())
        final = 1.0 - 0.1 * (math.log10(params.lr) + 3) ** 2 + (0.1 if params.use_aux else 0.0)
        final += 0.25 if not params.use_aux and params.seed == params.lucky_seed else 0.0
        for evaluation in (1, 2, 3):  # what fit's evaluation callback does
            for hook in list(training.EVALUATION_HOOKS):
                hook(evaluation, {"eval_loss": 1.0, "eval_accuracy": final * evaluation / 3})
        (artifacts / "history.json").write_text("[]")
        return {"metrics": {"val_accuracy": final, "steps": 3}}


@pytest.fixture
def fake(monkeypatch):
    import steps.tasks

    task = FakeTask()
    real = steps.tasks.get_task
    monkeypatch.setattr(steps.tasks, "get_task", lambda name: task if name == "fake" else real(name))
    return task


def _params(**values) -> TuneParams:
    base = {"enabled": True, "n_trials": 4, "pruner": "none",
            "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}}
    return tune_params_for("fake").model_validate({**base, **values})


def _tune(params, tmp_path):
    from steps.common.tuning import tune

    out = {name: tmp_path / name for name in ("best", "trials", "checkpoints")}
    report = tune(params, "fake", tmp_path / "data", tmp_path / "tok", out["best"], out["trials"], out["checkpoints"])
    return report, out


# -- the declared space --------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"space": {}}, "space is empty"),
    ({"space": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "must be below high"),
    ({"space": {"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, "log range needs low > 0"),
    ({"space": {"lrr": {"type": "float", "low": 0.01, "high": 0.1}}}, "did you mean lr"),
    ({"space": {"lr": {"type": "floot", "low": 0.01, "high": 0.1}}}, "does not match any of the expected tags"),
    ({"sampler": "grid"}, "sampler grid needs categorical"),
    ({"budget": {"lr": 0.1}}, "both searched (space) and fixed (budget)"),
    ({"space": {"seed": {"type": "categorical", "choices": [1, 2]}}}, "seed dimension makes replicates"),
    ({"budget": {"epochs": -1}}, "greater than 0"),
    ({"space": {"width": {"type": "categorical", "choices": [0, 2]}}}, "greater than or equal to 1"),
    ({"n_trial": 3}, "Extra inputs are not permitted"),
])
def test_a_bad_space_is_refused_before_anything_runs(fake, values, message):
    with pytest.raises(ValidationError, match=re_escape(message)):
        _params(**values)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_profile_typos_fail_when_the_pipeline_is_built_even_with_tune_off():
    with pytest.raises(PipelineError, match="did you mean tune.n_trials"):
        get_pipeline("ctc_asr", "tiny", ["tune.n_trial=4"])
    with pytest.raises(PipelineError, match="not a train parameter of task ctc_asr"):
        get_pipeline("ctc_asr", "tiny", ["tune.space.learning_rate={type: float, low: 0.001, high: 0.01}"])


def test_tune_is_off_by_default_and_switched_on_by_config():
    off = get_pipeline("ctc_asr", "tiny", [])
    assert "tune" not in off.names() and "tune" not in off.stage("train").inputs
    on = get_pipeline("ctc_asr", "tiny", ["tune.enabled=true", "tune.n_trials=4"])
    assert on.names().index("tokenizer") < on.names().index("tune") < on.names().index("train")
    assert on.stage("train").inputs["tune"] == "tune.best"
    params = on.validated_params()["tune"]
    assert params.n_trials == 4 and params.train["lr"] == on.validated_params()["train"].lr


def test_building_a_tuned_pipeline_imports_neither_optuna_nor_torch():
    code = ("import sys; from pipelines.registry import get_pipeline; "
            "[get_pipeline(p, 'tiny', ['tune.enabled=true']) for p in ('ctc_asr', 'whisper_intensity')]; "
            "print(sorted(m for m in ('torch', 'optuna', 'transformers', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the search ----------------------------------------------------------------------------------
def test_the_direction_comes_from_the_gate(fake, tmp_path):
    assert objective_of("ctc_asr") == ({"wer": 1.0}, "lower")
    assert objective_of("fake") == ({"accuracy": 1.0}, "higher")
    report, out = _tune(_params(n_trials=5), tmp_path)
    assert report["direction"] == "higher"
    values = [row["value"] for row in report["trials"] if row["state"] == "COMPLETE"]
    best = json.loads((out["best"] / "best_params.json").read_text())
    assert best["value"] == pytest.approx(max(values), abs=1e-4), "the highest accuracy wins"
    assert len(fake.calls) == 5
    assert (out["trials"] / "trials.csv").read_text().count("\n") == 6
    assert (out["trials"] / "optimization_history.png").stat().st_size > 0
    assert (out["trials"] / "param_importances.png").is_file()
    assert (out["trials"] / "study.journal").is_file(), "the study travels with the outputs"


def test_budget_and_trial_values_reach_the_task(fake, tmp_path):
    _tune(_params(n_trials=2, budget={"epochs": 0.5}, train={"epochs": 9, "width": 7}), tmp_path)
    assert all(c["epochs"] == 0.5 and c["width"] == 7 for c in fake.calls), "train values, then the budget"
    assert len({c["lr"] for c in fake.calls}) == 2


def test_the_grid_sampler_visits_every_point_once_and_plots_the_ablation(fake, tmp_path):
    params = _params(sampler="grid", n_trials=50, space={
        "use_aux": {"type": "categorical", "choices": [False, True]},
        "lr": {"type": "float", "low": 0.001, "high": 0.003, "step": 0.001}})
    assert params.trials_to_run() == 6
    report, out = _tune(params, tmp_path)
    seen = sorted((c["use_aux"], round(c["lr"], 6)) for c in fake.calls)
    assert seen == sorted((a, lr) for a in (False, True) for lr in (0.001, 0.002, 0.003))
    assert report["best_params"] == {"use_aux": True, "lr": 0.001}
    assert (out["trials"] / "ablation.png").is_file()


def test_seed_replicates_are_compared_by_their_mean_and_train_gets_no_seed(fake, tmp_path):
    params = _params(sampler="grid", n_trials=50, budget={"lr": 1e-3, "lucky_seed": 3}, space={
        "use_aux": {"type": "categorical", "choices": [False, True]},
        "seed": {"type": "categorical", "choices": [1, 2, 3]}})
    report, out = _tune(params, tmp_path)
    assert sorted((c["use_aux"], c["seed"]) for c in fake.calls) == [(a, s) for a in (False, True) for s in (1, 2, 3)]
    plain, aux = report["configurations"]
    assert plain["params"] == {"use_aux": False} and aux["params"] == {"use_aux": True}
    assert plain["n"] == aux["n"] == 3 and sorted(plain["seeds"]) == [1, 2, 3]
    assert plain["mean"] == pytest.approx(1.0 + 0.25 / 3, abs=1e-4)
    assert plain["sd"] == pytest.approx(0.1443, abs=1e-4) and aux["sd"] == pytest.approx(0.0)
    # the single best trial is (no aux, the lucky seed); the best configuration by its mean is with aux
    assert max(report["trials"], key=lambda row: row["value"])["param_use_aux"] is False
    assert report["best_params"] == {"use_aux": True} and report["best_trial"] is None
    best = json.loads((out["best"] / "best_params.json").read_text())
    assert best["params"] == {"use_aux": True} and best["mean_over_seeds"] == 3
    assert best["value"] == pytest.approx(1.1)
    rows = (out["trials"] / "configurations.csv").read_text().splitlines()
    assert rows[0] == "use_aux,mean,sd,n,values" and rows[2].startswith("True,1.1,0.0,3,")
    assert (out["trials"] / "ablation.png").is_file()
    applied, note = apply_tuned(FakeTrainParams(seed=7), out["best"])
    assert applied.use_aux is True and applied.seed == 7, "train keeps its own seed"
    assert "the mean of 3 seeds" in note["note"]


def test_a_clearly_worse_trial_is_pruned_at_an_early_evaluation(fake, tmp_path):
    params = _params(n_trials=3, pruner="median", pruner_startup_trials=1, pruner_warmup_evaluations=0,
                     sampler="grid", space={"lr": {"type": "categorical", "choices": [1e-3, 1e-1, 1e-5]}})
    report, _ = _tune(params, tmp_path)
    states = {row["param_lr"]: row["state"] for row in report["trials"]}
    assert states[1e-3] == "COMPLETE"
    assert {states[1e-1], states[1e-5]} == {"PRUNED"}
    pruned = [row for row in report["trials"] if row["state"] == "PRUNED"]
    assert all(row["pruned_at_evaluation"] == 1 for row in pruned), "stopped at its first evaluation"
    assert report["metrics"]["trials_pruned"] == 2


def test_a_killed_search_resumes_with_its_finished_trials(fake, tmp_path):
    from steps.common.tuning import open_study

    first, out = _tune(_params(n_trials=2), tmp_path)
    kept = [(row["trial"], row["value"]) for row in first["trials"]]
    study = open_study(_params(), out["checkpoints"], "higher")
    cut_off = study.ask({"lr": __import__("optuna").distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    fake.calls.clear()  # the stage was killed during this trial: it stays RUNNING in the journal

    second, _ = _tune(_params(n_trials=4), tmp_path)
    rows = second["trials"]
    assert [(r["trial"], r["value"]) for r in rows[:2]] == kept, "finished trials are kept as they were"
    assert second["resumed_trials"] == 2 and second["interrupted_trials"] == [cut_off.number]
    assert rows[cut_off.number]["state"] == "FAIL" and "interrupted" in rows[cut_off.number]["note"]
    assert len(fake.calls) == 2, "only the two missing trials ran"
    assert fake.calls[0]["lr"] == pytest.approx(cut_off.params["lr"]), "the cut-off trial's values run again"
    earlier = [r["param_lr"] for r in rows[:2]]
    assert all(fake.calls[1]["lr"] != pytest.approx(lr) for lr in earlier), "a resumed sampler repeats no trial"
    assert sum(r["state"] == "COMPLETE" for r in rows) == 4


def test_a_finished_search_runs_nothing_again(fake, tmp_path):
    _tune(_params(n_trials=2), tmp_path)
    fake.calls.clear()
    again, _ = _tune(_params(n_trials=2), tmp_path)
    assert fake.calls == [] and again["resumed_trials"] == 2


def test_train_uses_the_best_values_and_says_so(tmp_path):
    (tmp_path / "best_params.json").write_text(json.dumps(
        {"params": {"lr": 0.004, "batch_size": 8}, "value": 0.61, "objective": "wer", "trials": 4}))
    model = get_pipeline("ctc_asr", "tiny", []).validated_params()["train"]
    applied, tuned = apply_tuned(model, tmp_path)
    assert (applied.lr, applied.batch_size) == (0.004, 8) and applied.epochs == model.epochs
    assert tuned["profile_values"] == {"lr": model.lr, "batch_size": model.batch_size}
    assert "trained with the tuned values lr=0.004, batch_size=8" in tuned["note"]
    assert apply_tuned(model, None) == (model, None)
