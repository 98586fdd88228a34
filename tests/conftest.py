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


def zero_shot_whisper_intensity(folder: Path) -> Path:
    """Whisper tiny.en as shipped (offline), packaged as a ``whisper_intensity`` model folder with a 6 s window
    (its intensity head untrained): a real model for serving tests without a training run."""
    from steps.models.whisper.tokenizer import load_processors, package_tokenizer
    from steps.tasks.base import write_model_card
    from steps.tasks.whisper_intensity.params import BUNDLED_TINY_EN
    from steps.tasks.whisper_intensity.train import build_model

    folder.mkdir(parents=True, exist_ok=True)
    package_tokenizer(BUNDLED_TINY_EN, [" hello"], folder, window_seconds=6)
    tokenizer, extractor = load_processors(folder)
    model = build_model(BUNDLED_TINY_EN, tokenizer, extractor)
    model.config.intensity_mean, model.config.intensity_std = -30.0, 8.0
    model.save_pretrained(folder)
    write_model_card(folder, "whisper_intensity", base_model=BUNDLED_TINY_EN, intensity_unit="dBFS")
    return folder


def free_port() -> int:
    """A loopback port nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_ping(url: str, timeout: float) -> None:
    """Until ``url/ping`` answers 200 or ``timeout`` seconds pass (the caller's next request then fails clearly)."""
    import time

    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
