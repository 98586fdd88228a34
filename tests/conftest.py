"""Shared fixtures: synthesised audio (no network, no espeak needed) and quiet progress bars."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("SPEECHOPS_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 220.0, dbfs: float = -20.0, channels: int = 1,
         seed: int = 0) -> np.ndarray:
    """A speech-like test signal: an amplitude-modulated harmonic tone plus a little noise, at an RMS level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 5)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.01 * rng.standard_normal(t.shape)
    x = x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)
    return np.stack([x] * channels, axis=1).astype(np.float32) if channels > 1 else x.astype(np.float32)


@pytest.fixture
def make_corpus(tmp_path):
    """Write a small folder corpus with a manifest; returns (manifest path, list of records)."""

    def _make(n: int = 12, folder: str = "corpus", seconds: float = 1.2) -> Path:
        root = tmp_path / folder
        (root / "audio").mkdir(parents=True)
        rows = []
        for i in range(n):
            name = f"audio/u{i:03d}.wav"
            sf.write(root / name, tone(seconds, dbfs=-40 + 2.5 * i, freq=150 + 10 * i, seed=i), 16000)
            split = "test" if i % 6 == 0 else ("validation" if i % 6 == 1 else "train")
            rows.append({"id": f"u{i:03d}", "audio": name, "text": f"word number {i}", "speaker": f"s{i % 3}",
                         "split": split})
        manifest = root / "manifest.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return manifest

    return _make
