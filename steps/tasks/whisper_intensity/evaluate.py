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
from steps.models.resolve import is_scratch
from steps.models.whisper.guard import GUARD_SPLIT, base_full_window, guard_metrics, guard_report, has_guard

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
        scored = params.base_max_items or len(audios)
        base_hyps, _ = run_batches(base_transcriber, audios[:scored], params.batch_size, "evaluate base model")
        base = {**error_rates(refs[:scored], base_hyps), "utterances": len(base_hyps)}
        base_hyps += [""] * (len(records) - len(base_hyps))

    samples = [
        {"id": r.id, "reference": r.text, "hypothesis": h, "base_hypothesis": b,
         "intensity": round(float(t), 2), "predicted": round(float(p), 2), "baseline": round(float(q), 2)}
        for r, h, b, t, p, q in list(zip(records, hyps, base_hyps, targets, predicted, baseline_pred))[: params.num_samples]
    ]
    (out / "predictions.jsonl").write_text("".join(
        json.dumps({"id": r.id, "reference": r.text, "hypothesis": h, "intensity": float(t), "predicted": float(p)}) + "\n"
        for r, h, t, p in zip(records, hyps, targets, predicted)))
    plot_intensity(targets, predicted, baseline_pred, out / "intensity_scatter.png", unit=card.get("intensity_unit", "dB"))
    guard = {}
    from_config = is_scratch(str(card["base_model"]))
    if params.guard and has_guard(data) and not from_config:
        guard = _guard(params, data, card, transcriber, baseline, float(train_targets.mean()))
    base_label = "untrained" if from_config else "zero-shot"
    # ordered for the run summary, which shows the first six: both sets, base and fine-tuned, then intensity
    guard_flat = guard_metrics(guard) if guard else {}
    metrics = {
        "wer": round(asr["wer"], 4),
        f"{base_label}_wer": round(base["wer"], 4) if base else None,
        **{k: guard_flat[k] for k in ("guard_wer", "guard_base_wer", "guard_wer_increase") if k in guard_flat},
        "intensity_rmse": round(head["rmse"], 3),
        "baseline_regressor_rmse": round(baseline_err["rmse"], 3),
        "cer": round(asr["cer"], 4), f"{base_label}_cer": round(base["cer"], 4) if base else None,
        "intensity_mae": round(head["mae"], 3),
        "intensity_r": round(head["pearson_r"], 3) if np.isfinite(head["pearson_r"]) else None,
        "mean_predictor_rmse": round(mean_pred["rmse"], 3),
        **({"guard_cer": guard_flat["guard_cer"],
            "guard_intensity_rmse": round(guard["intensity_rmse"]["model"], 3),
            "guard_baseline_regressor_rmse": round(guard["intensity_rmse"]["baseline_regressor"], 3),
            "guard_mean_predictor_rmse": round(guard["intensity_rmse"]["mean_predictor"], 3)} if guard else {}),
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
        **({"guard_wer_increase": guard["wer_increase"], "guard": guard} if guard else {}),  # top level: the gate's
        "inference_seconds": round(infer_s, 2),
        "samples": samples,
        "metrics": metrics,
    }


def _guard(params: EvaluateParams, data: Path, card: dict, transcriber: Transcriber, baseline: BaselineRegressor,
           train_mean: float) -> dict:
    """The guard set: transcripts against the base model at its full window, intensity against the ridge
    baseline and the mean predictor (levels the corpus never had)."""
    records, manifest = load_split(data, GUARD_SPLIT, params.guard_max_items, require=True)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    targets = np.array([r.intensity for r in records], dtype=np.float64)
    hyps, predicted = run_batches(transcriber, audios, params.batch_size, "evaluate guard set")
    whisper = transcriber.whisper
    base = base_full_window(card["base_model"], card.get("base_model_revision"), whisper.tokenizer,
                            whisper.features.extractor, whisper.spec, records, audios, params.batch_size)
    report = guard_report(records, hyps, base, params.num_samples)
    report["intensity_rmse"] = {
        "model": regression_errors(targets, predicted)["rmse"],
        "baseline_regressor": regression_errors(targets, baseline.predict(audios))["rmse"],
        "mean_predictor": regression_errors(targets, np.full_like(targets, train_mean))["rmse"],
    }
    report["intensity_range"] = [round(float(targets.min()), 1), round(float(targets.max()), 1)]
    return report
