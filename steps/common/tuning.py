"""The search behind the ``tune`` stage: Optuna around the task's own ``train`` (and so the one ``fit``).

Each trial trains the task with the profile's train values, the trial budget (``budget``) and the
sampled values (``space``), in a folder of its own, then scores the validation split with the task's
objective (``Task.tune_objective``, direction from the gate). After every evaluation ``fit`` hands the
validation metrics to a hook (``training.EVALUATION_HOOKS``): the trial reports the objective there,
and the median pruner stops a trial that is clearly worse than the others at the same evaluation.

The study is an Optuna journal file in the checkpoints folder, which survives a killed stage (the
local backend keeps ``runs/.checkpoints/<stage>-<key>/``; SageMaker syncs ``/opt/ml/checkpoints``):
a re-run loads it, marks the trial that was cut off as failed, queues its values again and runs only
the trials still missing. Outputs: ``best/best_params.json`` (read by the train stage) and
``trials/`` (``trials.csv``, ``trials.json``, the plots and a copy of the journal; with the grid sampler
also ``configurations.csv``/``.json``, the ablation table).

Replicates: a grid dimension named ``seed`` (a train parameter) trains every configuration once per seed.
Configurations are then compared by their mean over the seeds, the table and ``ablation.png`` show the
spread (sample standard deviation), and train gets the best configuration's values without a seed. A
single seed hides how much of a difference between two configurations is training noise.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from steps.common import training
from steps.common.stage import StageError
from steps.common.tune_space import REPLICATE, TuneParams, combine, objective_name, objective_of

log = logging.getLogger(__name__)

STUDY_NAME = "tune"
JOURNAL = "study.journal"
from steps.common.tune_space import BEST_FILE


def open_study(params: TuneParams, storage_dir: Path, direction: str):
    """The study in ``storage_dir/study.journal``, created or loaded (resumed)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(storage_dir / JOURNAL)))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=params.pruner_startup_trials,
                                          n_warmup_steps=params.pruner_warmup_evaluations)
              if params.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=make_sampler(params, params.seed),
                                pruner=pruner, direction="minimize" if direction == "lower" else "maximize",
                                load_if_exists=True)
    if study.trials:  # resumed: a sampler seeded as before would suggest the first trials' values again
        study.sampler = make_sampler(params, params.seed + len(study.trials))
    return study


def make_sampler(params: TuneParams, seed: int):
    import optuna

    if params.sampler == "grid":
        return optuna.samplers.GridSampler(params.grid(), seed=seed)
    if params.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, params.n_trials))


def recover_interrupted(study) -> list[int]:
    """Trials left RUNNING by a killed stage: mark them failed and queue their values again."""
    from optuna.trial import TrialState

    interrupted = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", "interrupted (stage killed); re-queued")
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
        interrupted.append(trial.number)
    return interrupted


def suggest(trial, params: TuneParams) -> dict[str, Any]:
    values = {}
    for name, r in params.space.items():
        if r.type == "float":
            values[name] = trial.suggest_float(name, r.low, r.high, log=r.log, step=r.step)
        elif r.type == "int":
            values[name] = trial.suggest_int(name, r.low, r.high, log=r.log, step=r.step)
        else:
            values[name] = trial.suggest_categorical(name, r.choices)
    return values


def finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


class Objective:
    """One trial: the task's train with the trial's values, scored on the validation split."""

    def __init__(self, params: TuneParams, task: str, data: Path, tokenizer: Path, trials_dir: Path):
        from steps.tasks import get_task

        self.params, self.task, self.data, self.tokenizer, self.trials_dir = params, task, data, tokenizer, trials_dir
        self.weights, self.direction = objective_of(task)
        self.train_model = get_task(task).params_for("train")

    def __call__(self, trial) -> float:
        import optuna

        from steps.tasks import get_task

        sampled = suggest(trial, self.params)
        values = self.train_model.model_validate({**self.params.train, **self.params.budget, **sampled})
        folder = self.trials_dir / f"trial-{trial.number:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        model, checkpoints, artifacts = (folder / "model", folder / "checkpoints", folder / "artifacts")
        for path in (model, checkpoints, artifacts):
            path.mkdir(parents=True)
        scores: list[float] = []
        thread = threading.get_ident()

        def report(evaluation: int, metrics: dict[str, float]) -> None:
            if threading.get_ident() != thread:  # another trial's training (parallelism > 1)
                return
            value = combine(self.weights, metrics, "eval_")
            if value is None:
                return
            scores.append(value)
            trial.report(value, evaluation)
            log.info("trial %d, evaluation %d: %s = %.4f", trial.number, evaluation,
                     objective_name(self.weights), value)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_evaluation", evaluation)
                raise optuna.TrialPruned(f"evaluation {evaluation}: {value:.4f} is worse than the median")

        log.info("trial %d: %s", trial.number, sampled)
        started = time.time()
        training.EVALUATION_HOOKS.append(report)
        try:
            result = get_task(self.task).train(values, self.data, self.tokenizer, model, checkpoints, artifacts)
        finally:
            training.EVALUATION_HOOKS.remove(report)
            trial.set_user_attr("train_s", round(time.time() - started, 1))
            trial.set_user_attr("intermediate", [round(s, 4) for s in scores])
            shutil.rmtree(model, ignore_errors=True)  # the trial's model and checkpoints are not kept
            shutil.rmtree(checkpoints, ignore_errors=True)
        metrics = result.get("metrics", {})
        value = combine(self.weights, metrics, "val_")
        if value is None and scores:
            value = scores[-1]  # the task reports no final validation score: the last evaluation's
        if value is None:
            raise StageError(f"task {self.task} reports no validation {objective_name(self.weights)} "
                             f"(neither val_<metric> in its train report nor eval_<metric> at evaluations)")
        trial.set_user_attr("steps", metrics.get("steps"))
        return value


def tune(params: TuneParams, task: str, data: Path, tokenizer: Path, best_out: Path, trials_out: Path,
         storage_dir: Path) -> dict:
    import optuna

    weights, direction = objective_of(task)
    name = objective_name(weights)
    study = open_study(params, storage_dir, direction)
    interrupted = recover_interrupted(study)
    kept = len(finished(study))
    target = params.trials_to_run()
    missing = max(0, target - kept)
    log.info("tune: %s (%s is better), sampler %s, %d of %d trials finished%s", name, direction, params.sampler,
             kept, target, f"; trials {interrupted} were cut off and are queued again" if interrupted else "")
    if missing:
        optuna.logging.set_verbosity(optuna.logging.INFO)
        study.optimize(Objective(params, task, data, tokenizer, storage_dir / "trials"), n_trials=missing,
                       timeout=params.timeout_s, n_jobs=params.parallelism, catch=(Exception,),
                       gc_after_trial=True)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if not done:
        reasons = sorted({t.system_attrs.get("fail_reason", t.state.name) for t in trials})
        raise StageError(f"no trial of the search finished ({len(trials)} tried): " + "; ".join(reasons)[:1500])
    table = configurations(trials, list(params.space))
    replicated = REPLICATE in params.space
    if replicated:  # the best configuration by its mean over the seeds; train keeps its own seed
        pick = (min if direction == "lower" else max)(table, key=lambda row: row["mean"])
        best_params, best_value, best_number = pick["params"], pick["mean"], None
    else:
        best = study.best_trial
        best_params, best_value, best_number = best.params, best.value, best.number
    best_out.mkdir(parents=True, exist_ok=True)
    trials_out.mkdir(parents=True, exist_ok=True)
    result = {"params": best_params, "value": best_value, "objective": name, "direction": direction,
              "trial": best_number, "trials": len(done)}
    if replicated:
        result["mean_over_seeds"] = pick["n"]
    (best_out / BEST_FILE).write_text(json.dumps(result, indent=2))
    rows = trial_rows(trials)
    write_table(rows, trials_out)
    if params.sampler == "grid":
        write_configurations(table, trials_out)
    plots = write_plots(study, params, trials_out, name, table)
    shutil.copy2(storage_dir / JOURNAL, trials_out / JOURNAL)
    for trial_dir in sorted((storage_dir / "trials").glob("trial-*")):  # each trial's loss curve and history
        if (trial_dir / "artifacts").is_dir():
            shutil.copytree(trial_dir / "artifacts", trials_out / trial_dir.name, dirs_exist_ok=True)
    states = [r["state"] for r in rows]
    chosen = (f"best of {len(table)} configurations by the mean of {pick['n']} seeds: {_values(best_params)} "
              f"({name} {best_value:.4f} ± {pick['sd'] or 0:.4f}" if replicated else
              f"best of {len(done)} trials: {_values(best_params)} ({name} {best_value:.4f}")
    return {
        "best_params": best_params, "objective": name, "direction": direction, "best_trial": best_number,
        "sampler": params.sampler, "trials": rows, "configurations": table, "resumed_trials": kept,
        "interrupted_trials": interrupted, "plots": plots,
        "metrics": {f"best_{name}": round(best_value, 4), "trials_complete": states.count("COMPLETE"),
                    "trials_pruned": states.count("PRUNED"), "trials_failed": states.count("FAIL"),
                    **{f"best_{k}": v for k, v in best_params.items()}},
        "notes": [f"{chosen}, {direction} is better); train uses these values"],
    }


def configurations(trials: list, names: list[str]) -> list[dict[str, Any]]:
    """The finished trials grouped by their values other than the seed, in order of value: per configuration
    the mean objective, its sample standard deviation over the seeds (None for one), the count, each value."""
    groups: dict[tuple, list] = {}
    for t in trials:
        if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value):
            key = tuple((n, t.params.get(n)) for n in names if n != REPLICATE)
            groups.setdefault(key, []).append(t)
    rows = []
    for key, members in groups.items():
        values = [t.value for t in members]
        rows.append({"params": dict(key), "mean": round(statistics.fmean(values), 4),
                     "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None, "n": len(values),
                     "values": [round(v, 4) for v in values], "trials": [t.number for t in members],
                     **({"seeds": [t.params.get(REPLICATE) for t in members]} if REPLICATE in names else {})})
    return sorted(rows, key=lambda row: [_order(v) for v in row["params"].values()])


def write_configurations(table: list[dict[str, Any]], out: Path) -> None:
    """The ablation table: ``configurations.json`` and ``configurations.csv`` (one row per configuration)."""
    (out / "configurations.json").write_text(json.dumps(table, indent=2, default=str))
    names = list(dict.fromkeys(k for row in table for k in row["params"]))
    with open(out / "configurations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "mean", "sd", "n", "values"])
        for row in table:
            writer.writerow([*(row["params"].get(n) for n in names), row["mean"], row["sd"], row["n"],
                             " ".join(str(v) for v in row["values"])])


def _order(value: Any) -> tuple:
    """A sort key for grid values of any type: numbers by size, then the rest by their text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, repr(value))


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def trial_rows(trials: list) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name,
                     "value": None if t.value is None or not math.isfinite(t.value) else round(t.value, 4),
                     **{f"param_{k}": v for k, v in t.params.items()},
                     "intermediate": t.user_attrs.get("intermediate"),
                     "pruned_at_evaluation": t.user_attrs.get("pruned_at_evaluation"),
                     "seconds": None if seconds is None else round(seconds, 1),
                     "note": t.system_attrs.get("fail_reason", "")[:300]})
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    (out / "trials.json").write_text(json.dumps(rows, indent=2, default=str))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})


def write_plots(study, params: TuneParams, out: Path, name: str = "objective",
                table: list[dict[str, Any]] | None = None) -> list[str]:
    """optimisation_history.png, param_importances.png (two or more finished trials, more than one
    parameter value), ablation.png (grid sampler): the objective of every configuration in order of value,
    the mean with its spread over the seeds when the grid has replicates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []

    def save(axes, name: str) -> None:
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        written.append(name)

    save(ovm.plot_optimization_history(study), "optimization_history.png")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) >= 2 and any(len({repr(t.params.get(n)) for t in complete}) > 1 for n in params.space):
        try:
            save(ovm.plot_param_importances(study), "param_importances.png")
        except (RuntimeError, ValueError) as exc:  # e.g. a parameter that never varied among finished trials
            log.warning("no parameter importances plot: %s", exc)
    table = configurations(complete, list(params.space)) if table is None else table
    if params.sampler == "grid" and table:
        labels = [_values(row["params"]) or "(one configuration)" for row in table]
        figure, axes = plt.subplots(figsize=(max(5.0, 0.9 * len(labels)), 3.6))
        spread = [row["sd"] or 0.0 for row in table]
        axes.errorbar(range(len(labels)), [row["mean"] for row in table], yerr=spread if any(spread) else None,
                      marker="o", capsize=4)
        if REPLICATE in params.space:
            for x, row in enumerate(table):
                axes.scatter([x] * len(row["values"]), row["values"], s=10, color="grey", alpha=0.6, zorder=3)
        axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        axes.set_ylabel(name)
        seeds = max(row["n"] for row in table)
        axes.set_title("ablation" + (f": mean ± sd over {seeds} seeds" if REPLICATE in params.space else ""),
                       fontsize=10)
        save(axes, "ablation.png")
    return written
