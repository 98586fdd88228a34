"""Export stage of ``ctc_asr``: ONNX (input_values[, attention_mask] -> logits), parity, speed."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import batched, best_time
from steps.common.manifest import load_split, resolve_audio
from steps.tasks.ctc_asr.inference import CTCTranscriber, greedy_texts
from steps.tasks.ctc_asr.params import ExportParams

log = logging.getLogger(__name__)


class _WithMask(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values, attention_mask):
        return self.model(input_values=input_values, attention_mask=attention_mask).logits


class _NoMask(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values):
        return self.model(input_values=input_values).logits


def export_onnx(transcriber: CTCTranscriber, path: Path, opset: int) -> list[str]:
    model = transcriber.model.eval()
    with_mask = transcriber.collator.use_attention_mask
    values = torch.zeros(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    names = ["input_values", "attention_mask"] if with_mask else ["input_values"]
    wrapper = (_WithMask(model) if with_mask else _NoMask(model)).eval()
    axes = {"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch", 1: "frames"}}
    if with_mask:
        axes["attention_mask"] = {0: "batch", 1: "samples"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (values, mask) if with_mask else (values,), str(path), dynamo=False,
                          input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=opset)
    model.eval()  # the exporter restores the wrapper's training flag on the model
    return names


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    import onnxruntime as ort

    transcriber = CTCTranscriber.from_dir(model_dir)
    path = out / "model.onnx"
    names = export_onnx(transcriber, path, params.opset)
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json",
                 "speechops.json", "config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def onnx_run(batch):
        feats = transcriber.collator.features(list(batch))
        frames = transcriber.output_frames(feats["sample_mask"])
        inputs = {"input_values": feats["input_values"].numpy()}
        if "attention_mask" in names:
            inputs["attention_mask"] = feats["attention_mask"].numpy().astype(np.int64)
        logits = session.run(None, inputs)[0]
        return greedy_texts(logits, frames, transcriber.tokenizer), logits.reshape(len(batch), -1)[:, :64]

    def torch_run(batch):
        logits, frames = transcriber.logits(list(batch))
        return greedy_texts(logits, frames, transcriber.tokenizer), logits.reshape(len(batch), -1)[:, :64]

    records, manifest = load_split(data, params.split, params.max_items)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    batches = list(batched(audios, params.batch_size))
    torch_texts, torch_logits, torch_s = best_time(torch_run, batches, params.timing_repeats)
    onnx_texts, onnx_logits, onnx_s = best_time(onnx_run, batches, params.timing_repeats)
    full_torch, _ = transcriber.logits(list(batches[0]))
    first = {"input_values": transcriber.collator.features(list(batches[0]))["input_values"].numpy()}
    if "attention_mask" in names:
        first["attention_mask"] = transcriber.collator.features(list(batches[0]))["attention_mask"].numpy().astype(np.int64)
    max_diff = float(np.max(np.abs(full_torch - session.run(None, first)[0])))
    identical = sum(a == b for a, b in zip(torch_texts, onnx_texts))
    parity = {"utterances": len(records), "max_logit_diff": max_diff, "identical_transcripts": identical,
              "all_transcripts_identical": identical == len(records),
              "mismatches": [{"id": r.id, "torch": a, "onnx": b}
                             for r, a, b in zip(records, torch_texts, onnx_texts) if a != b][:10]}
    speed = {"torch_s": round(torch_s, 3), "onnxruntime_s": round(onnx_s, 3),
             "speedup": round(torch_s / onnx_s, 2) if onnx_s > 0 else None, "threads": torch.get_num_threads(),
             "batch_size": params.batch_size, "best_of": params.timing_repeats}
    (out / "parity.json").write_text(json.dumps({"parity": parity, "speed": speed}, indent=2))
    log.info("ONNX parity %s; speed %s", parity, speed)
    return {"files": {path.name: path.stat().st_size}, "parity": parity, "speed": speed,
            "metrics": {"max_logit_diff": round(max_diff, 6), "identical": f"{identical}/{len(records)}",
                        "ort_speedup": speed["speedup"]}}
