"""Evaluate stage of ``whisper_asr``: WER and CER on the held-out split, zero-shot against fine-tuned.

Scoring: the top-level ``wer``/``cer`` (the gate's) are on ``steps.common.text.normalize_for_scoring``:
Whisper's basic (non-English) rule, lower-case, punctuation and symbols removed, with combining marks
kept, since Devanagari vowel signs, virama and nukta are part of a word. The same figures on Whisper's
own ``BasicTextNormalizer`` (which turns every mark into a space, so Hindi words are scored as
fragments) are reported beside them as ``basic_normalizer``, comparable with published Whisper figures.

The starting model is scored on the same split with the same forced prompt: zero-shot at the model's
encoder window and, when that window is cut, at Whisper's 30 s too (a pretrained Whisper has only
seen 30 s windows; cutting it without training hurts). A model built from config is scored untrained.

The forgetting guard (``prepare.guard``, the bundled English guard set by default): the fine-tuned
model transcribes it with the ``guard_language`` prompt (English), next to the starting model at its
full 30 s window with the same prompt; ``guard_wer_increase`` says how much of the base model's
English the fine-tuning cost (``steps/models/whisper/guard.py``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import batched
from steps.common.console import progress
from steps.common.manifest import load_split, resolve_audio
from steps.common.metrics import error_rates
from steps.models.resolve import is_scratch
from steps.models.whisper.guard import GUARD_SPLIT, base_full_window, guard_metrics, guard_report, has_guard
from steps.models.whisper.prompt import DecoderPrompt, decoding_spec
from steps.models.whisper.transcriber import WhisperTranscriber
from steps.models.whisper.window import extractor_for_window
from steps.tasks.whisper_asr.params import EvaluateParams
from steps.tasks.whisper_asr.transcriber import load_transcriber

log = logging.getLogger(__name__)
FULL_WINDOW = 30


def scores(references: list[str], hypotheses: list[str]) -> dict:
    """WER/CER on text normalised with combining marks kept, and on Whisper's ``BasicTextNormalizer``."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    basic = BasicTextNormalizer()
    on_basic = error_rates([basic(r) for r in references], [basic(h) for h in hypotheses])
    return {**error_rates(references, hypotheses), "basic_normalizer": {"wer": on_basic["wer"], "cer": on_basic["cer"]}}


def transcribe(transcriber: WhisperTranscriber, audios: list[np.ndarray], batch_size: int, desc: str) -> tuple[list[str], float]:
    started = time.time()
    texts: list[str] = []
    for batch in progress(list(batched(audios, batch_size)), desc=desc, unit="batch"):
        texts += transcriber(list(batch))
    return texts, time.time() - started


def starting_model(card: dict, trained: WhisperTranscriber, window: int, seed: int) -> WhisperTranscriber:
    """The model training started from, at an encoder window of ``window`` seconds, with the trained
    model's tokenizer and decoding spec: the pretrained checkpoint, or the same architecture untrained."""
    from steps.tasks.whisper_asr.train import build_model

    torch.manual_seed(seed)
    extractor = extractor_for_window(trained.features.extractor, window)
    if is_scratch(card["base_model"]):
        model = type(trained.model)(trained.model.config)
    else:
        model = build_model(card["base_model"], trained.tokenizer, extractor, revision=card.get("base_model_revision"))
    return WhisperTranscriber(model, trained.tokenizer, extractor, trained.spec)


def starting_windows(card: dict, window: int, full_window: bool) -> list[int]:
    """The model's window, and Whisper's 30 s when the window was cut from a pretrained checkpoint."""
    if full_window and window < FULL_WINDOW and not is_scratch(card["base_model"]):
        return [FULL_WINDOW, window]
    return [window]


def rounded(rates: dict) -> dict:
    return {"wer": round(rates["wer"], 4), "cer": round(rates["cer"], 4),
            "basic_wer": round(rates["basic_normalizer"]["wer"], 4), "basic_cer": round(rates["basic_normalizer"]["cer"], 4)}


def evaluate(params: EvaluateParams, data: Path, model_dir: Path, out: Path) -> dict:
    from transformers import set_seed

    set_seed(params.seed)
    records, manifest = load_split(data, params.split, params.max_items, require=True)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    refs = [r.text for r in records]
    transcriber, card = load_transcriber(model_dir, params.max_new_tokens)
    window = int(transcriber.features.extractor.chunk_length)
    hyps, infer_s = transcribe(transcriber, audios, params.batch_size, "evaluate")
    tuned = scores(refs, hyps)
    metrics = rounded(tuned)

    kind = "untrained" if is_scratch(card["base_model"]) else "zero_shot"
    base: dict[str, dict] = {}
    base_hyps: dict[str, list[str]] = {}
    if params.compare_base_model:
        for seconds in starting_windows(card, window, params.compare_full_window):
            start = starting_model(card, transcriber, seconds, params.seed)
            key = f"{seconds}s"
            scored = params.base_max_items or len(audios)
            base_hyps[key], took = transcribe(start, audios[:scored], params.batch_size, f"evaluate {kind} {key}")
            base[key] = {**scores(refs[:scored], base_hyps[key]), "window_seconds": seconds, "seconds": round(took, 1),
                         "utterances": scored}
            base_hyps[key] += [""] * (len(records) - len(base_hyps[key]))
            metrics.update({f"{kind}_{key}_{k}": v for k, v in rounded(base[key]).items() if k in ("wer", "cer")})
            del start

    guard = {}
    if params.guard and has_guard(data) and not is_scratch(card["base_model"]):
        try:
            spec = decoding_spec(transcriber.tokenizer, DecoderPrompt(language=params.guard_language,
                                                                      task="transcribe"), params.max_new_tokens)
        except ValueError as exc:  # a tokenizer without the guard's language token: nothing to compare
            log.warning("guard set not scored: %s", exc)
            guard = {"skipped": str(exc)}
        else:
            guard = _guard(params, data, card, transcriber, spec)
            metrics.update(guard_metrics(guard))

    samples = [{"id": r.id, "reference": r.text, "hypothesis": h,
                **{f"{kind}_{key}": texts[i] for key, texts in base_hyps.items()}}
               for i, (r, h) in enumerate(list(zip(records, hyps))[: params.num_samples])]
    (out / "predictions.jsonl").write_text("".join(
        json.dumps({"id": r.id, "reference": r.text, "hypothesis": h, **{f"{kind}_{k}": t[i] for k, t in base_hyps.items()}},
                   ensure_ascii=False) + "\n"
        for i, (r, h) in enumerate(zip(records, hyps))))
    log.info("evaluation on %d %s utterances (language %s, window %ss): %s", len(records), params.split,
             card.get("language"), window, metrics)
    return {
        "split": params.split,
        "utterances": len(records),
        "wer": tuned["wer"], "cer": tuned["cer"],  # top level: read by quality gates
        "language": card.get("language"), "whisper_task": card.get("whisper_task"), "window_seconds": window,
        "normalizer": "normalize_for_scoring (Whisper's basic rule, combining marks kept); basic_normalizer: "
                      "transformers' BasicTextNormalizer",
        "asr": tuned,
        "base_model": {"id": card["base_model"], "revision": card.get("base_model_revision"), "kind": kind, **base},
        **({"guard_wer_increase": guard["wer_increase"]} if "wer_increase" in guard else {}),  # the gate's
        **({"guard": guard} if guard else {}),
        "inference_seconds": round(infer_s, 2),
        "samples": samples,
        "metrics": metrics,
    }


def _guard(params: EvaluateParams, data: Path, card: dict, transcriber: WhisperTranscriber, spec) -> dict:
    """The guard set with the ``guard_language`` prompt (``spec``): fine-tuned (its window) against the
    starting model at its full window."""
    records, manifest = load_split(data, GUARD_SPLIT, params.guard_max_items, require=True)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    prompted = WhisperTranscriber(transcriber.model, transcriber.tokenizer, transcriber.features.extractor, spec)
    hyps, _ = transcribe(prompted, audios, params.batch_size, f"evaluate guard set ({params.guard_language})")
    base = base_full_window(card["base_model"], card.get("base_model_revision"), transcriber.tokenizer,
                            transcriber.features.extractor, spec, records, audios, params.batch_size)
    return {**guard_report(records, hyps, base, params.num_samples), "language": params.guard_language}
