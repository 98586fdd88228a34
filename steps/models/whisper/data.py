"""Speech-to-text training data for a plain Whisper: manifest records -> (audio, labels) -> model batches.

Labels are ``TranscriptLabels``: the decoder prompt's forced tokens after the start token
(``<|hi|><|transcribe|><|notimestamps|>`` for a Hindi prompt), the transcript, ``<|endoftext|>``;
the model prepends ``decoder_start_token_id`` itself. The collator pads the features to the window
(the feature extractor) and the labels with -100; it passes no frame mask, since
``WhisperForConditionalGeneration.forward`` and ``generate`` take none.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steps.common.audio import load_audio
from steps.common.manifest import Utterance, resolve_audio
from steps.common.training import pad_labels
from steps.models.whisper.features import WhisperFeatures
from steps.models.whisper.prompt import TranscriptLabels


class TranscriptDataset(torch.utils.data.Dataset):
    """Records of ``manifest`` -> ``{"audio", "labels"}``."""

    def __init__(self, records: list[Utterance], manifest: Path, labels: TranscriptLabels):
        self.records, self.manifest, self.labels = records, manifest, labels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        return {"audio": load_audio(resolve_audio(self.manifest, record.audio)), "labels": self.labels(record.text)}


class TranscriptCollator:
    def __init__(self, extractor):
        self.features = WhisperFeatures(extractor)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {"input_features": self.features([it["audio"] for it in items])["input_features"],
                "labels": pad_labels([it["labels"] for it in items])}
