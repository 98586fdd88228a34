"""Export stage of ``voice_conversion``: ONNX graphs for the vocoder, the speaker encoder and the conversion
model (the frame-wise converter whole; of a SpeechT5, its encoder), each checked against PyTorch on test clips
(largest difference, onnxruntime speed); what does not export (SpeechT5's decoder, see
``steps.models.speecht5.onnx``) the report says."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from steps.common.stage import StageError
from steps.models.speecht5.convert import VoiceConverter, mel_frames, normalise_source
from steps.models.speecht5.framewise import FramewiseConverter
from steps.models.speecht5.onnx import (compare, export_framewise, export_speaker_encoder, export_speecht5_encoder,
                                        export_vocoder)
from steps.models.speecht5.speakers import RESEMBLYZER
from steps.tasks.voice_conversion.data import AudioStore
from steps.tasks.voice_conversion.params import ExportParams
from steps.tasks.voice_conversion.tokenizer import evaluation_pairs

log = logging.getLogger(__name__)
NOT_EXPORTED = ("the autoregressive SpeechT5 decoder: generate_speech is a Python loop stopped by a predicted "
                "stop token, and the decoder pre-net keeps dropout on at inference by design; serving runs it "
                "on PyTorch")
TOLERANCE = {"vocoder": 1e-3, "speaker_encoder": 1e-4, "speecht5_encoder": 1e-3, "converter": 1e-4}


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    converter = VoiceConverter(model_dir)
    pairs = evaluation_pairs(data, converter.features)["test"][: params.parity_items]
    if not pairs:
        raise StageError("no test pairs to check the ONNX graphs on")
    audio = AudioStore(data)
    mels = [converter.vocoder.features(audio(p.tgt)).astype(np.float32) for p in pairs]
    reports = []
    not_exported = NOT_EXPORTED
    if isinstance(converter.model, FramewiseConverter):
        model = converter.model
        frames = [mel_frames(converter.vocoder, audio(p.src), converter.mean, converter.std) for p in pairs]
        speakers = [np.asarray(converter.embed(audio(p.ref)), dtype=np.float32) for p in pairs]
        path = export_framewise(model, out / "converter.onnx", frames[0], speakers[0], params.opset)
        reports.append(compare("converter", path,
                               lambda source_frames, speaker_embeddings: model(
                                   source_frames=source_frames, speaker_embeddings=speaker_embeddings).spectrogram,
                               [{"source_frames": f[None], "speaker_embeddings": v[None]}
                                for f, v in zip(frames, speakers)], params.timing_repeats))
        not_exported = None
    else:
        sources = [normalise_source(audio(p.src)) for p in pairs]
        path = export_speecht5_encoder(converter.model, out / "speecht5_encoder.onnx", sources[0], params.opset)
        encoder = converter.model.speecht5.encoder
        reports.append(compare("speecht5_encoder", path,
                               lambda input_values, attention_mask: encoder(
                                   input_values=input_values, attention_mask=attention_mask).last_hidden_state,
                               [{"input_values": s[None], "attention_mask": np.ones((1, len(s)), dtype=np.int64)}
                                for s in sources], params.timing_repeats))

    generator = converter.vocoder.generator()
    path = export_vocoder(generator, out / "vocoder.onnx", mels[0], params.opset)
    reports.append(compare("vocoder", path, lambda mel: generator(mel), [{"mel": m.T.copy()[None]} for m in mels],
                           params.timing_repeats))

    if converter.features["speaker_encoder"] == RESEMBLYZER:
        frames = [converter.encoder.mel_frames(audio(p.ref)).astype(np.float32) for p in pairs]
        module = converter.encoder.module()
        path = export_speaker_encoder(module, out / "speaker_encoder.onnx", frames[0], params.opset)
        reports.append(compare("speaker_encoder", path, lambda mel_frames: module(mel_frames),
                               [{"mel_frames": f[None]} for f in frames], params.timing_repeats))
    for name in ("features.json", "speechops.json", "config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)
    failed = [r["what"] for r in reports if r["max_abs_diff"] > TOLERANCE[r["what"]] * max(1.0, r["output_scale"])]
    summary = {"graphs": reports, "not_exported": not_exported, "parity_ok": not failed, "failed": failed}
    (out / "parity.json").write_text(json.dumps(summary, indent=2))
    log.info("ONNX graphs: %s", [(r["what"], r["max_abs_diff"], r["speedup"]) for r in reports])
    if failed:
        log.warning("ONNX differs from PyTorch beyond tolerance: %s", failed)
    return {**summary, "metrics": {**{f"{r['what']}_diff": round(r["max_abs_diff"], 6) for r in reports},
                                   **{f"{r['what']}_speedup": r["speedup"] for r in reports},
                                   "parity_ok": not failed}}
