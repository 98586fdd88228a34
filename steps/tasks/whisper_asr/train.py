"""Train stage of ``whisper_asr``: the Seq2SeqTrainer fine-tunes a multilingual Whisper on one language.

Labels carry the language and task prefix (``<|hi|><|transcribe|><|notimestamps|>``); the generation
config forces the same prompt (``forced_decoder_ids`` unset), so the evaluation slice is scored on
generated text (WER picks the best checkpoint and drives early stopping). With ``merge_validation``
the validation split trains too, except the evaluation slice (``steps.common.training.training_splits``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from steps.common.metrics import error_rates
from steps.common.training import Generation, fit, seed_and_threads, training_splits
from steps.models.whisper.build import build_whisper, freeze_encoder
from steps.models.whisper.data import TranscriptCollator, TranscriptDataset
from steps.models.whisper.prompt import DecoderPrompt, TranscriptLabels, decoding_spec, force_prompt_in_generation
from steps.models.whisper.tokenizer import load_processors
from steps.tasks.base import write_model_card
from steps.tasks.whisper_asr.params import TrainParams

log = logging.getLogger(__name__)
TASK = "whisper_asr"


def build_model(model_id: str, tokenizer, feature_extractor, params: TrainParams | None = None,
                revision: str | None = None):
    """The starting model: pretrained weights (encoder window cut to the extractor's) or built from config."""
    p = params or TrainParams(model_id=model_id, revision=revision)
    return build_whisper(model_id, tokenizer, feature_extractor, d_model=p.d_model, layers=p.layers, heads=p.heads,
                         ffn_dim=p.ffn_dim, revision=p.revision)


def freeze(model, train_encoder_layers: int | None) -> None:
    """None: everything trains; 0: the whole encoder is frozen; N: only the encoder's top N layers train."""
    if train_encoder_layers is not None:
        layers = len(model.model.encoder.layers)
        freeze_encoder(model, layers - min(train_encoder_layers, layers))


class GeneratedTextRates:
    """``compute_metrics`` for ``predict_with_generate``: WER and CER of the generated transcripts."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def texts(self, ids: np.ndarray) -> list[str]:
        return self.tokenizer.batch_decode(np.where(ids == -100, self.pad, ids), skip_special_tokens=True)

    def __call__(self, prediction) -> dict[str, float]:
        rates = error_rates(self.texts(prediction.label_ids), self.texts(prediction.predictions))
        return {"wer": rates["wer"], "cer": rates["cer"]}


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path, artifacts: Path) -> dict:
    seed_and_threads(params.seed)
    tokenizer, extractor = load_processors(tokenizer_dir)
    prompt = DecoderPrompt(language=params.language, task=params.whisper_task)
    (train_recs, train_manifest), (val_recs, val_manifest) = training_splits(data, params, params.merge_validation)

    model = build_model(params.model_id, tokenizer, extractor, params)
    force_prompt_in_generation(model, tokenizer, prompt)
    freeze(model, params.train_encoder_layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %.1fM parameters (%.1fM trainable), window %ss, prompt %s, %d train / %d evaluation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6, extractor.chunk_length,
             "".join(prompt.tokens), len(train_recs), len(val_recs))

    labels = TranscriptLabels(tokenizer, prompt)
    run = fit(model, params, train_dataset=TranscriptDataset(train_recs, train_manifest, labels),
              eval_dataset=TranscriptDataset(val_recs, val_manifest, labels), collator=TranscriptCollator(extractor),
              checkpoints=checkpoints, artifacts=artifacts, eval_every_epochs=params.eval_every_epochs,
              title=f"whisper_asr training ({params.language}, {params.whisper_task})",
              compute_metrics=GeneratedTextRates(tokenizer), generation=Generation(params.generation_max_length))
    run.save(model_out, tokenizer, extractor)
    spec = decoding_spec(tokenizer, prompt)
    write_model_card(model_out, TASK, base_model=params.model_id, base_model_revision=params.revision,
                     language=params.language, whisper_task=params.whisper_task,
                     window_seconds=extractor.chunk_length, train_encoder_layers=params.train_encoder_layers,
                     decoding={"prefix": list(spec.prefix), "eos": spec.eos, "suppress": list(spec.suppress)})
    evals = [h for h in run.history if "eval_wer" in h]
    return {**run.report(val_wer=round(evals[-1]["eval_wer"], 4) if evals else None,
                         best_val_wer=round(min(h["eval_wer"] for h in evals), 4) if evals else None,
                         trainable_m=round(trainable / 1e6, 1)),
            "training_utterances": len(train_recs), "evaluation_slice": [r.id for r in val_recs]}
