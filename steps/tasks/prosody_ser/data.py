"""Manifest records -> the model's inputs: log-mel features, the emotion id, CTC piece ids, and per word its
pieces, its place in the sentence and its emphasis label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.manifest import Utterance, resolve_audio
from steps.common.stage import StageError
from steps.tasks.prosody_ser.backbone import Features
from steps.tasks.prosody_ser.model import IGNORE, word_positions
from steps.tasks.prosody_ser.tokenizer import PAD, Pieces, words_of


def emotion_of(record: Utterance) -> str:
    """The record's emotion label as text (the seed's format numbers its classes: 3 -> "3")."""
    return str(record.extra.get("emotion"))


def emphasis_of(record: Utterance, words: list[str]) -> list[int]:
    marks = record.extra.get("emphasis")
    if not isinstance(marks, list) or len(marks) != len(words):
        return [IGNORE] * len(words)  # no usable marks: the word is not scored
    return [1 if m in (1, True, "1") else 0 for m in marks]


def check_labels(records: list[Utterance], labels: list[str], split: str) -> None:
    unknown = sorted({emotion_of(r) for r in records} - set(labels))
    if unknown:
        raise StageError(f"the {split} split has emotions the training split lacks: {unknown} (known: {labels})")


class WordInputs:
    """Words -> (pieces per word, (centre, share) per word), for the emphasis head."""

    def __init__(self, pieces: Pieces):
        self.pieces = pieces

    def __call__(self, words: list[str]) -> tuple[list[list[int]], list[tuple[float, float]]]:
        return [self.pieces.encode_word(w) for w in words], word_positions(words)


def pad_words(items: list[tuple[list[list[int]], list[tuple[float, float]]]]) -> dict[str, torch.Tensor]:
    batch, most_words = len(items), max([len(p) for p, _ in items] + [1])
    most_pieces = max([len(w) for p, _ in items for w in p] + [1])
    pieces = torch.full((batch, most_words, most_pieces), PAD, dtype=torch.long)
    position = torch.zeros((batch, most_words, 2), dtype=torch.float32)
    mask = torch.zeros((batch, most_words), dtype=torch.bool)
    for b, (word_pieces, places) in enumerate(items):
        for w, (ids, place) in enumerate(zip(word_pieces, places)):
            pieces[b, w, : len(ids)] = torch.tensor(ids)
            position[b, w] = torch.tensor(place)
            mask[b, w] = True
    return {"word_pieces": pieces, "word_position": position, "word_mask": mask}


class ProsodyDataset(torch.utils.data.Dataset):
    def __init__(self, records: list[Utterance], manifest: Path, pieces: Pieces, labels: list[str]):
        self.records, self.manifest, self.pieces = records, manifest, pieces
        self.index = {label: i for i, label in enumerate(labels)}
        self.words = WordInputs(pieces)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        words = words_of(rec, self.pieces.lowercase)
        word_pieces, places = self.words(words)
        return {"audio": load_audio(resolve_audio(self.manifest, rec.audio)),
                "emotion": self.index[emotion_of(rec)], "labels": self.pieces.encode(words),
                "word_pieces": word_pieces, "places": places, "emphasis": emphasis_of(rec, words)}


class Collator:
    def __init__(self, extractor):
        self.features = Features(extractor)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.features([it["audio"] for it in items])
        batch["emotion_labels"] = torch.tensor([it["emotion"] for it in items], dtype=torch.long)
        longest = max([len(it["labels"]) for it in items] + [1])
        batch["labels"] = torch.tensor([it["labels"] + [IGNORE] * (longest - len(it["labels"])) for it in items])
        batch.update(pad_words([(it["word_pieces"], it["places"]) for it in items]))
        emphasis = np.full(batch["word_mask"].shape, IGNORE, dtype=np.int64)
        for b, it in enumerate(items):
            emphasis[b, : len(it["emphasis"])] = it["emphasis"]
        batch["emphasis_labels"] = torch.from_numpy(emphasis)
        return batch
