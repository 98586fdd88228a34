"""Pairs as model inputs: the source waveform, the target's mel frames and the target speaker's embedding.

Everything the model trains on is computed once here (decoding, target features), so an epoch costs only
the model. Source audio is normalised to zero mean and unit variance, as SpeechT5's feature extractor does;
target frames are normalised per band with the statistics of the ``speakers`` stage. In ``aligned``
decoding the source's own mel frames go in too, and the target frames are put on the source's timeline
(``steps.models.speecht5.align``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import AudioError, load_audio
from steps.common.console import progress
from steps.common.manifest import load_split, resolve_audio
from steps.models.speecht5.align import target_on_source_timeline
from steps.models.speecht5.convert import mel_frames, normalise_source
from steps.tasks.voice_conversion.pairs import Pair


def read_pairs(speakers_dir: Path, split: str) -> list[Pair]:
    rows = [json.loads(line) for line in (Path(speakers_dir) / "pairs.jsonl").read_text().splitlines() if line.strip()]
    return [Pair(**row) for row in rows if row["split"] == split]


def read_features(folder: Path) -> dict:
    return json.loads((Path(folder) / "features.json").read_text())


@dataclass
class Embeddings:
    """The ``speakers`` stage's table: per clip (``utt``) and per speaker (``spk``)."""

    utterances: dict[str, np.ndarray]
    speakers: dict[str, np.ndarray]

    @classmethod
    def load(cls, folder: Path) -> "Embeddings":
        table = np.load(Path(folder) / "speakers.npz")
        utt = {k[4:]: table[k] for k in table.files if k.startswith("utt/")}
        spk = {k[4:]: table[k] for k in table.files if k.startswith("spk/")}
        return cls(utt, spk)


class AudioStore:
    """Every clip of the prepared data by id, decoded once on demand."""

    def __init__(self, data: Path):
        self.records = {}
        for split in ("train", "validation", "test"):
            records, manifest = load_split(data, split)
            self.records.update({r.id: (r, manifest) for r in records})
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, utt: str) -> np.ndarray:
        if utt not in self._cache:
            record, manifest = self.records[utt]
            self._cache[utt] = load_audio(resolve_audio(manifest, record.audio))
        return self._cache[utt]

    def duration(self, utt: str) -> float:
        return float(self.records[utt][0].duration or 0.0)


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict], lengths: list[float]):
        self.items = items
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def build_dataset(pairs: list[Pair], audio: AudioStore, vocoder, features: dict, embed, desc: str,
                  max_seconds: float, decoding: str = "autoregressive",
                  waveform: bool = True) -> tuple[PairDataset, list[dict]]:
    """``embed(pair) -> vector``: the conditioning embedding of the pair's target; ``waveform`` false: items
    carry no source waveform (a model that reads only mel frames). Returns the dataset and the pairs skipped
    (too long, unreadable) with reasons."""
    mean = np.asarray(features["mel_mean"], dtype=np.float32)
    std = np.asarray(features["mel_std"], dtype=np.float32)
    mels: dict[str, np.ndarray] = {}

    def mel(utt: str) -> np.ndarray:
        if utt not in mels:
            mels[utt] = mel_frames(vocoder, audio(utt), mean, std)
        return mels[utt]

    items, lengths, skipped = [], [], []
    for pair in progress(pairs, desc=desc, unit="pair"):
        if max(audio.duration(pair.src), audio.duration(pair.tgt)) > max_seconds:
            skipped.append({"src": pair.src, "tgt": pair.tgt, "reason": f"longer than {max_seconds} s"})
            continue
        try:
            item = {"labels": mel(pair.tgt), "speaker_embeddings": np.asarray(embed(pair), dtype=np.float32)}
            if waveform:
                item["input_values"] = normalise_source(audio(pair.src))
            if decoding == "aligned":
                item["source_frames"] = mel(pair.src)
                item["labels"] = target_on_source_timeline(item["source_frames"], item["labels"])
        except (AudioError, ValueError, KeyError) as exc:
            skipped.append({"src": pair.src, "tgt": pair.tgt, "reason": str(exc)})
            continue
        items.append(item)
        lengths.append(len(item["labels"]) / features["frame_rate"])
    return PairDataset(items, lengths), skipped


@dataclass
class PairCollator:
    """Pads waveforms with zeros (masked) and mel frames with -100 (ignored by the loss) to a multiple of the
    model's reduction factor; in ``aligned`` decoding, also the source's frames (zeros after the end).
    ``waveform`` false: no source waveform (a model that reads only frames)."""

    reduction_factor: int
    waveform: bool = True

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        frames = max(len(b["labels"]) for b in batch)
        frames += (-frames) % self.reduction_factor
        labels = torch.full((len(batch), frames, batch[0]["labels"].shape[1]), -100.0)
        for i, b in enumerate(batch):
            labels[i, : len(b["labels"])] = torch.from_numpy(b["labels"])
        speakers = torch.from_numpy(np.stack([b["speaker_embeddings"] for b in batch]))
        out = {"labels": labels, "speaker_embeddings": speakers}
        if self.waveform:
            longest = max(len(b["input_values"]) for b in batch)
            out["input_values"] = torch.zeros(len(batch), longest)
            out["attention_mask"] = torch.zeros(len(batch), longest, dtype=torch.long)
            for i, b in enumerate(batch):
                out["input_values"][i, : len(b["input_values"])] = torch.from_numpy(b["input_values"])
                out["attention_mask"][i, : len(b["input_values"])] = 1
        if "source_frames" in batch[0]:
            out["source_frames"] = torch.zeros(len(batch), frames, labels.shape[2])
            for i, b in enumerate(batch):
                out["source_frames"][i, : len(b["source_frames"])] = torch.from_numpy(b["source_frames"])
        return out
