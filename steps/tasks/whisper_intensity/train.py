"""Train stage of ``whisper_intensity``: HF Trainer on ASR cross-entropy + lambda * intensity MSE."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from steps.common.manifest import load_split
from steps.common.training import training_arguments
from steps.tasks.base import write_model_card
from steps.tasks.whisper_intensity.data import Collator, SpeechDataset, decoding_spec
from steps.tasks.whisper_intensity.model import WhisperForASRAndIntensity
from steps.tasks.whisper_intensity.params import TrainParams
from steps.common.plots import plot_training_curves
from steps.models.resolve import is_scratch, resolve_model_path

log = logging.getLogger(__name__)
TASK = "whisper_intensity"


def build_model(model_id: str, tokenizer, feature_extractor, params: TrainParams | None = None) -> WhisperForASRAndIntensity:
    """The starting model: pretrained weights (encoder window shrunk to the extractor's) or from config."""
    from transformers import WhisperConfig

    window_positions = int(feature_extractor.chunk_length * 50)
    sot, eos = tokenizer.convert_tokens_to_ids("<|startoftranscript|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if is_scratch(model_id):
        p = params or TrainParams(model_id=model_id)
        config = WhisperConfig(
            vocab_size=len(tokenizer), num_mel_bins=80, d_model=p.d_model, encoder_layers=p.layers,
            decoder_layers=p.layers, encoder_attention_heads=p.heads, decoder_attention_heads=p.heads,
            encoder_ffn_dim=p.ffn_dim, decoder_ffn_dim=p.ffn_dim, max_source_positions=window_positions,
            max_target_positions=128, decoder_start_token_id=sot, bos_token_id=eos, eos_token_id=eos,
            pad_token_id=eos, begin_suppress_tokens=None, suppress_tokens=None,
        )
        return WhisperForASRAndIntensity(config)
    model = WhisperForASRAndIntensity.from_pretrained(resolve_model_path(model_id))
    if model.config.max_source_positions != window_positions:
        from steps.models.whisper_ct2 import shrink_encoder_window

        model, _ = shrink_encoder_window(model, feature_extractor, feature_extractor.chunk_length)
    return model


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path, artifacts: Path) -> dict:
    from transformers import AutoTokenizer, EarlyStoppingCallback, Trainer, WhisperFeatureExtractor, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(params.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    extractor = WhisperFeatureExtractor.from_pretrained(tokenizer_dir)
    train_recs, train_manifest = load_split(data, "train", params.max_train_samples)
    val_recs, val_manifest = load_split(data, "validation", params.max_eval_samples)
    if not val_recs:
        val_recs, val_manifest = train_recs[: max(1, len(train_recs) // 10)], train_manifest
    targets = np.array([r.intensity for r in train_recs], dtype=np.float64)

    model = build_model(params.model_id, tokenizer, extractor, params)
    model.config.intensity_mean = float(targets.mean())
    model.config.intensity_std = float(max(targets.std(), 1e-3))
    model.config.lambda_intensity = params.lambda_intensity
    model.config.intensity_unit = params.intensity_unit
    _freeze(model, params.freeze_encoder_layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %.1fM parameters (%.1fM trainable), window %ss, %d train / %d validation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6, extractor.chunk_length,
             len(train_recs), len(val_recs))

    args = training_arguments(params, checkpoints)
    trainer = Trainer(model=model, args=args, data_collator=Collator(extractor),
                      train_dataset=SpeechDataset(train_recs, train_manifest, tokenizer),
                      eval_dataset=SpeechDataset(val_recs, val_manifest, tokenizer),
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience)])
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        log.info("resuming from checkpoint %s", resume)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.time() - started

    trainer.save_model(str(model_out))
    tokenizer.save_pretrained(model_out)
    extractor.save_pretrained(model_out)
    spec = decoding_spec(tokenizer)
    write_model_card(model_out, TASK, base_model=params.model_id, intensity_unit=params.intensity_unit,
                     window_seconds=extractor.chunk_length,
                     decoding={"prefix": list(spec.prefix), "eos": spec.eos, "suppress": list(spec.suppress)})
    history = [row for row in trainer.state.log_history]
    (artifacts / "history.json").write_text(json.dumps(history, indent=2))
    plot = plot_training_curves(history, artifacts / "loss_curve.png", title="whisper_intensity training (ASR CE + λ·intensity MSE)")
    evals = [h for h in history if "eval_loss" in h]
    return {
        "history": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history],
        "train_seconds": round(seconds, 1),
        "resumed_from": resume,
        "global_steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "loss_curve": str(plot),
        "metrics": {
            "train_loss": round(float(result.training_loss), 4),
            "eval_loss": round(float(evals[-1]["eval_loss"]), 4) if evals else None,
            "best_eval_loss": round(float(min(h["eval_loss"] for h in evals)), 4) if evals else None,
            "steps": trainer.state.global_step,
            "train_s": round(seconds, 1),
        },
    }


def _freeze(model: WhisperForASRAndIntensity, layers: int) -> None:
    if layers <= 0:
        return
    encoder = model.model.encoder
    for module in (encoder.conv1, encoder.conv2, *encoder.layers[:layers]):
        for p in module.parameters():
            p.requires_grad = False
