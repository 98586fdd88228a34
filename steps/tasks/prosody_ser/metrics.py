"""The task's scores: emotion (accuracy, unweighted average recall, macro-F1, confusion matrix) and word
emphasis (precision, recall, F1 of the emphasised class), with scikit-learn."""

from __future__ import annotations

import numpy as np

from steps.tasks.prosody_ser.model import IGNORE


def emotion_scores(truth: list[str], predicted: list[str | None], labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    guessed = [p if p is not None else "" for p in predicted]
    if not truth:
        return {"accuracy": 0.0, "uar": 0.0, "macro_f1": 0.0, "confusion": [], "labels": labels, "count": 0}
    return {"accuracy": float(accuracy_score(truth, guessed)),
            # unweighted average recall: the mean of the per-class recalls (SER's usual headline metric)
            "uar": float(balanced_accuracy_score(truth, guessed)),
            "macro_f1": float(f1_score(truth, guessed, labels=labels, average="macro", zero_division=0)),
            "confusion": confusion_matrix(truth, guessed, labels=labels).tolist(), "labels": labels,
            "count": len(truth)}


def emphasis_scores(marks: list[list[int]], probabilities: list[list[float]], threshold: float = 0.5) -> dict:
    """Over every word with a mark: precision, recall and F1 of 'emphasised' (a model that never predicts
    emphasis scores 0)."""
    from sklearn.metrics import precision_recall_fscore_support

    truth, guess = [], []
    for word_marks, word_probs in zip(marks, probabilities):
        for mark, prob in zip(word_marks, word_probs if word_probs else [0.0] * len(word_marks)):
            if mark != IGNORE:
                truth.append(int(mark))
                guess.append(int(prob >= threshold))
    if not truth:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "words": 0, "emphasised": 0}
    p, r, f, _ = precision_recall_fscore_support(truth, guess, average="binary", zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f), "words": len(truth),
            "emphasised": int(np.sum(truth))}
