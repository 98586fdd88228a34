"""The one fit every task's train stage uses: hyper-parameters, the Hugging Face Trainer, the report.

A task builds its model and datasets, then calls ``fit``: TrainingArguments from the task's params
(CPU or GPU, bf16 where supported, evaluation every N epochs, best model by eval loss, or for a
sequence-to-sequence model the Seq2SeqTrainer evaluating generated text, best model by its metric:
``Generation``), resume from the last checkpoint in the checkpoints folder, early stopping, optional
batching by duration, the loss history (``history.json``) and curve (``loss_curve.png``) in the
artifacts folder. The task checks what it must (CTC collapse, ...) and then ``run.save(...)``s the
best model.

torch and transformers are imported inside the functions. The hyper-parameters every task accepts,
``TrainParamsBase``, live in ``steps/common/train_params.py``: task ``params`` modules import them and
must stay cheap (no plotting, no training code).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.manifest import Utterance, load_split
from steps.common.plots import plot_training_curves
from steps.common.train_params import TrainParamsBase

log = logging.getLogger(__name__)


Split = tuple[list[Utterance], Path]

# Called after every evaluation of ``fit`` with (evaluation number from 1, the eval metrics); the tune
# stage reports them to its trial and raises to stop a trial it prunes. Empty outside tuning.
EVALUATION_HOOKS: list[Callable[[int, dict[str, float]], None]] = []


def seed_and_threads(seed: int) -> None:
    """Call before building the model: seeds its initialisation; training uses every CPU core."""
    import torch
    from transformers import set_seed

    set_seed(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def training_splits(data: Path, params: TrainParamsBase, merge_validation: bool = False) -> tuple[Split, Split]:
    """(train records, manifest) and (validation records, manifest); without a validation split,
    the first tenth of the training records stands in (evaluation, early stopping and the best
    model need one).

    ``merge_validation`` (the low-resource recipe: train on everything but the test split): the
    validation split joins the training records, except its first ``max_eval_samples`` utterances,
    which stay out as the evaluation slice; other recordings of their sentences are left out of both."""
    train = load_split(data, "train", params.max_train_samples)
    if merge_validation:
        return _merged_splits(data, params, train)
    validation = load_split(data, "validation", params.max_eval_samples)
    if not validation[0]:
        log.warning("no validation split in %s: validating on the first tenth of the training split", data)
        validation = (train[0][: max(1, len(train[0]) // 10)], train[1])
    return train, validation


def _merged_splits(data: Path, params: TrainParamsBase, train: Split) -> tuple[Split, Split]:
    records, manifest = load_split(data, "validation")
    if manifest.parent != train[1].parent:  # audio paths are relative to the manifest: one folder for both
        raise ValueError(f"cannot merge {manifest} into {train[1]}: the split manifests are in different folders")
    held = records[: params.max_eval_samples or len(records)]
    held_texts = {r.text for r in held}
    merged = [r for r in records if r.text not in held_texts]
    log.info("training on train + validation (%d + %d utterances); evaluating on a slice of %d validation "
             "utterances kept out of training (%d more recordings of their sentences left out)",
             len(train[0]), len(merged), len(held), len(records) - len(held) - len(merged))
    if not held:
        log.warning("no validation split in %s: validating on the first tenth of the training split", data)
        return train, (train[0][: max(1, len(train[0]) // 10)], train[1])
    return (train[0] + merged, train[1]), (held, manifest)


def pad_labels(labels: list[list[int]]):
    """Token ids of a batch, right-padded with -100 (ignored by the loss) to the longest."""
    import torch

    width = max(len(row) for row in labels)
    out = torch.full((len(labels), width), -100, dtype=torch.long)
    for i, row in enumerate(labels):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def steps_per_epoch(train_items: int, batch_size: int, grad_accum: int) -> int:
    """Optimiser steps in one epoch, counted as the Trainer counts them (one device)."""
    batches = math.ceil(train_items / batch_size)
    return max(1, math.ceil(batches / grad_accum))


def training_arguments(params: TrainParamsBase, checkpoints: Path, eval_every_epochs: int = 1,
                       train_items: int | None = None, **overrides: Any):
    """TrainingArguments for CPU or GPU (bf16 where supported), best model by eval loss, no external loggers.

    Evaluation (and a checkpoint) every epoch, or every ``eval_every_epochs`` epochs counted in
    optimiser steps of ``train_items`` training items."""
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    use_gpu = torch.cuda.is_available()
    cadence: dict[str, Any] = {"eval_strategy": "epoch", "save_strategy": "epoch"}
    if eval_every_epochs > 1:
        if train_items is None:
            raise ValueError("evaluating every few epochs needs the number of training items (train_items)")
        every = steps_per_epoch(train_items, params.batch_size, params.grad_accum) * eval_every_epochs
        cadence = {"eval_strategy": "steps", "eval_steps": every, "save_strategy": "steps", "save_steps": every}
    args: dict[str, Any] = dict(
        output_dir=str(checkpoints), num_train_epochs=params.epochs, max_steps=params.max_steps,
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum, learning_rate=params.lr, warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay, logging_steps=params.logging_steps, **cadence,
        save_total_limit=params.save_total_limit, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
        seed=params.seed, use_cpu=not use_gpu, bf16=use_gpu and torch.cuda.is_bf16_supported(),
        disable_tqdm=os.environ.get("SPEECHOPS_PROGRESS", "1") == "0",
    )
    args.update(overrides)
    return (Seq2SeqTrainingArguments if "predict_with_generate" in overrides else TrainingArguments)(**args)


CHECKPOINT_COMPLETE = "speechops-complete.json"  # written into a checkpoint folder once it is whole


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest *complete* ``checkpoint-N`` folder to resume from, if any. A checkpoint is complete once
    ``CHECKPOINT_COMPLETE`` is in it (written after the Trainer saved everything); a folder without it was cut
    off while being written: it is moved aside (``incomplete-checkpoint-N-<time>``, kept for inspection) and
    reported, and the one before it is used."""
    import re

    folder = Path(checkpoints)
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for step, path in reversed(found):
        if (path / CHECKPOINT_COMPLETE).is_file():
            return str(path)
        # not named checkpoint-*: the Trainer's rotation would take it for an old checkpoint and delete it
        aside = path.with_name(f"incomplete-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        log.warning("checkpoint %s is incomplete (cut off while being written): moved aside to %s; resuming from "
                    "an earlier one", path.name, aside.name)
    return None


def _checkpoint_callback(params: TrainParamsBase):
    """A TrainerCallback that marks every saved checkpoint complete, and asks for a checkpoint between
    evaluations every ``checkpoint_minutes`` / ``checkpoint_steps``."""
    from transformers import TrainerCallback

    class Checkpoints(TrainerCallback):
        def __init__(self):
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            due = params.checkpoint_steps and state.global_step % params.checkpoint_steps == 0
            if params.checkpoint_minutes and time.monotonic() - self.last >= params.checkpoint_minutes * 60:
                due = True
            if due and state.global_step < state.max_steps:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            self.last = time.monotonic()
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                (path / CHECKPOINT_COMPLETE).write_text(json.dumps({"step": state.global_step,
                                                                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}))

    return Checkpoints()


@dataclass(frozen=True)
class Generation:
    """Evaluate by generating, as the Seq2SeqTrainer does with ``predict_with_generate``: the task's
    ``compute_metrics`` scores the generated token ids, and the best model and early stopping follow
    ``eval_<best_metric>`` instead of the eval loss."""

    max_length: int
    best_metric: str = "wer"
    greater_is_better: bool = False

    def arguments(self) -> dict[str, Any]:
        return dict(predict_with_generate=True, generation_max_length=self.max_length, generation_num_beams=1,
                    metric_for_best_model=self.best_metric, greater_is_better=self.greater_is_better)


def _trainer_class(group_lengths: list[float] | None, seq2seq: bool = False):
    from transformers import Seq2SeqTrainer, Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class GroupedLearningRates(Seq2SeqTrainer if seq2seq else Trainer):
        """A model with ``optimizer_groups(weight_decay)`` (parameter groups with their own ``lr``, e.g. a
        backbone slower than its heads) gets them; the schedule scales every group alike."""

        def create_optimizer(self, model=None):
            target = self.model if model is None else model
            if self.optimizer is None and hasattr(target, "optimizer_groups"):
                optimizer_class, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
                self.optimizer = optimizer_class(target.optimizer_groups(self.args.weight_decay), **kwargs)
                return self.optimizer
            return super().create_optimizer(model)

    base = GroupedLearningRates
    if group_lengths is None:
        return base
    lengths = [int(seconds * 1000) for seconds in group_lengths]

    class LengthGroupedTrainer(base):
        """Batches utterances of similar duration together (less padding), by their manifest durations."""

        def _get_train_sampler(self, train_dataset=None):
            return LengthGroupedSampler(self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths)

    return LengthGroupedTrainer


def _evaluation_hooks_callback():
    """A TrainerCallback that hands each evaluation's metrics to ``EVALUATION_HOOKS``."""
    from transformers import TrainerCallback

    class EvaluationHooks(TrainerCallback):
        def __init__(self):
            self.count = 0

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.count += 1
            for hook in list(EVALUATION_HOOKS):
                hook(self.count, dict(metrics or {}))

    return EvaluationHooks()


def _validation_callback(validate: Callable[[Any], dict[str, float]]):
    """A TrainerCallback that scores the model with the task's own ``validate(model)`` at each evaluation
    (decoding, a regression head: what ``compute_metrics`` cannot see) and adds ``eval_<name>`` to that
    evaluation's metrics and its history entry, before ``EVALUATION_HOOKS`` see them."""
    from transformers import TrainerCallback

    class Validation(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            was_training = model.training
            try:
                scores = {f"eval_{name}": float(value) for name, value in validate(model).items()}
            finally:
                model.train(was_training)
            if metrics is not None:
                metrics.update(scores)
            if state.log_history and "eval_loss" in state.log_history[-1]:
                state.log_history[-1].update(scores)

    return Validation()


def build_trainer(model, params: TrainParamsBase, *, train_dataset, eval_dataset, collator, checkpoints: Path,
                  eval_every_epochs: int = 1, group_lengths: list[float] | None = None,
                  compute_metrics: Callable | None = None, generation: Generation | None = None,
                  arguments: dict[str, Any] | None = None, validate: Callable[[Any], dict[str, float]] | None = None):
    """The Trainer (early stopping after ``params.early_stopping_patience`` evaluations without a
    better eval loss) and the checkpoint to resume from (None: start afresh).

    ``group_lengths``: durations of the training items, to batch similar lengths together.
    ``compute_metrics``: the task's validation metrics at each evaluation (logged as ``eval_<name>``).
    ``generation``: evaluate by generating (a sequence-to-sequence model), best model by its metric.
    ``arguments``: TrainingArguments the task sets itself (a step-based cadence, warm-up steps).
    ``validate``: the task's own scoring of the model at each evaluation (``eval_<name>``), see
    ``_validation_callback``."""
    from transformers import EarlyStoppingCallback

    args = training_arguments(params, checkpoints, eval_every_epochs, len(train_dataset),
                              **(generation.arguments() if generation else {}), **(arguments or {}))
    callbacks = [EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience),
                 _checkpoint_callback(params)]
    if validate is not None:  # first: early stopping and the best model may follow a metric it adds
        callbacks.insert(0, _validation_callback(validate))
    if EVALUATION_HOOKS:
        callbacks.append(_evaluation_hooks_callback())
    trainer = _trainer_class(group_lengths, seq2seq=generation is not None)(
        model=model, args=args, data_collator=collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
        callbacks=callbacks, compute_metrics=compute_metrics)
    resume = last_checkpoint(checkpoints)
    if resume:
        log.info("resuming from checkpoint %s", resume)
    return trainer, resume


@dataclass
class TrainingRun:
    trainer: Any
    training_loss: float
    seconds: float
    resumed_from: str | None
    history: list[dict]
    loss_curve: Path

    @property
    def model(self):
        """The trained model: the best by eval loss when an evaluation happened."""
        return self.trainer.model

    def save(self, model_out: Path, *processors: Any) -> None:
        """The model and its tokenizer / feature extractor, together in ``model_out``."""
        self.trainer.save_model(str(model_out))
        for processor in processors:
            processor.save_pretrained(model_out)

    def report(self, **metrics: Any) -> dict:
        """The train stage's report; ``metrics`` are the task's own, shown after the losses."""
        evals = [h for h in self.history if "eval_loss" in h]
        state = self.trainer.state
        return {
            "history": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in self.history],
            "train_seconds": round(self.seconds, 1),
            "resumed_from": self.resumed_from,
            "global_steps": state.global_step,
            "best_checkpoint": state.best_model_checkpoint,
            "loss_curve": str(self.loss_curve),
            "metrics": {
                "train_loss": round(float(self.training_loss), 4),
                "eval_loss": round(float(evals[-1]["eval_loss"]), 4) if evals else None,
                "best_eval_loss": round(float(min(h["eval_loss"] for h in evals)), 4) if evals else None,
                **metrics,
                "steps": state.global_step,
                "train_s": round(self.seconds, 1),
            },
        }


def fit(model, params: TrainParamsBase, *, train_dataset, eval_dataset, collator, checkpoints: Path,
        artifacts: Path, title: str, eval_every_epochs: int = 1,
        group_lengths: list[float] | None = None, compute_metrics: Callable | None = None,
        generation: Generation | None = None, arguments: dict[str, Any] | None = None,
        validate: Callable[[Any], dict[str, float]] | None = None) -> TrainingRun:
    """Train ``model`` (resuming from the last checkpoint), then write ``history.json`` and
    ``loss_curve.png`` to ``artifacts``; the returned run holds the best model, not yet saved."""
    trainer, resume = build_trainer(model, params, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                    collator=collator, checkpoints=checkpoints,
                                    eval_every_epochs=eval_every_epochs, group_lengths=group_lengths,
                                    compute_metrics=compute_metrics, generation=generation, arguments=arguments,
                                    validate=validate)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - started
    history = list(trainer.state.log_history)
    (artifacts / "history.json").write_text(json.dumps(history, indent=2))
    curve = plot_training_curves(history, artifacts / "loss_curve.png", title=title)
    return TrainingRun(trainer, float(result.training_loss), seconds, resume, history, curve)
