"""``whisper_asr`` (seed 002): a multilingual Whisper fine-tuned to transcribe one language (Hindi by default)."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_pipeline


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return standard_pipeline("whisper_asr", "whisper_asr", config)
