"""The trained model folder -> a ``WhisperTranscriber`` that forces the language and task on its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps.models.whisper.ctranslate import Runtime
from steps.models.whisper.prompt import DecoderPrompt
from steps.models.whisper.transcriber import WhisperTranscriber
from steps.tasks.base import read_model_card


def card_prompt(card: dict[str, Any]) -> DecoderPrompt:
    """The decoder prompt the model was trained with (``language`` and ``whisper_task`` on its card)."""
    return DecoderPrompt(language=card.get("language"), task=card.get("whisper_task"))


def load_transcriber(model_dir: Path, max_new_tokens: int = 128,
                     runtime: Runtime | None = None) -> tuple[WhisperTranscriber, dict[str, Any]]:
    """The model with its prompt forced (run by ``runtime``, PyTorch by default), and its model card."""
    card = read_model_card(model_dir)
    return WhisperTranscriber.from_dir(model_dir, max_new_tokens, card_prompt(card), runtime=runtime), card
