"""Stage parameters every Whisper task's evaluate and export share: the split, batching, decoding length.

Tasks subclass them (extra fields, other defaults); kept apart from the model code so a task's
``params`` module, which every pipeline build imports, pulls in pydantic and nothing heavier.
"""

from __future__ import annotations

from pydantic import Field

from steps.common.stage import Params


class WhisperEvaluateParams(Params):
    split: str = Field("test")
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    max_items: int | None = Field(None, ge=1, description="score at most N utterances")
    compare_base_model: bool = Field(True, description="also score the starting model (zero-shot or untrained)")
    base_max_items: int | None = Field(None, ge=1, description="score the starting model on the first N "
                                                               "utterances only (a reference; default: all)")
    num_samples: int = Field(12, ge=0, description="rows of the transcript sample table")
    guard: bool = Field(True, description="score the guard split (prepare.guard) against the base model at its "
                                          "full 30 s window; its guard_wer_increase is a gate metric")
    guard_max_items: int | None = Field(120, ge=1, description="score at most N guard clips")
    seed: int = 42


class WhisperExportParams(Params):
    opset: int = Field(18, ge=14)
    split: str = Field("test")
    max_items: int | None = Field(None, ge=1, description="parity on at most N utterances (default: all)")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    timing_repeats: int = Field(3, ge=1)
