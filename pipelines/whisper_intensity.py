"""``whisper_intensity`` (seed 000): Whisper ASR plus a loudness regression head on the encoder."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_pipeline


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return standard_pipeline("whisper_intensity", "whisper_intensity", config)
