"""Train stage of ``voice_conversion``: SpeechT5ForSpeechToSpeech learns to say the source's words with the
target speaker's voice, predicting the vocoder's mel frames under teacher forcing (the seed's recipe:
step-based, warm-up, gradient accumulation, validation loss every ``eval_every`` steps, checkpoints every
``save_every``, resumable, best checkpoint by validation loss).

The model folder holds the SpeechT5 checkpoint and ``features.json`` (vocoder, speaker encoder, mel
statistics), so serving needs nothing else.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from steps.common.stage import StageError
from steps.common.training import fit, seed_and_threads
from steps.models.speecht5.build import build_model, small_config
from steps.models.speecht5.framewise import FramewiseConfig, FramewiseConverter
from steps.models.speecht5.speakers import SpeakerEncoder
from steps.models.speecht5.vocoder import NUM_MEL_BINS, Vocoder
from steps.tasks.base import write_model_card
from steps.tasks.voice_conversion.data import (AudioStore, Embeddings, PairCollator, build_dataset, read_features,
                                               read_pairs)
from steps.tasks.voice_conversion.params import TrainParams

log = logging.getLogger(__name__)
TASK = "voice_conversion"


def conditioning(features: dict, table: Embeddings, audio: AudioStore):
    """``embed(pair)``: the target speaker's average embedding, or the target utterance's own (from the table,
    or computed now when ``use_precomputed_xvectors`` is off)."""
    encoder = SpeakerEncoder(features["speaker_encoder"])

    def embed(pair):
        if features["xvector_mode"] == "average":
            return table.speakers[pair.tgt_speaker]
        if features["use_precomputed_xvectors"] and pair.tgt in table.utterances:
            return table.utterances[pair.tgt]
        return encoder.embed(audio(pair.tgt))

    return embed


def speecht5(params: TrainParams, features: dict, decoding: str):
    """SpeechT5ForSpeechToSpeech (with the seed's loss) from ``model_id`` or built small from config."""
    config = None if params.model_id else small_config(
        params.hidden_size, params.layers, params.heads, params.conv_channels, features["speaker_dim"], NUM_MEL_BINS)
    if config is not None:
        config.reduction_factor = params.reduction_factor
    model = build_model(params.model_id, config)
    model.set_decoding(decoding)
    model.config.guided_attention_loss_sigma = params.guided_attention_sigma
    model.config.guided_attention_loss_scale = params.guided_attention_scale
    model.config.use_guided_attention_loss = params.guided_attention_scale > 0
    model.loss_fn = type(model.loss_fn)(model.config)
    if model.config.speaker_embedding_dim != features["speaker_dim"]:
        raise StageError(f"{params.model_id} takes {model.config.speaker_embedding_dim}-d speaker embeddings but "
                         f"{features['speaker_encoder']} gives {features['speaker_dim']}-d: choose a matching "
                         "speakers.speaker_encoder (the seed's checkpoint takes SpeechBrain x-vectors)")
    return model


def train(params: TrainParams, data: Path, speakers_dir: Path, model_out: Path, checkpoints: Path,
          artifacts: Path) -> dict:
    seed_and_threads(params.seed)
    features = read_features(speakers_dir)
    table = Embeddings.load(speakers_dir)
    audio = AudioStore(data)
    vocoder = Vocoder(features["vocoder"])
    embed = conditioning(features, table, audio)
    train_pairs = read_pairs(speakers_dir, "train")
    if params.max_train_samples:
        train_pairs = train_pairs[: params.max_train_samples]
    val_pairs = read_pairs(speakers_dir, "validation")[: params.max_eval_samples or None]
    framewise = params.architecture == "framewise"
    decoding = "aligned" if framewise else params.decoding
    train_set, skipped = build_dataset(train_pairs, audio, vocoder, features, embed, "train pairs",
                                       params.max_target_seconds, decoding, waveform=not framewise)
    val_set, val_skipped = build_dataset(val_pairs, audio, vocoder, features, embed, "validation pairs",
                                         params.max_target_seconds, decoding, waveform=not framewise)
    if not len(train_set) or not len(val_set):
        raise StageError(f"nothing to train on: {len(train_set)} training and {len(val_set)} validation pairs usable "
                         f"({len(skipped) + len(val_skipped)} skipped, e.g. {(skipped + val_skipped)[:1]})")
    model = (FramewiseConverter(FramewiseConfig(NUM_MEL_BINS, features["speaker_dim"], params.hidden_size, params.layers,
                                                params.kernel_size, params.dropout))
             if framewise else speecht5(params, features, decoding))
    log.info("model: %.1fM parameters; %d train / %d validation pairs (%d skipped)",
             sum(p.numel() for p in model.parameters()) / 1e6, len(train_set), len(val_set), len(skipped))
    cadence = {"eval_strategy": "steps", "eval_steps": params.eval_every, "save_strategy": "steps",
               "save_steps": params.save_every, "warmup_steps": params.warmup_steps,
               "per_device_eval_batch_size": max(1, params.batch_size // 2)}
    run = fit(model, params, train_dataset=train_set, eval_dataset=val_set,
              collator=PairCollator(model.config.reduction_factor, waveform=not framewise), checkpoints=checkpoints,
              artifacts=artifacts, title="voice_conversion training (mel L1" + ("" if framewise else
                                                                                " + stop + guided attention") + ")",
              group_lengths=train_set.lengths, arguments=cadence)
    run.save(model_out)
    shutil.copy(speakers_dir / "features.json", model_out / "features.json")
    write_model_card(model_out, TASK, base_model=params.model_id or f"{params.architecture} from config",
                     architecture=params.architecture, vocoder=features["vocoder"],
                     speaker_encoder=features["speaker_encoder"], xvector_mode=features["xvector_mode"],
                     reduction_factor=model.config.reduction_factor, decoding=decoding)
    return {**run.report(train_pairs=len(train_set), validation_pairs=len(val_set)),
            "skipped_pairs": skipped + val_skipped}
