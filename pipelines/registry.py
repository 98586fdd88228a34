"""The pipelines this project ships: each a module exposing ``get_pipeline(config) -> Pipeline``."""

from __future__ import annotations

import importlib

from pipelines.config import load_config, unused_common_keys
from pipelines.definition import Pipeline, PipelineError

PIPELINES: dict[str, str] = {
    "whisper_intensity": "Whisper ASR + loudness regression head (seed 000)",
    "ctc_asr": "wav2vec2 CTC ASR with a character vocabulary, WER/CER, ONNX (seed 001)",
}


def get_pipeline(name: str, profile: str = "tiny", overrides: list[str] | None = None) -> Pipeline:
    """Load, build and validate a pipeline; raises PipelineError/ConfigError listing every problem."""
    if name not in PIPELINES:
        raise PipelineError(f"unknown pipeline {name!r}", [f"known: {', '.join(sorted(PIPELINES))}"])
    config = load_config(name, profile, overrides)
    module = importlib.import_module(f"pipelines.{name}")
    pipeline: Pipeline = module.get_pipeline(config)
    params = pipeline.validated_params()
    accepted = {f for p in params.values() for f in type(p).model_fields}
    unused = unused_common_keys(config, accepted)
    if unused:
        raise PipelineError(f"pipeline {name!r} is not valid:",
                            [f"common.{k}: no stage of this pipeline takes this parameter" for k in unused])
    return pipeline
