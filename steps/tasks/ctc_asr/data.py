"""Datasets, augmentation and padding collation for CTC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.manifest import Utterance, resolve_audio
from steps.common.training import pad_labels
from steps.models.wav2vec2.features import CTCFeatures
from steps.models.wav2vec2.vocabulary import TargetText


class Augment:
    """Optional waveform augmentation: white noise at a random SNR, random gain then peak normalisation."""

    def __init__(self, noise_snr_db: float | None, gain: bool, seed: int):
        self.noise_snr_db, self.gain = noise_snr_db, gain
        self.rng = np.random.default_rng(seed)

    @property
    def active(self) -> bool:
        return self.noise_snr_db is not None or self.gain

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if self.noise_snr_db is not None:
            snr = self.rng.uniform(self.noise_snr_db, self.noise_snr_db + 20.0)
            power = float(np.mean(audio**2)) + 1e-12
            audio = audio + self.rng.standard_normal(audio.shape).astype(np.float32) * np.sqrt(power / 10 ** (snr / 10))
        if self.gain:
            audio = audio * 10 ** (self.rng.uniform(-12, 6) / 20)
            peak = float(np.max(np.abs(audio))) + 1e-9
            audio = audio / peak * 0.9 if peak > 0.9 else audio
        return audio.astype(np.float32)


class CTCDataset(torch.utils.data.Dataset):
    def __init__(self, records: list[Utterance], manifest: Path, tokenizer, augment: Augment | None = None):
        self.records, self.manifest, self.tokenizer = records, manifest, tokenizer
        self.target = TargetText(tokenizer)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.records)

    @property
    def durations(self) -> list[float]:
        return [r.duration for r in self.records]

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        audio = load_audio(resolve_audio(self.manifest, rec.audio))
        if self.augment is not None and self.augment.active:
            audio = self.augment(audio)
        return {"audio": audio, "labels": self.tokenizer(self.target(rec.text)).input_ids}


class CTCCollator:
    """DataCollatorCTCWithPadding: pads audio with the feature extractor, labels with -100."""

    def __init__(self, extractor, use_attention_mask: bool):
        self.features = CTCFeatures(extractor, use_attention_mask)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.features([it["audio"] for it in items])
        batch.pop("sample_mask")
        batch["labels"] = pad_labels([it["labels"] for it in items])
        return batch
