"""``prosody_ser`` (seed 003): one Whisper encoder with three heads (emotion, CTC ASR over SentencePiece pieces,
word emphasis), evaluated on speakers held out of training; the tune stage runs its ablation grid."""

from __future__ import annotations

from typing import Any

from pipelines.definition import Pipeline, standard_pipeline


def get_pipeline(config: dict[str, Any]) -> Pipeline:
    return standard_pipeline("prosody_ser", "prosody_ser", config)
