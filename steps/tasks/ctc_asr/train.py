"""Train stage of ``ctc_asr``: Wav2Vec2ForCTC with the HF Trainer, and a guard against CTC collapse.

Collapse (every output blank, WER stuck at 1.0) is a known failure of CTC training with too high a
learning rate or too little data. After training, the model decodes the validation split; if the
share of empty outputs reaches ``collapse_blank_ratio`` the stage fails with a message saying so,
so a collapsed model is never evaluated or registered as if it were fine.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch

from steps.common.audio import load_audio
from steps.common.batching import run_batches
from steps.common.manifest import load_split, resolve_audio
from steps.common.metrics import error_rates
from steps.common.training import training_arguments
from steps.models.resolve import is_scratch, resolve_model_path
from steps.tasks.base import write_model_card
from steps.tasks.ctc_asr.data import Augment, CTCCollator, CTCDataset, TargetText
from steps.tasks.ctc_asr.inference import CTCTranscriber, uses_attention_mask
from steps.tasks.ctc_asr.params import TrainParams
from steps.common.plots import plot_training_curves

log = logging.getLogger(__name__)
TASK = "ctc_asr"


class CTCCollapsed(RuntimeError):
    pass


def build_model(model_id: str, tokenizer, params: TrainParams | None = None):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    p = params or TrainParams(model_id=model_id)
    if is_scratch(model_id):
        config = Wav2Vec2Config(
            vocab_size=len(tokenizer), hidden_size=p.hidden_size, num_hidden_layers=p.layers,
            num_attention_heads=p.heads, intermediate_size=p.ffn_dim,
            conv_dim=(p.conv_dim,) * 5, conv_stride=(5, 4, 4, 2, 2), conv_kernel=(10, 8, 4, 4, 4),
            feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=32,
            num_conv_pos_embedding_groups=4, mask_time_prob=0.05, layerdrop=0.0, ctc_loss_reduction="mean",
            ctc_zero_infinity=True, pad_token_id=tokenizer.pad_token_id,
        )
        return Wav2Vec2ForCTC(config)
    return Wav2Vec2ForCTC.from_pretrained(resolve_model_path(model_id), ctc_loss_reduction="mean",
                                          ctc_zero_infinity=True, pad_token_id=tokenizer.pad_token_id,
                                          vocab_size=len(tokenizer), ignore_mismatched_sizes=True)


def _trainer_class():
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class LengthGroupedTrainer(Trainer):
        """Groups utterances of similar duration into batches (less padding) using manifest durations."""

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if getattr(self, "group_by_length", False):
                return LengthGroupedSampler(self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
                                            lengths=[int(d * 1000) for d in dataset.durations])
            return super()._get_train_sampler(train_dataset)

    return LengthGroupedTrainer


def check_collapse(texts: list[str], references: list[str], blank_ratio: float) -> dict:
    empty = sum(1 for t in texts if not t.strip())
    share = empty / max(len(texts), 1)
    rates = error_rates(references, texts)
    return {"empty_share": round(share, 4), "wer": rates["wer"], "cer": rates["cer"],
            "collapsed": share >= blank_ratio}


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path, artifacts: Path) -> dict:
    from transformers import EarlyStoppingCallback, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(params.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tokenizer_dir)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(tokenizer_dir)
    train_recs, train_manifest = load_split(data, "train", params.max_train_samples)
    val_recs, val_manifest = load_split(data, "validation", params.max_eval_samples)
    model = build_model(params.model_id, tokenizer, params)
    if params.freeze_feature_encoder and not is_scratch(params.model_id):
        model.freeze_feature_encoder()
    log.info("wav2vec2-CTC: %.2fM parameters, vocabulary %d, %d train / %d validation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, len(tokenizer), len(train_recs), len(val_recs))

    every = max(1, len(train_recs) // (params.batch_size * params.grad_accum)) * params.eval_every_epochs
    args = training_arguments(params, checkpoints, eval_strategy="steps", eval_steps=every, save_strategy="steps",
                              save_steps=every)
    augment = Augment(params.augment_noise_snr_db, params.augment_gain, params.seed)
    trainer = _trainer_class()(
        model=model, args=args, data_collator=CTCCollator(extractor, uses_attention_mask(model.config)),
        train_dataset=CTCDataset(train_recs, train_manifest, tokenizer, augment),
        eval_dataset=CTCDataset(val_recs, val_manifest, tokenizer),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience)])
    trainer.group_by_length = params.group_by_length
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - started

    history = list(trainer.state.log_history)
    (artifacts / "history.json").write_text(json.dumps(history, indent=2))
    plot_training_curves(history, artifacts / "loss_curve.png", title="ctc_asr training (CTC loss)")
    transcriber = CTCTranscriber(trainer.model, tokenizer, extractor)
    target = TargetText(tokenizer)
    audios = [load_audio(resolve_audio(val_manifest, r.audio)) for r in val_recs]
    texts, _ = run_batches(transcriber, audios, params.batch_size, "collapse check")
    collapse = check_collapse(texts, [target(r.text) for r in val_recs], params.collapse_blank_ratio)
    if collapse["collapsed"] and params.detect_collapse:
        raise CTCCollapsed(
            f"CTC training collapsed: {collapse['empty_share']:.0%} of validation outputs are blank "
            f"(WER {collapse['wer']:.2f}). The model was not saved. Lower the learning rate "
            f"(now {params.lr:g}), add warm-up, or train longer; the loss curve is artifacts/loss_curve.png "
            f"among this stage's outputs (the local backend keeps them in <run>/train/failed-outputs/).")
    trainer.save_model(str(model_out))
    tokenizer.save_pretrained(model_out)
    extractor.save_pretrained(model_out)
    write_model_card(model_out, TASK, base_model=params.model_id)
    evals = [h for h in history if "eval_loss" in h]
    return {
        "history": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history],
        "train_seconds": round(seconds, 1),
        "resumed_from": resume,
        "collapse_check": collapse,
        "metrics": {
            "train_loss": round(float(result.training_loss), 4),
            "best_eval_loss": round(float(min(h["eval_loss"] for h in evals)), 4) if evals else None,
            "val_wer": round(collapse["wer"], 4), "val_cer": round(collapse["cer"], 4),
            "blank_share": collapse["empty_share"], "steps": trainer.state.global_step, "train_s": round(seconds, 1),
        },
    }
