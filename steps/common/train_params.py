"""The hyper-parameters every task's train stage accepts (tasks add their own fields).

Kept apart from ``steps/common/training.py`` so a task's ``params`` module, which every stage and
every pipeline build imports, pulls in pydantic and nothing heavier.
"""

from __future__ import annotations

from pydantic import Field

from steps.common.stage import Params


class TrainParamsBase(Params):
    """Hyper-parameters every task's train stage accepts (tasks add their own fields)."""

    epochs: float = Field(2.0, gt=0)
    max_steps: int = Field(-1, description="stop after N optimiser steps (-1: use epochs)")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0, lt=10)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(200, ge=1)
    early_stopping_patience: int = Field(3, ge=1, description="evaluations without eval-loss improvement")
    logging_steps: int = Field(10, ge=1)
    # checkpoints between evaluations, so a killed run loses little (steps/common/training.py)
    checkpoint_minutes: float | None = Field(
        5.0, gt=0, description="also checkpoint whenever this many minutes passed since the last checkpoint "
                               "(null: only at evaluations); bounds the work a kill loses")
    checkpoint_steps: int | None = Field(None, ge=1, description="also checkpoint every N optimiser steps")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept (the best one is always kept too)")
    seed: int = 42
