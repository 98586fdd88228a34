"""ONNX export of the parts of a SpeechT5 voice converter that export cleanly, each with a parity check.

* ``vocoder.onnx``: mel frames (1, 80, frames) -> waveform (the HiFi-GAN generator);
* ``speaker_encoder.onnx``: resemblyzer's 40-band mel frames (batch, frames, 40) -> 256-d embedding;
* ``speecht5_encoder.onnx``: normalised source waveform (1, samples) + mask -> encoder states;
* ``converter.onnx``: the frame-wise converter whole, source mel frames (1, frames, 80) + speaker embedding
  (1, dim) -> converted mel frames: with the vocoder and the speaker encoder, conversion runs without PyTorch.

What does not export: the autoregressive decoder loop. ``generate_speech`` is Python control flow (a stop
token checked after every step, a growing output), and SpeechT5's decoder pre-net applies dropout at
inference on purpose (``_consistent_dropout``, as Tacotron 2 does), which an ONNX graph would either freeze
or drop: served conversion therefore stays on PyTorch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from steps.models.onnx import export_module, ort_session


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.speecht5.encoder

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor):
        return self.encoder(input_values=input_values, attention_mask=attention_mask).last_hidden_state


def export_speecht5_encoder(model, path: Path, sample: np.ndarray, opset: int) -> Path:
    inputs = torch.from_numpy(sample)[None]
    return export_module(_Encoder(model), (inputs, torch.ones_like(inputs, dtype=torch.long)), path,
                         ["input_values", "attention_mask"], ["encoder_hidden_states"],
                         {"input_values": {1: "samples"}, "attention_mask": {1: "samples"},
                          "encoder_hidden_states": {1: "frames"}}, opset)


class _Framewise(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, source_frames: torch.Tensor, speaker_embeddings: torch.Tensor):
        return self.model(source_frames=source_frames, speaker_embeddings=speaker_embeddings).spectrogram


def export_framewise(model, path: Path, frames: np.ndarray, speaker: np.ndarray, opset: int) -> Path:
    return export_module(_Framewise(model), (torch.from_numpy(frames)[None], torch.from_numpy(speaker)[None]), path,
                         ["source_frames", "speaker_embeddings"], ["converted_frames"],
                         {"source_frames": {1: "frames"}, "converted_frames": {1: "frames"}}, opset)


def export_vocoder(generator: torch.nn.Module, path: Path, mel: np.ndarray, opset: int) -> Path:
    return export_module(generator, (torch.from_numpy(mel.T.copy())[None],), path, ["mel"], ["waveform"],
                         {"mel": {2: "frames"}, "waveform": {2: "samples"}}, opset)


def export_speaker_encoder(module: torch.nn.Module, path: Path, frames: np.ndarray, opset: int) -> Path:
    return export_module(module, (torch.from_numpy(frames)[None],), path, ["mel_frames"], ["embedding"],
                         {"mel_frames": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}}, opset)


def compare(name: str, path: Path, torch_fn: Callable, feeds: list[dict[str, np.ndarray]], repeats: int) -> dict:
    """Largest absolute difference between PyTorch and onnxruntime over ``feeds``, and both best times."""
    session = ort_session(path)
    diffs, torch_best, onnx_best = [], float("inf"), float("inf")
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        with torch.no_grad():
            expected = [np.asarray(torch_fn(**{k: torch.from_numpy(v) for k, v in f.items()})) for f in feeds]
        torch_best = min(torch_best, time.perf_counter() - started)
        started = time.perf_counter()
        got = [session.run(None, f)[0] for f in feeds]
        onnx_best = min(onnx_best, time.perf_counter() - started)
        diffs = [float(np.max(np.abs(a - b))) for a, b in zip(expected, got)]
    scale = max(float(np.max(np.abs(e))) for e in expected)
    return {"graph": path.name, "items": len(feeds), "max_abs_diff": max(diffs), "output_scale": scale,
            "torch_s": round(torch_best, 4), "onnxruntime_s": round(onnx_best, 4),
            "speedup": round(torch_best / onnx_best, 2) if onnx_best > 0 else None,
            "size_mb": round(path.stat().st_size / 1e6, 2), "what": name}
