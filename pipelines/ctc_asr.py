"""``ctc_asr`` (seed 001): wav2vec2 CTC speech recognition with a character vocabulary."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_pipeline


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return standard_pipeline("ctc_asr", "ctc_asr", config)
