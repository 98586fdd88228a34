"""The pipelines this project ships: each a module exposing ``get_pipeline(config) -> Pipeline``."""

from __future__ import annotations

import importlib

from pipelines.config import load_config, unused_common_keys
from pipelines.definition import Pipeline, PipelineError, did_you_mean

PIPELINES: dict[str, str] = {
    "whisper_intensity": "Whisper ASR + loudness regression head (seed 000)",
    "ctc_asr": "wav2vec2 CTC ASR with a character vocabulary, WER/CER, ONNX (seed 001)",
    "whisper_asr": "multilingual Whisper fine-tuned for one language (Hindi), zero-shot vs fine-tuned (seed 002)",
    "voice_conversion": "SpeechT5 any-to-any voice conversion, HiFi-GAN vocoder, speaker embeddings (seed 004)",
    "prosody_ser": "emotion recognition with CTC ASR and word emphasis as auxiliary heads, ablation (seed 003)",
}


def get_pipeline(name: str, profile: str = "tiny", overrides: list[str] | None = None) -> Pipeline:
    """Load, build and validate a pipeline; raises PipelineError/ConfigError listing every problem."""
    if name not in PIPELINES:
        close = did_you_mean(name, PIPELINES)
        raise PipelineError(f"unknown pipeline {name!r}" + (f" (did you mean {close}?)" if close else ""),
                            [f"known: {', '.join(sorted(PIPELINES))}"])
    config = load_config(name, profile, overrides)
    module = importlib.import_module(f"pipelines.{name}")
    pipeline: Pipeline = module.get_pipeline(config)
    problems = []
    try:
        pipeline.validated_params()
    except PipelineError as exc:
        problems = exc.problems
    accepted = set()
    for stage in pipeline.stages:
        try:
            accepted |= set(stage.spec.params(pipeline.task).model_fields)
        except KeyError:
            pass  # reported by validated_params
    for key in unused_common_keys(config, accepted):
        close = did_you_mean(key, accepted)
        problems.append(f"common.{key}: no stage of this pipeline takes this parameter"
                        + (f" (did you mean common.{close}?)" if close else ""))
    if problems:
        raise PipelineError(f"pipeline {name!r} is not valid:", problems)
    return pipeline
