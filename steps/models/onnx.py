"""ONNX export and onnxruntime sessions, the same way for every model family."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

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


def parity_report(ids: list[str], torch_texts: list[str], onnx_texts: list[str], max_logit_diff: float,
                  **extra: Any) -> dict[str, Any]:
    """How onnxruntime's transcripts compare with PyTorch's on the same utterances (the first mismatches listed);
    ``extra``: the task's own differences (e.g. a head's output)."""
    identical = sum(a == b for a, b in zip(torch_texts, onnx_texts))
    return {"utterances": len(ids), **extra, "max_logit_diff": max_logit_diff, "identical_transcripts": identical,
            "all_transcripts_identical": identical == len(ids),
            "mismatches": [{"id": i, "torch": a, "onnx": b}
                           for i, a, b in zip(ids, torch_texts, onnx_texts) if a != b][:10]}


def speed_report(torch_s: float, onnx_s: float, batch_size: int, repeats: int, **extra: Any) -> dict[str, Any]:
    """PyTorch's and onnxruntime's best wall times over the same batches; ``extra``: other timings."""
    return {"torch_s": round(torch_s, 3), "onnxruntime_s": round(onnx_s, 3),
            "speedup": round(torch_s / onnx_s, 2) if onnx_s > 0 else None, **extra,
            "threads": torch.get_num_threads(), "batch_size": batch_size, "best_of": repeats}
