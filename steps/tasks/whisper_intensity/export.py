"""Export stage of ``whisper_intensity``: two ONNX graphs, parity with PyTorch, onnxruntime speed, and the
CTranslate2 serving runtime (float32 and int8) next to PyTorch.

``encoder.onnx``: (input_features, feature_mask) -> (encoder_hidden_states, intensity in dB).
``decoder.onnx``: (decoder_input_ids, encoder_hidden_states) -> logits of the last position.
Greedy decoding runs the same loop (``steps.models.whisper.decoding.greedy_decode``) on both
runtimes, so parity means identical transcripts, not just close logits.
"""

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
from steps.models.whisper.ctranslate import compare_runtimes, comparison_metrics
from steps.models.whisper.onnx import OnnxWhisper, export_decoder, export_encoder
from steps.tasks.whisper_intensity.inference import Transcriber
from steps.tasks.whisper_intensity.model import EncoderWithHead
from steps.tasks.whisper_intensity.params import ExportParams

log = logging.getLogger(__name__)


def export_onnx(transcriber: Transcriber, out: Path, opset: int) -> tuple[Path, Path]:
    model = transcriber.model
    encoder_path, decoder_path = out / "encoder.onnx", out / "decoder.onnx"
    hidden = export_encoder(EncoderWithHead(model), model.config, encoder_path, opset,
                            output_names=("encoder_hidden_states", "intensity"))
    export_decoder(model, transcriber.whisper.spec.prefix, hidden, decoder_path, opset)
    return encoder_path, decoder_path


class OnnxTranscriber:
    """The ONNX graphs with the task's answer: (transcripts, intensity in dB)."""

    def __init__(self, encoder: Path, decoder: Path, reference: Transcriber):
        self.onnx = OnnxWhisper(encoder, decoder, reference.whisper)

    def __call__(self, audios: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
        texts, (intensity,) = self.onnx(audios)
        return texts, intensity


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    transcriber = Transcriber.from_dir(model_dir, params.max_new_tokens)
    encoder_path, decoder_path = export_onnx(transcriber, out, params.opset)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "speechops.json", "config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)

    records, manifest = load_split(data, params.split, params.max_items)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    batches = list(batched(audios, params.batch_size))
    onnx_model = OnnxTranscriber(encoder_path, decoder_path, transcriber)
    # Like for like: both runtimes run the same greedy loop without a key/value cache (the exported
    # decoder has none); PyTorch with its cache is timed too, as the number serving sees today.
    torch_texts, torch_int, torch_s = best_time(lambda b: transcriber(b, cached=False), batches, params.timing_repeats)
    onnx_texts, onnx_int, onnx_s = best_time(onnx_model, batches, params.timing_repeats)
    cached_texts, _, cached_s = best_time(transcriber, batches, params.timing_repeats)
    ct2 = compare_runtimes(lambda runtime: Transcriber.from_dir(model_dir, params.max_new_tokens, runtime=runtime),
                           batches, cached_texts, cached_s, params.timing_repeats, [r.id for r in records])

    # logits parity on the first decoding step of the first batch
    hidden_t, _ = transcriber.whisper.encode(batches[0])
    ids = np.tile(np.asarray(transcriber.whisper.spec.prefix, dtype=np.int64), (len(batches[0]), 1))
    logits_diff = float(np.max(np.abs(transcriber.whisper.step(ids, hidden_t) - onnx_model.onnx.step(ids, hidden_t.numpy()))))
    parity = parity_report([r.id for r in records], torch_texts, onnx_texts, logits_diff,
                           max_intensity_diff_db=float(np.max(np.abs(torch_int - onnx_int))))
    identical = parity["identical_transcripts"]
    speed = speed_report(torch_s, onnx_s, params.batch_size, params.timing_repeats, torch_kv_cache_s=round(cached_s, 3),
                         kv_cache_transcripts_identical=sum(a == b for a, b in zip(cached_texts, torch_texts)))
    (out / "parity.json").write_text(json.dumps({"parity": parity, "speed": speed, "ctranslate2": ct2}, indent=2))
    log.info("ONNX parity %s; speed %s", parity, speed)
    if parity["max_intensity_diff_db"] > 0.05:
        log.warning("ONNX intensity differs from PyTorch by %.3f dB", parity["max_intensity_diff_db"])
    return {
        "files": {p.name: p.stat().st_size for p in (encoder_path, decoder_path)},
        "parity": parity,
        "speed": speed,
        "ctranslate2": ct2,
        "metrics": {"max_intensity_diff_db": round(parity["max_intensity_diff_db"], 5),
                    "max_logit_diff": round(logits_diff, 5),
                    "identical": f"{identical}/{len(records)}",
                    "ort_speedup": speed["speedup"],
                    **comparison_metrics(ct2)},
    }
