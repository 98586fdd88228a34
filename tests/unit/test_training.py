"""steps.common.training, the one fit: arguments, early stopping, resume, length grouping, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from steps.common.manifest import Utterance, write_manifest
from steps.common.training import (CHECKPOINT_COMPLETE, TrainParamsBase, build_trainer, fit, pad_labels,
                                   steps_per_epoch, training_arguments, training_splits)
from steps.models.wav2vec2.build import build_ctc_model
from steps.models.wav2vec2.features import CTCFeatures


class TinyTokenizer:
    pad_token_id = 0

    def __len__(self) -> int:
        return 6


class ClipSet(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = [{"audio": rng.standard_normal(8000 + 800 * (i % 3)).astype(np.float32) * 0.1,
                       "labels": [1 + i % 5, 2, 3]} for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class Collate:
    def __init__(self):
        from transformers import Wav2Vec2FeatureExtractor

        self.features = CTCFeatures(Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                                             return_attention_mask=True), use_attention_mask=True)

    def __call__(self, items):
        batch = self.features([it["audio"] for it in items])
        batch.pop("sample_mask")
        batch["labels"] = pad_labels([it["labels"] for it in items])
        return batch


def _model():
    torch.manual_seed(0)
    return build_ctc_model("scratch", TinyTokenizer(), hidden_size=32, layers=1, heads=2, ffn_dim=32, conv_dim=16)


def _params(**kw) -> TrainParamsBase:
    return TrainParamsBase(**{"batch_size": 2, "lr": 1e-3, "logging_steps": 1, "early_stopping_patience": 2, **kw})


def test_pad_labels():
    assert pad_labels([[3, 4, 5], [6]]).tolist() == [[3, 4, 5], [6, -100, -100]]


def test_evaluation_cadence(tmp_path):
    args = training_arguments(_params(), tmp_path)
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert steps_per_epoch(10, 4, 1) == 3 and steps_per_epoch(10, 4, 2) == 2 and steps_per_epoch(1, 8, 4) == 1
    every_two = training_arguments(_params(batch_size=4), tmp_path, eval_every_epochs=2, train_items=10)
    assert every_two.eval_strategy == "steps" and every_two.eval_steps == 6 and every_two.save_steps == 6
    with pytest.raises(ValueError, match="train_items"):
        training_arguments(_params(), tmp_path, eval_every_epochs=2)


def test_trainer_set_up_early_stopping_resume_and_grouping(tmp_path):
    from transformers import EarlyStoppingCallback
    from transformers.trainer_pt_utils import LengthGroupedSampler

    checkpoints = tmp_path / "checkpoints"
    trainer, resume = build_trainer(_model(), _params(), train_dataset=ClipSet(4), eval_dataset=ClipSet(2, 1),
                                    collator=Collate(), checkpoints=checkpoints)
    stopping = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert len(stopping) == 1 and stopping[0].early_stopping_patience == 2
    assert resume is None  # no checkpoints folder yet
    for step in (3, 12, 7, 15):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        if step != 15:  # 15 was cut off while being written: no completeness marker
            (checkpoints / f"checkpoint-{step}" / CHECKPOINT_COMPLETE).write_text("{}")
    (checkpoints / "checkpoint-99.txt").write_text("not a checkpoint")
    grouped, resume = build_trainer(_model(), _params(), train_dataset=ClipSet(4), eval_dataset=ClipSet(2, 1),
                                    collator=Collate(), checkpoints=checkpoints, group_lengths=[0.2, 0.3, 0.2, 0.25])
    assert resume == str(checkpoints / "checkpoint-12")
    assert not (checkpoints / "checkpoint-15").exists()
    assert len(list(checkpoints.glob("incomplete-checkpoint-15-*"))) == 1
    assert isinstance(grouped._get_train_sampler(), LengthGroupedSampler)
    assert not isinstance(trainer._get_train_sampler(), LengthGroupedSampler)


def test_fit_writes_the_curve_then_resumes_where_it_stopped(tmp_path):
    checkpoints, artifacts = tmp_path / "checkpoints", tmp_path / "artifacts"
    artifacts.mkdir()
    common = dict(train_dataset=ClipSet(4), eval_dataset=ClipSet(2, 1), collator=Collate(), checkpoints=checkpoints,
                  artifacts=artifacts, title="test")
    first = fit(_model(), _params(max_steps=2), **common)
    assert first.resumed_from is None and first.trainer.state.global_step == 2
    assert (checkpoints / "checkpoint-2").is_dir() and (artifacts / "loss_curve.png").is_file()
    assert any("eval_loss" in h for h in json.loads((artifacts / "history.json").read_text()))
    report = first.report(extra=1.5)
    assert report["metrics"]["best_eval_loss"] is not None and report["metrics"]["extra"] == 1.5
    assert report["best_checkpoint"].endswith("checkpoint-2") and report["global_steps"] == 2

    second = fit(_model(), _params(max_steps=4), **common)
    assert second.resumed_from.endswith("checkpoint-2") and second.trainer.state.global_step == 4
    second.save(tmp_path / "model")
    assert (tmp_path / "model" / "config.json").is_file()


def test_a_checkpoint_cut_off_while_being_written_is_set_aside_and_training_resumes_before_it(tmp_path):
    checkpoints, artifacts = tmp_path / "checkpoints", tmp_path / "artifacts"
    artifacts.mkdir()
    common = dict(train_dataset=ClipSet(8), eval_dataset=ClipSet(2, 1), collator=Collate(), checkpoints=checkpoints,
                  artifacts=artifacts, title="test")
    # one epoch is 4 steps; checkpoints between evaluations every step, three kept
    first = fit(_model(), _params(max_steps=3, checkpoint_steps=1, save_total_limit=3), **common)
    assert first.trainer.state.global_step == 3
    saved = sorted(p.name for p in checkpoints.glob("checkpoint-*"))
    assert saved == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert all((checkpoints / name / CHECKPOINT_COMPLETE).is_file() for name in saved)
    broken = checkpoints / "checkpoint-3"  # as if killed while writing it: no marker, a truncated weights file
    (broken / CHECKPOINT_COMPLETE).unlink()
    weights = next(broken.glob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    second = fit(_model(), _params(max_steps=5, checkpoint_steps=1, save_total_limit=3), **common)
    assert second.resumed_from.endswith("checkpoint-2") and second.trainer.state.global_step == 5
    assert len(list(checkpoints.glob("incomplete-checkpoint-3-*"))) == 1


def test_training_splits_fall_back_to_part_of_train(tmp_path):
    write_manifest(tmp_path / "train.jsonl", [Utterance(id=str(i), audio=f"{i}.wav", text="a") for i in range(20)])
    write_manifest(tmp_path / "validation.jsonl", [])
    (train, _), (validation, manifest) = training_splits(tmp_path, _params(max_eval_samples=None))
    assert len(train) == 20 and [r.id for r in validation] == ["0", "1"] and manifest.name == "train.jsonl"


def test_the_tasks_own_validation_reaches_history_and_the_evaluation_hooks(tmp_path):
    from steps.common import training

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    calls, seen = [], []

    def validate(model):
        calls.append(type(model).__name__)  # the callback hands over the model being trained
        return {"wer": 0.5 + len(calls), "intensity_rmse": 2.0}

    training.EVALUATION_HOOKS.append(lambda n, metrics: seen.append((n, metrics.get("eval_wer"))))
    try:
        run = fit(_model(), _params(epochs=2), train_dataset=ClipSet(4), eval_dataset=ClipSet(2, 1),
                  collator=Collate(), checkpoints=tmp_path / "checkpoints", artifacts=artifacts, title="test",
                  validate=validate)
    finally:
        training.EVALUATION_HOOKS.clear()
    assert calls == ["Wav2Vec2ForCTC"] * 2 and run.trainer.state.global_step == 4
    assert seen == [(1, 1.5), (2, 2.5)], "the hooks see the task's score of each evaluation"
    evaluations = [h for h in run.history if "eval_loss" in h]
    assert [h["eval_wer"] for h in evaluations] == [1.5, 2.5]
    assert all(h["eval_intensity_rmse"] == 2.0 for h in evaluations)
