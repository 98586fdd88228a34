"""What every task's training shares: the common hyper-parameters and the HF TrainingArguments built from them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
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
    seed: int = 42


def training_arguments(params: TrainParamsBase, checkpoints: Path, **overrides: Any):
    """TrainingArguments for CPU or GPU (bf16 where supported), best model by eval loss, no external loggers."""
    from transformers import TrainingArguments

    use_gpu = torch.cuda.is_available()
    args: dict[str, Any] = dict(
        output_dir=str(checkpoints), num_train_epochs=params.epochs, max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum, learning_rate=params.lr, warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay, logging_steps=params.logging_steps, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
        seed=params.seed, use_cpu=not use_gpu, bf16=use_gpu and torch.cuda.is_bf16_supported(),
        disable_tqdm=os.environ.get("SPEECHOPS_PROGRESS", "1") == "0",
    )
    args.update(overrides)
    return TrainingArguments(**args)
