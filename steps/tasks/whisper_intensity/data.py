"""Datasets and collation: manifest records -> log-mel features, frame masks, token labels, intensity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.manifest import Utterance, resolve_audio
from steps.common.training import pad_labels
from steps.models.whisper.features import WhisperFeatures
from steps.models.whisper.prompt import TranscriptLabels


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, records: list[Utterance], manifest: Path, tokenizer=None):
        self.records, self.manifest = records, manifest
        self.labels = TranscriptLabels(tokenizer) if tokenizer is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        item = {"audio": load_audio(resolve_audio(self.manifest, rec.audio)),
                "intensity": float(rec.intensity if rec.intensity is not None else np.nan)}
        if self.labels is not None:
            item["labels"] = self.labels(rec.text)
        return item


class Collator:
    def __init__(self, feature_extractor):
        self.features = WhisperFeatures(feature_extractor)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.features([it["audio"] for it in items])
        batch["intensity_labels"] = torch.tensor([it["intensity"] for it in items], dtype=torch.float32)
        if "labels" in items[0]:
            batch["labels"] = pad_labels([it["labels"] for it in items])
        return batch
