"""Model ids -> something ``from_pretrained`` accepts.

``scratch`` means "built from config" (no checkpoint); ``bundled:NAME`` is a checkpoint shipped by
an installed package (offline); anything else is a local folder or a Hugging Face hub id (hub ids
need a network).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _bundled_whisper_tiny_en() -> Path:
    from steps.models.whisper_ct2 import bundled_whisper_tiny_en

    return bundled_whisper_tiny_en()


BUNDLED: dict[str, Callable[[], Path]] = {
    "bundled:whisper-tiny.en": _bundled_whisper_tiny_en,
}


def is_scratch(model_id: str) -> bool:
    return model_id == "scratch" or model_id.startswith("scratch:")


def resolve_model_path(model_id: str) -> str:
    if is_scratch(model_id):
        raise ValueError("a scratch model has no checkpoint to load; it is built from config")
    if model_id.startswith("bundled:"):
        if model_id not in BUNDLED:
            raise ValueError(f"unknown bundled model {model_id!r}; known: {', '.join(BUNDLED)}")
        return str(BUNDLED[model_id]())
    path = Path(model_id).expanduser()
    return str(path) if path.exists() else model_id
