"""Train stage of ``whisper_intensity``: HF Trainer on ASR cross-entropy + lambda * intensity MSE."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import run_batches
from steps.common.manifest import resolve_audio
from steps.common.metrics import error_rates, regression_errors
from steps.common.training import EVALUATION_HOOKS, fit, seed_and_threads, training_splits
from steps.models.whisper.build import build_whisper, freeze_encoder
from steps.models.whisper.prompt import decoding_spec
from steps.models.whisper.tokenizer import load_processors
from steps.tasks.base import write_model_card
from steps.tasks.whisper_intensity.data import Collator, SpeechDataset
from steps.tasks.whisper_intensity.inference import Transcriber
from steps.tasks.whisper_intensity.model import (IntensityHead, WhisperForASRAndIntensity, band_levels, fit_level_path,
                                                 mel_band_weights)
from steps.tasks.whisper_intensity.params import TrainParams

log = logging.getLogger(__name__)
TASK = "whisper_intensity"
LEVEL_FIT_CLIPS = 512  # training clips the intensity head's level path is ridge-fitted on


def build_model(model_id: str, tokenizer, feature_extractor, params: TrainParams | None = None) -> WhisperForASRAndIntensity:
    """The starting model: pretrained weights (encoder window shrunk to the extractor's) or from config."""
    p = params or TrainParams(model_id=model_id)
    return build_whisper(model_id, tokenizer, feature_extractor, model_class=WhisperForASRAndIntensity,
                         d_model=p.d_model, layers=p.layers, heads=p.heads, ffn_dim=p.ffn_dim, revision=p.revision)


def training_levels(records, manifest, extractor, batch_size: int, band_weights: torch.Tensor) -> torch.Tensor:
    """Band levels (``model.band_levels``) of the training clips, for the head's ridge start."""
    features = Collator(extractor).features
    levels = []
    for start in range(0, len(records), batch_size):
        batch = features([load_audio(resolve_audio(manifest, r.audio)) for r in records[start:start + batch_size]])
        levels.append(band_levels(batch["input_features"], batch["feature_mask"], band_weights))
    return torch.cat(levels)


class ValidationScores:
    """What the task is judged on, on the validation clips, at each evaluation: greedy WER/CER and the
    intensity head's RMSE in dB (the eval loss alone says neither; the tune stage's objective needs both)."""

    def __init__(self, records, manifest, tokenizer, extractor, batch_size: int):
        self.audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
        self.references = [r.text for r in records]
        self.targets = np.array([r.intensity for r in records], dtype=np.float64)
        self.tokenizer, self.extractor, self.batch_size = tokenizer, extractor, batch_size

    def __call__(self, model) -> dict[str, float]:
        transcriber = Transcriber(model, self.tokenizer, self.extractor, decoding_spec(self.tokenizer))
        hypotheses, predicted = run_batches(transcriber, self.audios, self.batch_size, "validation decode")
        rates = error_rates(self.references, hypotheses)
        return {"wer": rates["wer"], "cer": rates["cer"],
                "intensity_rmse": regression_errors(self.targets, predicted)["rmse"]}


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
    if params.intensity_level_features and not model.needs_levels:
        model.intensity_head = IntensityHead(model.config.d_model, level_bands=model.config.num_mel_bins)
        model.intensity_head.band_weights.copy_(mel_band_weights(extractor))
        model.config.intensity_level_bands = model.config.num_mel_bins
    if model.needs_levels:
        fit_on = train_recs[:LEVEL_FIT_CLIPS]  # plenty for 81 weights; the loss refines them on every clip
        levels = training_levels(fit_on, train_manifest, extractor, params.batch_size,
                                 model.intensity_head.band_weights)
        fitted = fit_level_path(model, levels, torch.tensor(targets[: len(fit_on)]))
        log.info("intensity head: level path started from a ridge fit on the band levels (%.3f dB RMSE on the "
                 "training clips)", fitted)
    freeze_encoder(model, params.freeze_encoder_layers)
    if params.train_decoder == "none":
        for parameter in model.model.decoder.parameters():
            parameter.requires_grad_(False)
        model.proj_out.requires_grad_(False)
    start = ({k: v.detach().clone() for k, v in model.model.encoder.state_dict().items()}
             if params.encoder_interpolation < 1 else None)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %.1fM parameters (%.1fM trainable), window %ss, %d train / %d validation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6, extractor.chunk_length,
             len(train_recs), len(val_recs))

    validate = ValidationScores(val_recs, val_manifest, tokenizer, extractor, params.batch_size)
    # decode at each evaluation when something reads it (the tune stage's hooks) or it is the final score
    every_evaluation = validate if (EVALUATION_HOOKS or start is None) else None
    run = fit(model, params, train_dataset=SpeechDataset(train_recs, train_manifest, tokenizer),
              eval_dataset=SpeechDataset(val_recs, val_manifest, tokenizer), collator=Collator(extractor),
              checkpoints=checkpoints, artifacts=artifacts,
              title="whisper_intensity training (ASR CE + λ·intensity MSE)", validate=every_evaluation)
    final: dict[str, float] = {}
    if start is not None:
        interpolate(run.model.model.encoder, start, params.encoder_interpolation)
        final = validate(run.model)
        log.info("encoder interpolated with the starting one (%.2f fine-tuned): validation WER %.4f, intensity "
                 "RMSE %.3f dB", params.encoder_interpolation, final["wer"], final["intensity_rmse"])
    run.save(model_out, tokenizer, extractor)
    spec = decoding_spec(tokenizer)
    write_model_card(model_out, TASK, base_model=params.model_id, base_model_revision=params.revision,
                     intensity_unit=params.intensity_unit,
                     window_seconds=extractor.chunk_length,
                     decoding={"prefix": list(spec.prefix), "eos": spec.eos, "suppress": list(spec.suppress)})
    evals = [h for h in run.history if "eval_wer" in h and "eval_loss" in h]
    kept = min(evals, key=lambda h: h["eval_loss"]) if evals else {}  # the best model by eval loss
    scores = {name: kept[f"eval_{name}"] for name in ("wer", "cer", "intensity_rmse") if f"eval_{name}" in kept}
    report = run.report(**{f"val_{name}": round(value, 4) for name, value in (final or scores).items()})
    if final:
        report["before_interpolation"] = {f"val_{name}": round(value, 4) for name, value in scores.items()}
    return report


@torch.no_grad()
def interpolate(module: torch.nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """``module``'s weights become ``share`` of themselves plus ``1 - share`` of ``start`` (WiSE-FT,
    Wortsman et al. 2022: the fine-tuned and the pretrained weights averaged keep most of both)."""
    for name, tensor in module.state_dict().items():
        if tensor.dtype.is_floating_point:
            tensor.mul_(share).add_(start[name].to(tensor.dtype), alpha=1.0 - share)
