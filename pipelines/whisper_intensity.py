"""``whisper_intensity`` (seed 000): Whisper ASR plus a loudness regression head on the encoder."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_stages

TASK = "whisper_intensity"


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return Pipeline(
        name="whisper_intensity",
        task=TASK,
        stages=standard_stages(TASK, config),
        description=config.get("description", ""),
        config=config,
    )
