"""Export stage of ``ctc_asr``: ONNX (input_values[, attention_mask] -> logits), parity, speed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from steps.common.audio import load_audio
from steps.common.batching import batched, best_time
from steps.common.manifest import load_split, resolve_audio
from steps.models.onnx import parity_report, speed_report
from steps.models.wav2vec2.decoding import greedy_texts
from steps.models.wav2vec2.onnx import OnnxCTC, export_ctc
from steps.models.wav2vec2.transcriber import CTCTranscriber
from steps.tasks.ctc_asr.params import ExportParams

log = logging.getLogger(__name__)


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    transcriber = CTCTranscriber.from_dir(model_dir)
    path = out / "model.onnx"
    export_ctc(transcriber, path, params.opset)
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json",
                 "speechops.json", "config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)
    onnx_model = OnnxCTC(path, transcriber)

    def decoded(logits_of):
        """batch -> (greedy transcripts, the first logits of each clip) with one runtime's logits."""

        def run(batch):
            logits, frames = logits_of(list(batch))
            return greedy_texts(logits, frames, transcriber.tokenizer), logits.reshape(len(batch), -1)[:, :64]

        return run

    records, manifest = load_split(data, params.split, params.max_items)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    batches = list(batched(audios, params.batch_size))
    torch_texts, torch_logits, torch_s = best_time(decoded(transcriber.logits), batches, params.timing_repeats)
    onnx_texts, onnx_logits, onnx_s = best_time(decoded(onnx_model.logits), batches, params.timing_repeats)
    max_diff = float(np.max(np.abs(transcriber.logits(list(batches[0]))[0] - onnx_model.logits(list(batches[0]))[0])))
    parity = parity_report([r.id for r in records], torch_texts, onnx_texts, max_diff)
    identical = parity["identical_transcripts"]
    speed = speed_report(torch_s, onnx_s, params.batch_size, params.timing_repeats)
    (out / "parity.json").write_text(json.dumps({"parity": parity, "speed": speed}, indent=2))
    log.info("ONNX parity %s; speed %s", parity, speed)
    return {"files": {path.name: path.stat().st_size}, "parity": parity, "speed": speed,
            "metrics": {"max_logit_diff": round(max_diff, 6), "identical": f"{identical}/{len(records)}",
                        "ort_speedup": speed["speedup"]}}
