"""The ``tune`` stage's parameters: the declared search space, the sampler, the budget of a trial.

Declared once in a profile's ``stages.tune`` section and validated (pydantic) when the pipeline is
built, before anything runs. The local stage (``steps/tune.py``, Optuna) and the SageMaker backend
(a TuningStep) read the same object. Only pydantic here: building a pipeline imports this module.

A space maps a train parameter to a range::

    space:
      lr: {type: float, low: 1.0e-4, high: 5.0e-3, log: true}
      batch_size: {type: categorical, choices: [8, 16]}
      layers: {type: int, low: 1, high: 4}

``sampler: grid`` (ablations) needs every dimension to be categorical (or an int/float with a
``step``): the grid is every combination, and ``n_trials`` is capped at its size. A grid dimension
named ``seed`` makes replicates: each configuration trains once per seed and configurations are
compared by their mean (``tuning.py``); the other samplers refuse it.

The objective is the task's (``Task.tune_objective``: weights over its gate metrics); its direction
is the gate's direction of those metrics, never set here.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steps.common.stage import Params

BEST_FILE = "best_params.json"  # in the tune stage's ``best`` output; read by the train stage
REPLICATE = "seed"  # a grid dimension over train seeds: replicates of each configuration, compared by their mean


class _Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(_Range):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0, description="discretise (not with log)")

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self

    def grid(self) -> list[Any] | None:
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


class IntRange(_Range):
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("a log int range needs low > 0 and step 1")
        return self

    def grid(self) -> list[Any] | None:
        return list(range(self.low, self.high + 1, self.step))


class CategoricalRange(_Range):
    type: Literal["categorical"] = "categorical"
    choices: list[bool | int | float | str | None] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CategoricalRange:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self

    def grid(self) -> list[Any] | None:
        return list(self.choices)


Range = Annotated[FloatRange | IntRange | CategoricalRange, Field(discriminator="type")]
Sampler = Literal["tpe", "grid", "random"]


class TuneParams(Params):
    """Parameters of the ``tune`` stage (``stages.tune`` in a profile)."""

    enabled: bool = Field(False, description="run the search before train (off by default)")
    n_trials: int = Field(8, ge=1, description="trials to finish (resumed trials count)")
    timeout_s: float | None = Field(None, gt=0, description="wall-clock limit of one run of the search, seconds")
    parallelism: int = Field(1, ge=1, description="trials at once (1 on small machines)")
    sampler: Sampler = Field("tpe", description="tpe (default), random, or grid (ablations)")
    pruner: Literal["median", "none"] = Field("median", description="median pruning on intermediate scores")
    pruner_warmup_evaluations: int = Field(1, ge=0, description="evaluations of a trial before it may be pruned")
    pruner_startup_trials: int = Field(2, ge=0, description="finished trials before pruning starts")
    seed: int = 42
    space: dict[str, Range] = Field(default_factory=dict, description="train parameter -> range")
    budget: dict[str, Any] = Field(default_factory=dict,
                                   description="train parameters of every trial (a short budget: epochs, ...)")
    # filled by the pipeline definition from the profile's train section; not written by hand
    train: dict[str, Any] = Field(default_factory=dict,
                                  description="the train stage's parameters (set by the pipeline definition)")

    @model_validator(mode="after")
    def _check_space(self) -> TuneParams:
        if not self.enabled:
            return self
        if not self.space:
            raise ValueError("tune is enabled but its space is empty: declare at least one range under "
                             "stages.tune.space")
        clash = sorted(set(self.space) & set(self.budget))
        if clash:
            raise ValueError(f"{', '.join(clash)} both searched (space) and fixed (budget)")
        if REPLICATE in self.space and self.sampler != "grid":
            raise ValueError("a seed dimension makes replicates of each grid point: it needs sampler grid "
                             f"(not {self.sampler}); fix the seed in budget instead")
        if self.sampler == "grid":
            open_ranges = [name for name, r in self.space.items() if r.grid() is None]
            if open_ranges:
                raise ValueError(f"sampler grid needs categorical (or stepped) ranges; {', '.join(open_ranges)} "
                                 f"are continuous: give choices or a step")
        return self

    def grid(self) -> dict[str, list[Any]]:
        """The search space as Optuna's GridSampler takes it (grid sampler only)."""
        return {name: r.grid() or [] for name, r in self.space.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def grid_points(self) -> list[dict[str, Any]]:
        grid = self.grid()
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]

    def trials_to_run(self) -> int:
        return min(self.n_trials, self.grid_size()) if self.sampler == "grid" else self.n_trials


def tune_params_for(task: str | None) -> type[TuneParams]:
    """The tune stage's parameter model for ``task``: its space, budget and train values must name
    parameters of the task's train stage, with valid values (checked when the pipeline is built)."""
    if task is None:
        return TuneParams
    from steps.tasks import get_task

    train_model = get_task(task).params_for("train")
    fields = train_model.model_fields

    class TaskTuneParams(TuneParams):
        @model_validator(mode="after")
        def _check_names(self) -> TaskTuneParams:
            problems = []
            for where, names in (("space", self.space), ("budget", self.budget)):
                for name in names:
                    if name not in fields:
                        close = difflib.get_close_matches(name, list(fields), 1, 0.6)
                        problems.append(f"{where}.{name} is not a train parameter of task {task}"
                                        + (f" (did you mean {close[0]}?)" if close else ""))
            if problems:
                raise ValueError("; ".join(problems))
            if not self.enabled:
                return self
            train_model.model_validate({**self.train, **self.budget})  # the budget's values are valid train values
            for name, r in self.space.items():
                for value in (r.grid() or [r.low, r.high]):
                    train_model.model_validate({**self.train, **self.budget, name: value})
            return self

    TaskTuneParams.__name__ = f"TuneParams_{task}"
    return TaskTuneParams


def objective_of(task: str) -> tuple[dict[str, float], Literal["lower", "higher"]]:
    """The task's tuning objective (weights over gate metrics) and its direction, from the gate."""
    from steps.tasks import get_task

    t = get_task(task)
    weights = dict(getattr(t, "tune_objective", None) or {t.gate.metrics[0].name: 1.0})
    directions = {t.gate.metric(name).direction for name in weights}
    if len(directions) != 1:
        raise ValueError(f"task {task}: the objective {weights} mixes directions {sorted(directions)}")
    return weights, directions.pop()


def objective_name(weights: dict[str, float]) -> str:
    """``wer`` for one metric, ``wer+0.05*intensity_rmse`` for a combination."""
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(weights))
    return "+".join(name if w == 1.0 else f"{w:g}*{name}" for name, w in weights.items())


def combine(weights: dict[str, float], values: dict[str, Any], prefix: str) -> float | None:
    """The weighted objective from ``<prefix><metric>`` values, None when one is missing."""
    total = 0.0
    for name, weight in weights.items():
        value = values.get(f"{prefix}{name}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return None
        total += weight * float(value)
    return total


def apply_tuned(params: Params, tune_output: Path | None) -> tuple[Params, dict[str, Any] | None]:
    """The train parameters with the tune stage's best values applied (``tune_output/best_params.json``),
    and what changed, for the report; unchanged without a tune output."""
    if tune_output is None or not (Path(tune_output) / BEST_FILE).is_file():
        return params, None
    best = json.loads((Path(tune_output) / BEST_FILE).read_text())
    values = best.get("params") or {}
    applied = type(params).model_validate({**params.model_dump(), **values})
    before = {k: getattr(params, k) for k in values}
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return applied, {"values": values, "profile_values": before, "objective": best.get("objective"),
                     "value": best.get("value"), "trial": best.get("trial"),
                     "note": f"trained with the tuned values {shown} (tune: best of {best.get('trials')} trials, "
                             f"validation {best.get('objective')} {best.get('value', float('nan')):.4f}"
                             + (f", the mean of {best['mean_over_seeds']} seeds" if best.get("mean_over_seeds") else "")
                             + "); "
                             f"the profile had " + ", ".join(f"{k}={v}" for k, v in before.items())}
