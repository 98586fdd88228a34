"""Datasets and collation: manifest records -> log-mel features, frame masks, token labels, intensity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.manifest import Utterance, resolve_audio
from steps.tasks.whisper_intensity.decoding import DecodingSpec

SOT, NO_TIMESTAMPS, EOT = "<|startoftranscript|>", "<|notimestamps|>", "<|endoftext|>"


def decoding_spec(tokenizer, max_new_tokens: int = 64) -> DecodingSpec:
    sot, nots, eos = (tokenizer.convert_tokens_to_ids(t) for t in (SOT, NO_TIMESTAMPS, EOT))
    special = {i for i in tokenizer.get_added_vocab().values()} | set(tokenizer.all_special_ids)
    return DecodingSpec(prefix=(sot, nots), eos=eos, suppress=tuple(sorted(special - {eos})),
                        max_new_tokens=max_new_tokens)


def encode_text(tokenizer, text: str) -> list[int]:
    """Labels for the decoder: <|notimestamps|> text <|endoftext|> (the start token is prepended by the model)."""
    nots, eos = tokenizer.convert_tokens_to_ids(NO_TIMESTAMPS), tokenizer.convert_tokens_to_ids(EOT)
    return [nots, *tokenizer(" " + text.strip(), add_special_tokens=False).input_ids, eos]


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, records: list[Utterance], manifest: Path, tokenizer=None):
        self.records, self.manifest, self.tokenizer = records, manifest, tokenizer

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        item = {"audio": load_audio(resolve_audio(self.manifest, rec.audio)),
                "intensity": float(rec.intensity if rec.intensity is not None else np.nan)}
        if self.tokenizer is not None:
            item["labels"] = encode_text(self.tokenizer, rec.text)
        return item


class Collator:
    def __init__(self, feature_extractor):
        self.fe = feature_extractor

    def features(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        out = self.fe(audios, sampling_rate=16000, return_attention_mask=True, return_tensors="pt",
                      truncation=True)
        return {"input_features": out["input_features"], "feature_mask": out["attention_mask"]}

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.features([it["audio"] for it in items])
        batch["intensity_labels"] = torch.tensor([it["intensity"] for it in items], dtype=torch.float32)
        if "labels" in items[0]:
            width = max(len(it["labels"]) for it in items)
            labels = torch.full((len(items), width), -100, dtype=torch.long)
            for row, it in enumerate(items):
                labels[row, : len(it["labels"])] = torch.tensor(it["labels"])
            batch["labels"] = labels
        return batch
