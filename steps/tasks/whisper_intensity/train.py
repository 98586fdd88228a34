"""Train stage of ``whisper_intensity``: HF Trainer on ASR cross-entropy + lambda * intensity MSE."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from steps.common.training import fit, seed_and_threads, training_splits
from steps.models.whisper.build import build_whisper, freeze_encoder
from steps.models.whisper.prompt import decoding_spec
from steps.models.whisper.tokenizer import load_processors
from steps.tasks.base import write_model_card
from steps.tasks.whisper_intensity.data import Collator, SpeechDataset
from steps.tasks.whisper_intensity.model import WhisperForASRAndIntensity
from steps.tasks.whisper_intensity.params import TrainParams

log = logging.getLogger(__name__)
TASK = "whisper_intensity"


def build_model(model_id: str, tokenizer, feature_extractor, params: TrainParams | None = None) -> WhisperForASRAndIntensity:
    """The starting model: pretrained weights (encoder window shrunk to the extractor's) or from config."""
    p = params or TrainParams(model_id=model_id)
    return build_whisper(model_id, tokenizer, feature_extractor, model_class=WhisperForASRAndIntensity,
                         d_model=p.d_model, layers=p.layers, heads=p.heads, ffn_dim=p.ffn_dim, revision=p.revision)


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path, artifacts: Path) -> dict:
    seed_and_threads(params.seed)
    tokenizer, extractor = load_processors(tokenizer_dir)
    (train_recs, train_manifest), (val_recs, val_manifest) = training_splits(data, params)
    targets = np.array([r.intensity for r in train_recs], dtype=np.float64)

    model = build_model(params.model_id, tokenizer, extractor, params)
    model.config.intensity_mean = float(targets.mean())
    model.config.intensity_std = float(max(targets.std(), 1e-3))
    model.config.lambda_intensity = params.lambda_intensity
    model.config.intensity_unit = params.intensity_unit
    freeze_encoder(model, params.freeze_encoder_layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %.1fM parameters (%.1fM trainable), window %ss, %d train / %d validation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6, extractor.chunk_length,
             len(train_recs), len(val_recs))

    run = fit(model, params, train_dataset=SpeechDataset(train_recs, train_manifest, tokenizer),
              eval_dataset=SpeechDataset(val_recs, val_manifest, tokenizer), collator=Collator(extractor),
              checkpoints=checkpoints, artifacts=artifacts,
              title="whisper_intensity training (ASR CE + λ·intensity MSE)")
    run.save(model_out, tokenizer, extractor)
    spec = decoding_spec(tokenizer)
    write_model_card(model_out, TASK, base_model=params.model_id, base_model_revision=params.revision,
                     intensity_unit=params.intensity_unit,
                     window_seconds=extractor.chunk_length,
                     decoding={"prefix": list(spec.prefix), "eos": spec.eos, "suppress": list(spec.suppress)})
    return run.report()
