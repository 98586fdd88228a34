"""The guard set in a Whisper task's evaluation: does the fine-tuned model still transcribe general speech
as well as the model it started from?

prepare puts a general-speech set (``prepare.guard``; ``bundled:guard`` by default for the Whisper
tasks) into the ``guard`` split, which is never trained on. evaluate transcribes it with the fine-tuned
model and compares with the **base model at its full 30 s window**: what a user gets without
fine-tuning (a pretrained Whisper with its window cut and no training hallucinates; that is no
baseline). ``guard_wer_increase`` (fine-tuned guard WER minus the base's) is a gate metric: a model
that forgot general speech is not promoted, in every backend.

The base model's guard scores depend only on the checkpoint, the clips, the prompt and the decoding, so
they are cached under ``~/.cache/speechops/baselines/`` by a hash over all of them: the first run pays
for the 30 s decoding, later runs read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from steps.common.batching import run_batches
from steps.common.manifest import GUARD_SPLIT, Utterance, split_path
from steps.common.metrics import error_rates

log = logging.getLogger(__name__)

FULL_WINDOW_S = 30
CACHE = Path(os.environ.get("SPEECHOPS_BASELINE_CACHE", "~/.cache/speechops/baselines"))


def has_guard(data: Path) -> bool:
    """Whether prepare made a non-empty guard split."""
    path = split_path(data, GUARD_SPLIT)
    return path.is_file() and path.stat().st_size > 0


def _key(model_id: str, revision: str | None, spec: Any, records: list[Utterance], audios: list[np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps({"model": model_id, "revision": revision, "window": FULL_WINDOW_S,
                                        "prefix": list(spec.prefix), "suppress": list(spec.suppress),
                                        "max_new_tokens": spec.max_new_tokens}, sort_keys=True).encode())
    for rec, audio in zip(records, audios):
        digest.update(rec.id.encode() + b"\0" + rec.text.encode() + b"\0")
        digest.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    return digest.hexdigest()[:32]


def base_full_window(model_id: str, revision: str | None, tokenizer, extractor, spec, records: list[Utterance],
                     audios: list[np.ndarray], batch_size: int) -> dict[str, Any]:
    """WER/CER and transcripts of ``model_id`` at its full window on these clips (cached)."""
    path = CACHE.expanduser() / f"{_key(model_id, revision, spec, records, audios)}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            log.info("base model %s at %d s on the guard set: cached (%s)", model_id, FULL_WINDOW_S, path)
            return {**cached, "cached": True}
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed
    from steps.models.whisper.build import build_whisper
    from steps.models.whisper.transcriber import WhisperTranscriber
    from steps.models.whisper.window import extractor_for_window

    full = extractor_for_window(extractor, FULL_WINDOW_S)
    model = build_whisper(model_id, tokenizer, full, revision=revision)
    transcriber = WhisperTranscriber(model, tokenizer, full, spec)
    hypotheses, _ = run_batches(lambda batch: (transcriber(batch), np.zeros(len(batch))), audios, batch_size,
                                f"guard set, base model at {FULL_WINDOW_S} s")
    rates = error_rates([r.text for r in records], hypotheses)
    result = {"model": model_id, "window_s": FULL_WINDOW_S, "wer": rates["wer"], "cer": rates["cer"],
              "hypotheses": hypotheses}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
    except OSError as exc:  # a read-only home (a container user): scored again next time, nothing lost
        log.warning("base model scores not cached (%s); set SPEECHOPS_BASELINE_CACHE to a writable folder", exc)
    return {**result, "cached": False}


def guard_report(records: list[Utterance], hypotheses: list[str], base: dict[str, Any],
                 num_samples: int = 8) -> dict[str, Any]:
    """The guard section of an evaluation report: fine-tuned against the base at its full window."""
    fine = error_rates([r.text for r in records], hypotheses)
    increase = fine["wer"] - base["wer"]
    log.info("guard set (%d clips): WER %.4f fine-tuned, %.4f base model at %d s (%+.4f)", len(records),
             fine["wer"], base["wer"], FULL_WINDOW_S, increase)
    return {
        "utterances": len(records), "wer": fine["wer"], "cer": fine["cer"],
        "base_model": {k: base[k] for k in ("model", "window_s", "wer", "cer", "cached")},
        "wer_increase": increase,
        "samples": [{"id": r.id, "reference": r.text, "hypothesis": h, "base_hypothesis": b}
                    for r, h, b in list(zip(records, hypotheses, base["hypotheses"]))[:num_samples]],
    }


def guard_metrics(guard: dict[str, Any]) -> dict[str, float]:
    """The flat metrics (and the gate's ``guard_wer_increase``) of a guard section."""
    return {"guard_wer": round(guard["wer"], 4), "guard_cer": round(guard["cer"], 4),
            "guard_base_wer": round(guard["base_model"]["wer"], 4),
            "guard_wer_increase": round(guard["wer_increase"], 4)}
