"""Evaluate stage of ``whisper_intensity``: WER/CER, intensity errors, honest baselines, a sample table.

Baselines scored on the same split: the starting model (zero-shot pretrained Whisper, or the
untrained model built from config) for WER/CER; a mean predictor and a ridge regressor on simple
acoustic features for intensity.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import run_batches
from steps.common.console import progress
from steps.common.manifest import load_split, resolve_audio
from steps.common.metrics import error_rates, regression_errors
from steps.tasks.base import read_model_card
from steps.tasks.whisper_intensity.baseline import BaselineRegressor
from steps.tasks.whisper_intensity.inference import Transcriber
from steps.tasks.whisper_intensity.params import EvaluateParams
from steps.common.plots import plot_intensity

log = logging.getLogger(__name__)


def evaluate(params: EvaluateParams, data: Path, model_dir: Path, out: Path) -> dict:
    from transformers import set_seed

    set_seed(params.seed)
    card = read_model_card(model_dir)
    records, manifest = load_split(data, params.split, params.max_items, require=True)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    refs = [r.text for r in records]
    targets = np.array([r.intensity for r in records], dtype=np.float64)

    transcriber = Transcriber.from_dir(model_dir, params.max_new_tokens)
    started = time.time()
    hyps, predicted = run_batches(transcriber, audios, params.batch_size, "evaluate")
    infer_s = time.time() - started
    asr = error_rates(refs, hyps)
    head = regression_errors(targets, predicted)

    train_recs, train_manifest = load_split(data, "train")
    train_targets = np.array([r.intensity for r in train_recs], dtype=np.float64)
    mean_pred = regression_errors(targets, np.full_like(targets, train_targets.mean()))
    train_audio = [load_audio(resolve_audio(train_manifest, r.audio))
                   for r in progress(train_recs, desc="baseline features", unit="utt")]
    baseline = BaselineRegressor().fit(train_audio, train_targets)
    baseline_pred = baseline.predict(audios)
    baseline_err = regression_errors(targets, baseline_pred)

    base = {}
    base_hyps: list[str] = [""] * len(records)
    if params.compare_base_model:
        from steps.tasks.whisper_intensity.train import build_model

        torch.manual_seed(params.seed)
        whisper = transcriber.whisper
        base_model = build_model(card["base_model"], whisper.tokenizer, whisper.features.extractor)
        base_transcriber = Transcriber(base_model, whisper.tokenizer, whisper.features.extractor, whisper.spec)
        base_hyps, _ = run_batches(base_transcriber, audios, params.batch_size, "evaluate base model")
        base = error_rates(refs, base_hyps)

    samples = [
        {"id": r.id, "reference": r.text, "hypothesis": h, "base_hypothesis": b,
         "intensity": round(float(t), 2), "predicted": round(float(p), 2), "baseline": round(float(q), 2)}
        for r, h, b, t, p, q in list(zip(records, hyps, base_hyps, targets, predicted, baseline_pred))[: params.num_samples]
    ]
    (out / "predictions.jsonl").write_text("".join(
        json.dumps({"id": r.id, "reference": r.text, "hypothesis": h, "intensity": float(t), "predicted": float(p)}) + "\n"
        for r, h, t, p in zip(records, hyps, targets, predicted)))
    plot_intensity(targets, predicted, baseline_pred, out / "intensity_scatter.png", unit=card.get("intensity_unit", "dB"))
    base_label = "zero-shot" if not str(card["base_model"]).startswith("scratch") else "untrained"
    metrics = {
        "wer": round(asr["wer"], 4), "cer": round(asr["cer"], 4),
        "intensity_rmse": round(head["rmse"], 3), "intensity_mae": round(head["mae"], 3),
        "intensity_r": round(head["pearson_r"], 3) if np.isfinite(head["pearson_r"]) else None,
        f"{base_label}_wer": round(base["wer"], 4) if base else None,
        f"{base_label}_cer": round(base["cer"], 4) if base else None,
        "mean_predictor_rmse": round(mean_pred["rmse"], 3),
        "baseline_regressor_rmse": round(baseline_err["rmse"], 3),
    }
    log.info("evaluation on %d %s utterances: %s", len(records), params.split, metrics)
    return {
        "split": params.split,
        "utterances": len(records),
        "wer": asr["wer"], "cer": asr["cer"], "intensity_rmse": head["rmse"],  # top level: read by quality gates
        "asr": asr,
        "intensity": {"model": head, "mean_predictor": mean_pred, "baseline_regressor": baseline_err,
                      "unit": card.get("intensity_unit", "dBFS")},
        "base_model": {"id": card["base_model"], "kind": base_label, **base},
        "inference_seconds": round(infer_s, 2),
        "samples": samples,
        "metrics": metrics,
    }
