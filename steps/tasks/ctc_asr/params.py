"""Parameters of the ``ctc_asr`` task's stages (validated before any stage starts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.common.stage import Params
from steps.common.train_params import TrainParamsBase
from steps.models.resolve import REVISION_HELP

MODEL_ID_HELP = "'scratch' (a tiny wav2vec2 built from config) or a Hugging Face id / local folder"


class TokenizerParams(Params):
    model_id: str = Field("scratch", description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    case: Literal["lower", "upper"] = Field("lower", description="case of the character vocabulary (scratch)")
    min_char_count: int = Field(1, ge=1, description="characters seen fewer times are left out (scratch)")


class TrainParams(TrainParamsBase):
    model_id: str = Field("scratch", description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    epochs: float = Field(4.0, gt=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-3, gt=0, lt=10)
    freeze_feature_encoder: bool = Field(True, description="freeze the convolutional feature encoder (pretrained)")
    group_by_length: bool = Field(True, description="batch utterances of similar duration together")
    augment_noise_snr_db: float | None = Field(None, description="add white noise at a random SNR down to this (dB)")
    augment_gain: bool = Field(False, description="random gain, then peak normalisation")
    eval_every_epochs: int = Field(1, ge=1)
    collapse_blank_ratio: float = Field(0.95, gt=0, le=1,
                                        description="validation outputs this share empty = collapsed training")
    detect_collapse: bool = Field(True, description="fail the stage when training collapsed to blank output")
    # size of a model built from config ('scratch')
    hidden_size: int = Field(192, ge=32)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    ffn_dim: int = Field(512, ge=32)
    conv_dim: int = Field(96, ge=16)


class EvaluateParams(Params):
    split: str = Field("test")
    batch_size: int = Field(16, ge=1)
    max_items: int | None = Field(None, ge=1)
    compare_base_model: bool = Field(True, description="also score the starting model (untrained or pretrained)")
    kenlm_model: str | None = Field(None, description="KenLM .arpa/.bin file: beam search with pyctcdecode")
    beam_width: int = Field(32, ge=1)
    num_samples: int = Field(12, ge=0)
    seed: int = 42


class ExportParams(Params):
    opset: int = Field(18, ge=14)
    split: str = Field("test")
    max_items: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    timing_repeats: int = Field(3, ge=1)
