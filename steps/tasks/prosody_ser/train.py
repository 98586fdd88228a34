"""Train stage of ``prosody_ser``: the multi-task loss through the one ``fit``, best model by validation emotion
accuracy (the gate's metric), scored at every evaluation with the emphasis F1 and the CTC head's WER beside it."""

from __future__ import annotations

import logging
from pathlib import Path

from steps.common.audio import load_audio
from steps.common.manifest import resolve_audio
from steps.common.metrics import ctc_collapse
from steps.common.stage import StageError
from steps.common.training import fit, seed_and_threads, training_splits
from steps.models.resolve import is_scratch
from steps.tasks.base import write_model_card
from steps.tasks.prosody_ser.backbone import pretrained, scratch_config
from steps.tasks.prosody_ser.data import Collator, ProsodyDataset, check_labels, emotion_of, emphasis_of
from steps.tasks.prosody_ser.inference import Predictor
from steps.tasks.prosody_ser.metrics import emotion_scores, emphasis_scores
from steps.tasks.prosody_ser.model import ProsodySERConfig, ProsodySERModel
from steps.tasks.prosody_ser.params import TrainParams
from steps.tasks.prosody_ser.tokenizer import Pieces, words_of

log = logging.getLogger(__name__)
TASK = "prosody_ser"
HEADS = ("ser", "asr", "prosody")


def backbone(params: TrainParams, extractor) -> tuple[dict, dict | None]:
    """(encoder config as a dict, its pretrained weights or None for a scratch encoder)."""
    if is_scratch(params.model_id):
        positions = int(getattr(extractor, "chunk_length", 30) * 50)
        return scratch_config(params.model_id, params.d_model, params.layers, params.heads, params.ffn_dim,
                              positions), None
    return pretrained(params.model_id, params.revision, extractor)


def build_model(params: TrainParams, labels: list[str], vocab_size: int, extractor) -> ProsodySERModel:
    backbone_config, weights = backbone(params, extractor)
    config = ProsodySERConfig(
        backbone=backbone_config, emotion_labels=labels, vocab_size=vocab_size, head_dim=params.head_dim,
        ctc_hidden_dim=params.ctc_hidden_dim, dropout=params.dropout, use_ser=params.use_alpha_ser,
        use_asr=params.use_alpha_asr, use_prosody=params.use_alpha_prosody, alpha_ser=params.alpha_ser,
        alpha_asr=params.alpha_asr, alpha_prosody=params.alpha_prosody, ctc_entropy_weight=params.ctc_entropy_weight,
        ctc_blank_penalty=params.ctc_blank_penalty, ctc_blank_threshold=params.ctc_blank_threshold,
        ctc_label_smoothing=params.ctc_label_smoothing, ctc_confidence_penalty=params.ctc_confidence_penalty,
        prosody_pos_weight=params.prosody_pos_weight, backbone_lr=params.backbone_lr, head_lr=params.head_lr)
    model = ProsodySERModel(config)
    if weights is not None:
        model.encoder.load_state_dict(weights)
    if params.freeze_encoder_layers:
        freeze_layers(model.encoder, params.freeze_encoder_layers)
    if params.gradient_checkpointing:
        model.encoder.gradient_checkpointing_enable()
    return model


def freeze_layers(encoder, layers: int) -> None:
    """Freeze the encoder's convolutional front end and its first ``layers`` transformer layers."""
    front = [getattr(encoder, name) for name in ("conv1", "conv2", "feature_extractor", "feature_projection")
             if hasattr(encoder, name)]
    stack = encoder.layers if hasattr(encoder, "layers") else encoder.encoder.layers
    for module in [*front, *stack[:layers]]:
        module.requires_grad_(False)


class ValidationScores:
    """At each evaluation: emotion accuracy / UAR / macro-F1, emphasis F1 on the reference words, greedy WER."""

    def __init__(self, records, manifest, pieces: Pieces, extractor, batch_size: int):
        self.audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
        self.emotions = [emotion_of(r) for r in records]
        self.words = [words_of(r, pieces.lowercase) for r in records]
        self.marks = [emphasis_of(r, w) for r, w in zip(records, self.words)]
        self.pieces, self.extractor, self.batch_size = pieces, extractor, batch_size

    def __call__(self, model) -> dict[str, float]:
        predictor = Predictor(model, self.pieces, self.extractor)
        predictions = []
        for start in range(0, len(self.audios), self.batch_size):
            predictions += predictor(self.audios[start:start + self.batch_size],
                                     self.words[start:start + self.batch_size])
        scores: dict[str, float] = {}
        if model.config.use_ser:
            emotion = emotion_scores(self.emotions, [p.emotion for p in predictions], predictor.labels)
            scores.update({f"emotion_{k}": emotion[k] for k in ("accuracy", "uar", "macro_f1")})
        if model.config.use_prosody:
            scores["emphasis_f1"] = emphasis_scores(self.marks, [p.emphasis for p in predictions])["f1"]
        if model.config.use_asr:
            collapse = ctc_collapse([p.transcript or "" for p in predictions], [" ".join(w) for w in self.words], 1.0)
            scores.update({"wer": collapse["wer"], "cer": collapse["cer"], "blank_share": collapse["empty_share"]})
        return scores


def train(params: TrainParams, data: Path, tokenizer_dir: Path, model_out: Path, checkpoints: Path,
          artifacts: Path) -> dict:
    from transformers import AutoFeatureExtractor

    seed_and_threads(params.seed)
    pieces = Pieces(tokenizer_dir)
    extractor = AutoFeatureExtractor.from_pretrained(tokenizer_dir)
    (train_recs, train_manifest), (val_recs, val_manifest) = training_splits(data, params)
    labels = sorted({emotion_of(r) for r in train_recs})
    check_labels(val_recs, labels, "validation")
    model = build_model(params, labels, len(pieces), extractor)
    counts = {label: sum(emotion_of(r) == label for r in train_recs) for label in labels}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    heads = [h for h in HEADS if getattr(model.config, f"use_{h}")]
    log.info("prosody_ser: %.1fM parameters (%.1fM trainable), heads %s, alphas ser %.3g asr %.3g prosody %.3g; "
             "%d train / %d validation utterances; emotions %s", sum(p.numel() for p in model.parameters()) / 1e6,
             trainable / 1e6, "+".join(heads), params.alpha_ser, params.alpha_asr, params.alpha_prosody,
             len(train_recs), len(val_recs), counts)
    validate = ValidationScores(val_recs, val_manifest, pieces, extractor, params.batch_size)
    best = "eval_emotion_accuracy" if params.use_alpha_ser else "eval_loss"
    run = fit(model, params, train_dataset=ProsodyDataset(train_recs, train_manifest, pieces, labels),
              eval_dataset=ProsodyDataset(val_recs, val_manifest, pieces, labels), collator=Collator(extractor),
              checkpoints=checkpoints, artifacts=artifacts, eval_every_epochs=params.eval_every_epochs,
              title="prosody_ser training (α_SER·CE + α_ASR·CTC + α_Prosody·BCE)", validate=validate,
              arguments={"prediction_loss_only": True, "metric_for_best_model": best,
                         "greater_is_better": best != "eval_loss"})
    final = validate(run.model)
    log.info("validation (best checkpoint): %s", {k: round(v, 4) for k, v in final.items()})
    if params.use_alpha_asr and params.alpha_asr > 0 and params.detect_collapse \
            and final.get("blank_share", 0.0) >= params.collapse_blank_ratio:
        raise StageError(f"the CTC head collapsed: {final['blank_share']:.0%} of validation transcripts are blank "
                         f"(WER {final['wer']:.2f}). The model was not saved. Raise alpha_asr or head_lr, train longer, "
                         "or set ctc_blank_penalty; detect_collapse: false keeps such a model")
    run.save(model_out, extractor)
    for name in ("spm.model", "ctc_text.json", "tokenizer_info.json"):
        (model_out / name).write_bytes((tokenizer_dir / name).read_bytes())
    write_model_card(model_out, TASK, base_model=params.model_id, base_model_revision=params.revision,
                     window_seconds=getattr(extractor, "chunk_length", None), heads=heads, emotion_labels=labels,
                     alphas={"ser": params.alpha_ser, "asr": params.alpha_asr, "prosody": params.alpha_prosody})
    report = run.report(**{f"val_{k}": round(v, 4) for k, v in final.items()})
    report["emotion_counts_train"] = counts
    return report
