"""Whisper as two ONNX graphs, and greedy transcription with onnxruntime.

``encoder.onnx``: (input_features, feature_mask) -> (encoder_hidden_states, any extra outputs of the
encoder module exported, e.g. a task's head). ``decoder.onnx``: (decoder_input_ids,
encoder_hidden_states) -> logits of the last position (no key/value cache). ``OnnxWhisper`` runs the
same greedy loop and prompt as ``WhisperTranscriber``, so parity means identical transcripts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from steps.models.onnx import export_module, ort_session
from steps.models.whisper.decoding import greedy_decode
from steps.models.whisper.transcriber import DecoderStep, WhisperTranscriber


class EncoderStep(nn.Module):
    """(input_features, feature_mask) -> encoder hidden states (the mask is for encoders with pooled heads)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, feature_mask: torch.Tensor):
        return self.model.model.encoder(input_features, return_dict=True).last_hidden_state


def export_encoder(encoder: nn.Module, config, path: Path, opset: int,
                   output_names: tuple[str, ...] = ("encoder_hidden_states",)) -> torch.Tensor:
    """Export ``encoder`` (``EncoderStep`` or a module with the same inputs and more outputs); returns
    the hidden states of its example batch, the decoder's example input."""
    frames = config.max_source_positions * 2
    features = torch.zeros(2, config.num_mel_bins, frames)
    mask = torch.ones(2, frames, dtype=torch.long)
    with torch.no_grad():
        out = encoder.eval()(features, mask)
    axes = {name: {0: "batch"} for name in ("input_features", "feature_mask", *output_names)}
    export_module(encoder, (features, mask), path, ["input_features", "feature_mask"], list(output_names), axes, opset)
    return out[0] if isinstance(out, tuple) else out


def export_decoder(model, prefix: tuple[int, ...], hidden: torch.Tensor, path: Path, opset: int) -> Path:
    ids = torch.tensor([list(prefix)] * hidden.shape[0], dtype=torch.long)
    axes = {"decoder_input_ids": {0: "batch", 1: "tokens"}, "encoder_hidden_states": {0: "batch"},
            "logits": {0: "batch"}}
    export_module(DecoderStep(model), (ids, hidden), path, ["decoder_input_ids", "encoder_hidden_states"],
                  ["logits"], axes, opset)
    return path


class OnnxWhisper:
    """Greedy transcription with onnxruntime; ``reference`` supplies features, tokenizer and decoding spec."""

    def __init__(self, encoder: Path, decoder: Path, reference: WhisperTranscriber):
        self.encoder = ort_session(encoder)
        self.decoder = ort_session(decoder)
        self.ref = reference
        self.encoder_inputs = {i.name for i in self.encoder.get_inputs()}

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """The encoder graph's outputs: hidden states first, then any extra outputs."""
        batch = self.ref.features(audios)
        feeds = {"input_features": batch["input_features"].numpy(),
                 "feature_mask": batch["feature_mask"].numpy().astype(np.int64)}
        return self.encoder.run(None, {k: v for k, v in feeds.items() if k in self.encoder_inputs})

    def step(self, ids: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        return self.decoder.run(None, {"decoder_input_ids": ids, "encoder_hidden_states": hidden})[0]

    def __call__(self, audios: list[np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
        """Transcripts and the encoder graph's extra outputs."""
        hidden, *extra = self.encode(audios)
        return self.ref.texts(greedy_decode(self.step, hidden, self.ref.spec)), extra
