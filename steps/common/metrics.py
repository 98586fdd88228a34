"""Metrics shared by every task: WER/CER (jiwer, on normalised text) and regression errors."""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import numpy as np

from steps.common.text import normalize_for_scoring


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus-level WER and CER on normalised text. Empty references are scored on characters only."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize_for_scoring(r) for r in references]
    hyps = [normalize_for_scoring(h) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        raise ValueError("every reference is empty after normalisation: nothing to score")
    refs = [refs[i] for i in keep]
    hyps = [hyps[i] for i in keep]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {
        "wer": float(words.wer),
        "cer": float(chars.cer),
        "substitutions": int(words.substitutions),
        "deletions": int(words.deletions),
        "insertions": int(words.insertions),
        "scored_utterances": len(refs),
    }


def regression_errors(targets: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """RMSE, MAE and Pearson correlation (NaN when either side is constant)."""
    y = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"need equal, non-empty arrays, got {y.shape} and {p.shape}")
    err = p - y
    corr = float(np.corrcoef(y, p)[0, 1]) if y.size > 1 and y.std() > 0 and p.std() > 0 else float("nan")
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "pearson_r": corr,
    }


def ctc_collapse(texts: Sequence[str], references: Sequence[str], blank_ratio: float) -> dict:
    """The CTC collapse guard: the share of empty outputs, and whether it reaches ``blank_ratio`` (a model that
    learned to answer blank everywhere)."""
    empty = sum(1 for t in texts if not t.strip())
    share = empty / max(len(texts), 1)
    rates = error_rates(references, texts)
    return {"empty_share": round(share, 4), "wer": rates["wer"], "cer": rates["cer"],
            "collapsed": share >= blank_ratio}
