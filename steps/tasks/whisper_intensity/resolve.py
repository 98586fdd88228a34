"""Model ids -> local folders: the bundled offline tiny.en, 'scratch', hub ids or local paths."""

from __future__ import annotations

from pathlib import Path

from steps.tasks.whisper_intensity.params import BUNDLED_TINY_EN


def is_scratch(model_id: str) -> bool:
    return model_id == "scratch" or model_id.startswith("scratch:")


def resolve_model_path(model_id: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts (hub ids need a network)."""
    if model_id == BUNDLED_TINY_EN:
        from steps.models.whisper_ct2 import bundled_whisper_tiny_en

        return str(bundled_whisper_tiny_en())
    if is_scratch(model_id):
        raise ValueError("a scratch model has no checkpoint to load")
    path = Path(model_id).expanduser()
    return str(path) if path.exists() else model_id
