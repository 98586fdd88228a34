"""``voice_conversion`` (seed 004): SpeechT5 any-to-any voice conversion with a HiFi-GAN vocoder and speaker
embeddings; its ``speakers`` stage (the tokenizer slot) picks the parallel pairs and embeds the speakers."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_pipeline


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return standard_pipeline("voice_conversion", "voice_conversion", config, tokenizer_stage="speakers")
