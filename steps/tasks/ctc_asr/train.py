"""Train stage of ``ctc_asr``: Wav2Vec2ForCTC with the HF Trainer, and a guard against CTC collapse.

Collapse (every output blank, WER stuck at 1.0) is a known failure of CTC training with too high a
learning rate or too little data. After training, the model decodes the validation split; if the
share of empty outputs reaches ``collapse_blank_ratio`` the stage fails with a message saying so,
so a collapsed model is never evaluated or registered as if it were fine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from steps.common.audio import load_audio
from steps.common.batching import run_batches
from steps.common.manifest import resolve_audio
from steps.common.metrics import ctc_collapse, error_rates
from steps.common.training import fit, seed_and_threads, training_splits
from steps.models.resolve import is_scratch
from steps.models.wav2vec2.build import build_ctc_model, uses_attention_mask
from steps.models.wav2vec2.tokenizer import load_processors
from steps.models.wav2vec2.transcriber import CTCTranscriber
from steps.models.wav2vec2.vocabulary import TargetText
from steps.tasks.base import write_model_card
from steps.tasks.ctc_asr.data import Augment, CTCCollator, CTCDataset
from steps.tasks.ctc_asr.params import TrainParams

log = logging.getLogger(__name__)
TASK = "ctc_asr"


class CTCCollapsed(RuntimeError):
    pass


def build_model(model_id: str, tokenizer, params: TrainParams | None = None):
    p = params or TrainParams(model_id=model_id)
    return build_ctc_model(model_id, tokenizer, hidden_size=p.hidden_size, layers=p.layers, heads=p.heads,
                           ffn_dim=p.ffn_dim, conv_dim=p.conv_dim, revision=p.revision)


def validation_wer(tokenizer):
    """compute_metrics for the Trainer: greedy WER/CER of each evaluation (logged as ``eval_wer``,
    ``eval_cer``), the intermediate scores the tune stage prunes on and SageMaker's tuning objective."""
    import numpy as np

    def compute(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        ids = np.argmax(logits, axis=-1)
        ids[(logits == -100).all(axis=-1)] = tokenizer.pad_token_id  # frames the Trainer padded across batches
        labels = np.where(prediction.label_ids == -100, tokenizer.pad_token_id, prediction.label_ids)
        hyps = tokenizer.batch_decode(ids)
        refs = tokenizer.batch_decode(labels, group_tokens=False)
        rates = error_rates(refs, hyps)
        return {"wer": round(rates["wer"], 4), "cer": round(rates["cer"], 4)}

    return compute


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path, artifacts: Path) -> dict:
    seed_and_threads(params.seed)
    tokenizer, extractor = load_processors(tokenizer_dir)
    (train_recs, train_manifest), (val_recs, val_manifest) = training_splits(data, params)
    model = build_model(params.model_id, tokenizer, params)
    if params.freeze_feature_encoder and not is_scratch(params.model_id):
        model.freeze_feature_encoder()
    log.info("wav2vec2-CTC: %.2fM parameters, vocabulary %d, %d train / %d validation utterances",
             sum(p.numel() for p in model.parameters()) / 1e6, len(tokenizer), len(train_recs), len(val_recs))

    train_set = CTCDataset(train_recs, train_manifest, tokenizer,
                           Augment(params.augment_noise_snr_db, params.augment_gain, params.seed))
    run = fit(model, params, train_dataset=train_set, eval_dataset=CTCDataset(val_recs, val_manifest, tokenizer),
              collator=CTCCollator(extractor, uses_attention_mask(model.config)), checkpoints=checkpoints,
              artifacts=artifacts, title="ctc_asr training (CTC loss)", eval_every_epochs=params.eval_every_epochs,
              group_lengths=train_set.durations if params.group_by_length else None,
              compute_metrics=validation_wer(tokenizer))

    transcriber = CTCTranscriber(run.model, tokenizer, extractor)
    target = TargetText(tokenizer)
    audios = [load_audio(resolve_audio(val_manifest, r.audio)) for r in val_recs]
    texts, _ = run_batches(transcriber, audios, params.batch_size, "collapse check")
    collapse = ctc_collapse(texts, [target(r.text) for r in val_recs], params.collapse_blank_ratio)
    if collapse["collapsed"] and params.detect_collapse:
        raise CTCCollapsed(
            f"CTC training collapsed: {collapse['empty_share']:.0%} of validation outputs are blank "
            f"(WER {collapse['wer']:.2f}). The model was not saved. Lower the learning rate "
            f"(now {params.lr:g}), add warm-up, or train longer; the loss curve is artifacts/loss_curve.png "
            f"among this stage's outputs (the local backend keeps them in <run>/train/failed-outputs/).")
    run.save(model_out, tokenizer, extractor)
    write_model_card(model_out, TASK, base_model=params.model_id, base_model_revision=params.revision)
    return {**run.report(val_wer=round(collapse["wer"], 4), val_cer=round(collapse["cer"], 4),
                         blank_share=collapse["empty_share"]),
            "collapse_check": collapse}
