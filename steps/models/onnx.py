"""ONNX export and onnxruntime sessions, the same way for every model family."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def export_module(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]], opset: int) -> Path:
    """The TorchScript exporter on ``module`` in eval mode, without gradients or exporter warnings."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, opset_version=opset)
    module.eval()  # the exporter restores the wrapper's training flag on every submodule: dropout would come back
    return path


def ort_session(path: Path):
    """An onnxruntime CPU session that logs errors only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
