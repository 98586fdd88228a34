"""Parameters of the ``prosody_ser`` task's stages (validated before any stage starts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.common.stage import Params
from steps.common.train_params import TrainParamsBase
from steps.models.resolve import REVISION_HELP

BUNDLED_TINY_EN = "bundled:whisper-tiny.en"
MODEL_ID_HELP = (f"the backbone: '{BUNDLED_TINY_EN}' (offline, pretrained) or 'bundled:whisper-base'; a Hugging "
                 "Face id or folder of a Whisper checkpoint (its encoder) or of a speech encoder (XLS-R, MMS, "
                 "Wav2Vec2-BERT: facebook/wav2vec2-xls-r-300m, facebook/mms-300m, facebook/w2v-bert-2.0); "
                 "'scratch' / 'scratch:wav2vec2' (a small Whisper / wav2vec2 encoder from config, for tests)")


class TokenizerParams(Params):
    model_id: str = Field(BUNDLED_TINY_EN, description="the backbone, for its feature extractor (see train)")
    revision: str | None = Field(None, description=REVISION_HELP)
    vocab_size: int = Field(256, ge=8, le=64000, description="SentencePiece vocabulary size (a soft limit: a small "
                                                             "corpus gets the pieces it has)")
    character_coverage: float = Field(0.995, gt=0, le=1, description="SentencePiece character coverage")
    model_type: Literal["bpe", "unigram"] = Field("bpe")
    retrain_tokenizer: bool = Field(True, description="train on the training transcripts; false loads tokenizer_path")
    tokenizer_path: str | None = Field(None, description="an existing SentencePiece .model (retrain_tokenizer: false)")
    window_seconds: float = Field(6.0, gt=0, le=30, description="Whisper's encoder window; clips are padded to it")
    lowercase: bool = Field(True, description="the ASR head's targets in lower case")

    @model_validator(mode="after")
    def _existing_model(self):
        if not self.retrain_tokenizer and not self.tokenizer_path:
            raise ValueError("retrain_tokenizer: false needs tokenizer_path (a SentencePiece .model file)")
        return self


class TrainParams(TrainParamsBase):
    model_id: str = Field(BUNDLED_TINY_EN, description=MODEL_ID_HELP)
    revision: str | None = Field(None, description=REVISION_HELP)
    # the seed's loss: L = alpha_ser * L_SER + alpha_asr * L_ASR + alpha_prosody * L_Prosody
    alpha_ser: float = Field(1.0, ge=0)
    alpha_asr: float = Field(0.1, ge=0)
    alpha_prosody: float = Field(0.1, ge=0)
    alpha_aux: float | None = Field(None, ge=0, description="sets alpha_asr and alpha_prosody together (the seed's "
                                                           "ablation sweeps one value for both); null: each its own")
    use_alpha_ser: bool = Field(True, description="train the emotion head (the main task)")
    use_alpha_asr: bool = Field(True, description="train the CTC head (auxiliary)")
    use_alpha_prosody: bool = Field(True, description="train the word-emphasis head (auxiliary)")
    # CTC regularisation (seed 003's names)
    ctc_entropy_weight: float = Field(0.01, ge=0, description="rewards per-frame entropy of the CTC posteriors")
    ctc_blank_penalty: float = Field(0.0, ge=0, description="penalty on the mean blank probability above the threshold")
    ctc_blank_threshold: float = Field(0.3, ge=0, le=1)
    ctc_label_smoothing: float = Field(0.0, ge=0, lt=1, description="mixes a uniform-target term into the CTC loss")
    ctc_confidence_penalty: float = Field(0.0, ge=0, description="penalises confident (low-entropy) frames")
    collapse_blank_ratio: float = Field(0.95, gt=0, le=1, description="this share of blank validation transcripts "
                                                                      "means the CTC head collapsed")
    detect_collapse: bool = Field(True, description="fail the stage when the CTC head (alpha_asr > 0) collapsed")
    backbone_lr: float = Field(1e-5, gt=0, lt=1, description="learning rate of the shared encoder")
    head_lr: float = Field(5e-5, gt=0, lt=1, description="learning rate of the three heads")
    freeze_encoder_layers: int = Field(0, ge=0, description="freeze the convolutions and the first N encoder layers")
    gradient_checkpointing: bool = Field(False)
    eval_every_epochs: int = Field(1, ge=1)
    head_dim: int = Field(256, ge=16, description="width of the heads' projections")
    ctc_hidden_dim: int = Field(0, ge=0, description="the CTC head's hidden layer width (0: a linear head)")
    dropout: float = Field(0.1, ge=0, lt=1)
    prosody_pos_weight: float = Field(2.0, gt=0, description="weight of emphasised words in the emphasis loss "
                                                             "(they are the rarer class)")
    # size of an encoder built from config ('scratch': tests)
    d_model: int = Field(64, ge=16)
    layers: int = Field(1, ge=1)
    heads: int = Field(2, ge=1)
    ffn_dim: int = Field(128, ge=16)

    @model_validator(mode="before")
    @classmethod
    def _one_auxiliary_weight(cls, data):
        if isinstance(data, dict) and data.get("alpha_aux") is not None:
            data = {**data, "alpha_asr": data["alpha_aux"], "alpha_prosody": data["alpha_aux"]}
        return data

    @model_validator(mode="after")
    def _some_head(self):
        if not (self.use_alpha_ser or self.use_alpha_asr or self.use_alpha_prosody):
            raise ValueError("every head is switched off (use_alpha_ser/asr/prosody): nothing to train")
        return self


class EvaluateParams(Params):
    split: str = Field("test")
    batch_size: int = Field(16, ge=1)
    max_items: int | None = Field(None, ge=1)
    beam_width: int = Field(8, ge=1, description="CTC beam search width (greedy is always scored too)")
    baseline_max_items: int | None = Field(None, ge=1, description="training clips the acoustic baseline learns from")
    num_samples: int = Field(8, ge=0, description="example predictions in the report")


class ExportParams(Params):
    split: str = Field("test")
    max_items: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)
    opset: int = Field(17, ge=13)
    timing_repeats: int = Field(2, ge=1)
