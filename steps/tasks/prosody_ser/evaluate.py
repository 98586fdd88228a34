"""Evaluate stage of ``prosody_ser``, on the test split (speakers held out of training in the default):

* emotion: accuracy, unweighted average recall (UAR), macro-F1, the confusion matrix (``confusion.png``),
  against the majority class and a classifier on acoustic statistics (``baselines.py``);
* word emphasis: precision / recall / F1 of the emphasised words, judged on the reference words, against
  "no emphasis" (which scores F1 0 and the share of plain words as accuracy);
* ASR: WER and CER of the CTC head, greedy and beam search (torchaudio's CTC decoder, no language model).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from steps.common.audio import load_audio
from steps.common.console import progress
from steps.common.manifest import load_split, resolve_audio
from steps.common.metrics import error_rates
from steps.tasks.base import read_model_card
from steps.tasks.prosody_ser.baselines import FEATURES, AcousticBaseline, acoustic_statistics, majority
from steps.tasks.prosody_ser.data import emotion_of, emphasis_of
from steps.tasks.prosody_ser.inference import BeamSearch, Predictor
from steps.tasks.prosody_ser.metrics import emotion_scores, emphasis_scores
from steps.tasks.prosody_ser.params import EvaluateParams
from steps.tasks.prosody_ser.tokenizer import words_of

log = logging.getLogger(__name__)


def statistics_of(records, manifest, desc: str) -> np.ndarray:
    return np.stack([acoustic_statistics(load_audio(resolve_audio(manifest, r.audio)), len(words_of(r, False)))
                     for r in progress(records, desc=desc, unit="utt")])


def plot_confusion(confusion: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion, dtype=float)
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                      color="white" if shares[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=30)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def evaluate(params: EvaluateParams, data: Path, model_dir: Path, out: Path) -> dict:
    card = read_model_card(model_dir)
    records, manifest = load_split(data, params.split, params.max_items, require=True)
    predictor = Predictor.from_dir(model_dir)
    config = predictor.model.config
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    words = [words_of(r, predictor.pieces.lowercase) for r in records]
    truth = [emotion_of(r) for r in records]
    marks = [emphasis_of(r, w) for r, w in zip(records, words)]
    started = time.time()
    predictions, beam_texts = [], []
    beam = BeamSearch(predictor.pieces, params.beam_width) if config.use_asr else None
    for start in progress(range(0, len(audios), params.batch_size), desc="evaluate", unit="batch"):
        batch = audios[start:start + params.batch_size]
        encoded = predictor.encode(batch)
        texts = predictor.transcripts(encoded)
        emphasis = predictor.emphasis(encoded, words[start:start + params.batch_size])
        if beam is not None:
            beam_texts += beam(encoded["ctc"], encoded["frames"])
        for i in range(len(batch)):
            probs = encoded["emotion"][i].tolist() if "emotion" in encoded else []
            predictions.append({"emotion": predictor.labels[int(np.argmax(probs))] if probs else None,
                                "probabilities": dict(zip(predictor.labels, probs)), "transcript": texts[i],
                                "emphasis": emphasis[i]})
    infer_s = time.time() - started
    labels = predictor.labels
    report: dict = {"split": params.split, "utterances": len(records), "model": card.get("heads"),
                    "speakers": sorted({r.speaker for r in records if r.speaker})}
    metrics: dict = {}

    # emotion, against the majority class and the acoustic-statistics classifier
    train_recs, train_manifest = load_split(data, "train", params.baseline_max_items)
    train_labels = [emotion_of(r) for r in train_recs]
    most = majority(train_labels)
    baseline = AcousticBaseline().fit(statistics_of(train_recs, train_manifest, "baseline features (train)"),
                                      train_labels)
    baseline_guess = baseline.predict(statistics_of(records, manifest, "baseline features (test)"))
    majority_scores = emotion_scores(truth, [most] * len(truth), labels)
    acoustic_scores = emotion_scores(truth, baseline_guess, labels)
    if config.use_ser:
        model_scores = emotion_scores(truth, [p["emotion"] for p in predictions], labels)
        report.update({"emotion_accuracy": model_scores["accuracy"], "emotion_uar": model_scores["uar"],
                       "emotion_macro_f1": model_scores["macro_f1"]})
        plot_confusion(model_scores["confusion"], labels, out / "confusion.png",
                       f"emotion on held-out speakers (accuracy {model_scores['accuracy']:.3f})")
        metrics.update({"emotion_accuracy": round(model_scores["accuracy"], 4),
                        "emotion_uar": round(model_scores["uar"], 4),
                        "emotion_macro_f1": round(model_scores["macro_f1"], 4)})
    else:
        model_scores = {}
    report["emotion"] = {"model": model_scores, "majority_class": {**majority_scores, "class": most},
                         "acoustic_statistics": {**acoustic_scores, "features": list(FEATURES),
                                                 "trained_on": len(train_recs)}}
    metrics.update({"majority_accuracy": round(majority_scores["accuracy"], 4),
                    "acoustic_accuracy": round(acoustic_scores["accuracy"], 4),
                    "acoustic_uar": round(acoustic_scores["uar"], 4)})

    # word emphasis on the reference words, against "no emphasis"
    if config.use_prosody:
        emphasis = emphasis_scores(marks, [p["emphasis"] for p in predictions])
        plain = emphasis_scores(marks, [[0.0] * len(m) for m in marks])
        scored = [m for ms in marks for m in ms if m in (0, 1)]
        report["emphasis"] = {"model": emphasis, "no_emphasis": {**plain, "accuracy": 1 - float(np.mean(scored))
                                                                 if scored else 0.0}}
        report["emphasis_f1"] = emphasis["f1"]
        metrics.update({"emphasis_f1": round(emphasis["f1"], 4), "emphasis_precision": round(emphasis["precision"], 4),
                        "emphasis_recall": round(emphasis["recall"], 4)})

    # the CTC head: greedy and beam search
    if config.use_asr:
        references = [" ".join(w) for w in words]
        greedy = error_rates(references, [p["transcript"] or "" for p in predictions])
        searched = error_rates(references, beam_texts)
        blank = sum(not (p["transcript"] or "").strip() for p in predictions) / len(predictions)
        report["asr"] = {"greedy": greedy, "beam_search": {**searched, "beam_width": params.beam_width},
                         "blank_share": round(blank, 4)}
        report.update({"wer": greedy["wer"], "cer": greedy["cer"]})
        metrics.update({"wer": round(greedy["wer"], 4), "cer": round(greedy["cer"], 4),
                        "beam_wer": round(searched["wer"], 4), "blank_share": round(blank, 4)})

    with open(out / "predictions.jsonl", "w") as handle:
        for r, p, b in zip(records, predictions, beam_texts or [None] * len(records)):
            handle.write(json.dumps({"id": r.id, "speaker": r.speaker, "emotion": emotion_of(r), **p,
                                     "beam_transcript": b, "reference": " ".join(words_of(r, True))}) + "\n")
    report["samples"] = [{"id": r.id, "reference": {"emotion": emotion_of(r), "text": r.text},
                          "predicted": {"emotion": p["emotion"], "transcript": p["transcript"]}}
                         for r, p in list(zip(records, predictions))[: params.num_samples]]
    report["inference_seconds"] = round(infer_s, 2)
    report["metrics"] = metrics
    log.info("evaluation on %d %s utterances (speakers %s): %s", len(records), params.split,
             ", ".join(report["speakers"]), metrics)
    return report
