"""wav2vec2-CTC as one ONNX graph: (input_values[, attention_mask]) -> logits, and onnxruntime logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.models.onnx import export_module, ort_session
from steps.models.wav2vec2.transcriber import CTCTranscriber


class CTCLogits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values, attention_mask=None):
        return self.model(input_values=input_values, attention_mask=attention_mask).logits


def export_ctc(transcriber: CTCTranscriber, path: Path, opset: int) -> list[str]:
    """Export the transcriber's model (with an attention-mask input when the model takes one); the input names."""
    with_mask = transcriber.features.use_attention_mask
    values = torch.zeros(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    names = ["input_values", "attention_mask"] if with_mask else ["input_values"]
    axes = {name: {0: "batch", 1: "samples"} for name in names} | {"logits": {0: "batch", 1: "frames"}}
    export_module(CTCLogits(transcriber.model), (values, mask) if with_mask else (values,), path, names, ["logits"],
                  axes, opset)
    return names


class OnnxCTC:
    """Logits with onnxruntime; ``reference`` supplies the features and the valid-frame counts."""

    def __init__(self, path: Path, reference: CTCTranscriber):
        self.session = ort_session(path)
        self.ref = reference
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, audios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.ref.features(audios)
        frames = self.ref.output_frames(batch.pop("sample_mask"))
        return self.session.run(None, {name: batch[name].numpy().astype(
            np.int64 if name == "attention_mask" else np.float32) for name in self.inputs})[0], frames
