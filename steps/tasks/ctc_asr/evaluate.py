"""Evaluate stage of ``ctc_asr``: WER/CER (greedy, and beam search with a KenLM model when given)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import batched, run_batches
from steps.common.manifest import load_split, resolve_audio
from steps.common.metrics import error_rates
from steps.models.wav2vec2.decoding import BeamSearch
from steps.models.wav2vec2.vocabulary import TargetText
from steps.tasks.base import read_model_card
from steps.models.wav2vec2.transcriber import CTCTranscriber
from steps.tasks.ctc_asr.params import EvaluateParams

log = logging.getLogger(__name__)


def beam_search_texts(transcriber: CTCTranscriber, audios: list[np.ndarray], params: EvaluateParams) -> list[str]:
    """Beam search with the KenLM model (pyctcdecode and kenlm are optional dependencies)."""
    search = BeamSearch(transcriber.tokenizer, params.kenlm_model, params.beam_width)
    texts: list[str] = []
    for batch in batched(audios, params.batch_size):
        texts += search(*transcriber.logits(list(batch)))
    return texts


def evaluate(params: EvaluateParams, data: Path, model_dir: Path, out: Path) -> dict:
    from transformers import set_seed

    set_seed(params.seed)
    card = read_model_card(model_dir)
    records, manifest = load_split(data, params.split, params.max_items, require=True)
    transcriber = CTCTranscriber.from_dir(model_dir)
    target = TargetText(transcriber.tokenizer)
    refs = [target(r.text) for r in records]
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    started = time.time()
    hyps, _ = run_batches(transcriber, audios, params.batch_size, "evaluate")
    infer_s = time.time() - started
    greedy = error_rates(refs, hyps)
    metrics = {"wer": round(greedy["wer"], 4), "cer": round(greedy["cer"], 4),
               "blank_share": round(sum(not h for h in hyps) / len(hyps), 4)}
    beam = {}
    if params.kenlm_model:
        beam_hyps = beam_search_texts(transcriber, audios, params)
        beam = error_rates(refs, beam_hyps)
        metrics.update({"lm_wer": round(beam["wer"], 4), "lm_cer": round(beam["cer"], 4)})
    base = {}
    base_hyps = [""] * len(records)
    if params.compare_base_model:
        from steps.tasks.ctc_asr.train import build_model

        torch.manual_seed(params.seed)
        base_model = build_model(card["base_model"], transcriber.tokenizer)
        base_transcriber = CTCTranscriber(base_model, transcriber.tokenizer, transcriber.features.extractor)
        base_hyps, _ = run_batches(base_transcriber, audios, params.batch_size, "evaluate base model")
        base = error_rates(refs, base_hyps)
        label = "untrained" if card["base_model"].startswith("scratch") else "pretrained"
        metrics.update({f"{label}_wer": round(base["wer"], 4), f"{label}_cer": round(base["cer"], 4)})
    samples = [{"id": r.id, "reference": ref, "hypothesis": h, "base_hypothesis": b}
               for r, ref, h, b in list(zip(records, refs, hyps, base_hyps))[: params.num_samples]]
    (out / "predictions.jsonl").write_text("".join(
        json.dumps({"id": r.id, "reference": ref, "hypothesis": h}) + "\n" for r, ref, h in zip(records, refs, hyps)))
    log.info("evaluation on %d %s utterances: %s", len(records), params.split, metrics)
    return {"split": params.split, "utterances": len(records), "wer": greedy["wer"], "cer": greedy["cer"],
            "asr": greedy, "beam_search": beam, "base_model": {"id": card["base_model"], **base},
            "inference_seconds": round(infer_s, 2), "samples": samples, "metrics": metrics}
