"""Export stage of ``whisper_asr``: encoder and decoder ONNX graphs, parity with PyTorch, onnxruntime speed, and
the CTranslate2 serving runtime (float32 and int8) next to PyTorch.

``encoder.onnx``: (input_features, feature_mask) -> encoder_hidden_states; ``decoder.onnx``:
(decoder_input_ids, encoder_hidden_states) -> logits of the last position. Both runtimes run the same
greedy loop with the model's forced prompt (``steps.models.whisper.decoding``), so parity means
identical transcripts; PyTorch with its key/value cache (what serving runs) is timed too.
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
from steps.models.whisper.onnx import EncoderStep, OnnxWhisper, export_decoder, export_encoder
from steps.tasks.whisper_asr.params import ExportParams
from steps.tasks.whisper_asr.transcriber import load_transcriber

log = logging.getLogger(__name__)
CARRIED = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "speechops.json", "config.json",
           "generation_config.json")


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    transcriber, card = load_transcriber(model_dir, params.max_new_tokens)
    model, prefix = transcriber.model, transcriber.spec.prefix
    encoder_path, decoder_path = out / "encoder.onnx", out / "decoder.onnx"
    hidden = export_encoder(EncoderStep(model), model.config, encoder_path, params.opset)
    export_decoder(model, prefix, hidden, decoder_path, params.opset)
    for name in CARRIED:
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)

    records, manifest = load_split(data, params.split, params.max_items)
    batches = list(batched([load_audio(resolve_audio(manifest, r.audio)) for r in records], params.batch_size))
    onnx_model = OnnxWhisper(encoder_path, decoder_path, transcriber)

    def runtime(transcribe):
        return lambda batch: (transcribe(list(batch)), np.zeros(len(batch)))

    torch_texts, _, torch_s = best_time(runtime(lambda b: transcriber(b, cached=False)), batches, params.timing_repeats)
    onnx_texts, _, onnx_s = best_time(runtime(lambda b: onnx_model(b)[0]), batches, params.timing_repeats)
    cached_texts, _, cached_s = best_time(runtime(transcriber), batches, params.timing_repeats)
    ct2 = compare_runtimes(lambda rt: runtime(load_transcriber(model_dir, params.max_new_tokens, runtime=rt)[0]),
                           batches, cached_texts, cached_s, params.timing_repeats, [r.id for r in records])

    states, _ = transcriber.encode(list(batches[0]))
    ids = np.tile(np.asarray(prefix, dtype=np.int64), (len(batches[0]), 1))
    logits_diff = float(np.max(np.abs(transcriber.step(ids, states) - onnx_model.step(ids, states.numpy()))))
    parity = parity_report([r.id for r in records], torch_texts, onnx_texts, logits_diff)
    speed = speed_report(torch_s, onnx_s, params.batch_size, params.timing_repeats, torch_kv_cache_s=round(cached_s, 3),
                         kv_cache_transcripts_identical=sum(a == b for a, b in zip(cached_texts, torch_texts)))
    (out / "parity.json").write_text(json.dumps({"parity": parity, "speed": speed, "ctranslate2": ct2}, indent=2,
                                                 ensure_ascii=False))
    log.info("ONNX parity %s; speed %s", parity, speed)
    return {"files": {p.name: p.stat().st_size for p in (encoder_path, decoder_path)}, "language": card.get("language"),
            "parity": parity, "speed": speed, "ctranslate2": ct2,
            "metrics": {"max_logit_diff": round(logits_diff, 6),
                        "identical": f"{parity['identical_transcripts']}/{len(records)}",
                        "ort_speedup": speed["speedup"],
                        **comparison_metrics(ct2)}}
