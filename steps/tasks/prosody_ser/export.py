"""Export stage of ``prosody_ser``: two ONNX graphs, checked against PyTorch on test clips.

``encoder.onnx``: (input_features, feature_mask) -> (hidden, frame_mask, emotion probabilities, CTC
log-probabilities). ``emphasis.onnx``: (hidden, frame_mask, word_pieces, word_position, word_mask) ->
emphasis logits. Parity: the largest differences of the probabilities, the same emotions and the same greedy
transcripts; speed: onnxruntime against PyTorch on the same batches.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from steps.common.audio import load_audio
from steps.common.batching import batched
from steps.common.manifest import load_split, resolve_audio
from steps.models.onnx import export_module, ort_session, parity_report, speed_report
from steps.tasks.prosody_ser.data import pad_words
from steps.tasks.prosody_ser.inference import Predictor, greedy_ids
from steps.tasks.prosody_ser.params import ExportParams
from steps.tasks.prosody_ser.tokenizer import words_of

log = logging.getLogger(__name__)
ENCODER_OUTPUTS = ("hidden", "frame_mask", "emotion_probs", "ctc_log_probs")
EMPHASIS_INPUTS = ("hidden", "frame_mask", "word_pieces", "word_position", "word_mask")


class EncoderWithHeads(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_features, feature_mask):
        hidden, mask = self.model.encode(input_features, feature_mask)
        emotion = self.model.emotion_head(hidden, mask).softmax(-1)
        ctc = self.model.ctc_head(hidden).log_softmax(-1)
        return hidden, mask.to(torch.int64), emotion, ctc


class EmphasisStep(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.head = model.emphasis_head

    def forward(self, hidden, frame_mask, word_pieces, word_position, word_mask):
        return self.head(hidden, frame_mask.bool(), word_pieces, word_position, word_mask.bool())


def input_axes(predictor: Predictor) -> dict[str, dict[int, str]]:
    """Whisper's input is padded to its window; a waveform encoder's grows with the batch's longest clip."""
    if predictor.features.whisper:
        return {"input_features": {0: "batch"}, "feature_mask": {0: "batch"}}
    return {"input_features": {0: "batch", 1: "samples"}, "feature_mask": {0: "batch", 1: "samples"}}


def export(params: ExportParams, data: Path, model_dir: Path, out: Path) -> dict:
    predictor = Predictor.from_dir(model_dir)
    model = predictor.model
    records, manifest = load_split(data, params.split, params.max_items)
    audios = [load_audio(resolve_audio(manifest, r.audio)) for r in records]
    words = [words_of(r, predictor.pieces.lowercase) for r in records]
    example = predictor.features(audios[:2])
    encoder_path, emphasis_path = out / "encoder.onnx", out / "emphasis.onnx"
    export_module(EncoderWithHeads(model), (example["input_features"], example["feature_mask"]), encoder_path,
                  ["input_features", "feature_mask"], list(ENCODER_OUTPUTS),
                  input_axes(predictor) | {name: {0: "batch", 1: "frames"} if name != "emotion_probs" else {0: "batch"}
                                           for name in ENCODER_OUTPUTS}, params.opset)
    with torch.no_grad():
        hidden, mask = model.encode(example["input_features"], example["feature_mask"])
    word_inputs = pad_words([predictor.words(w) for w in words[:2]])
    export_module(EmphasisStep(model), (hidden, mask.to(torch.int64), word_inputs["word_pieces"],
                                        word_inputs["word_position"], word_inputs["word_mask"].to(torch.int64)),
                  emphasis_path, list(EMPHASIS_INPUTS), ["emphasis_logits"],
                  {"hidden": {0: "batch", 1: "frames"}, "frame_mask": {0: "batch", 1: "frames"},
                   "word_pieces": {0: "batch", 1: "words", 2: "pieces"}, "word_position": {0: "batch", 1: "words"}, "word_mask": {0: "batch", 1: "words"},
                   "emphasis_logits": {0: "batch", 1: "words"}}, params.opset)
    for name in ("spm.model", "ctc_text.json", "preprocessor_config.json", "speechops.json", "config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)

    encoder, emphasis = ort_session(encoder_path), ort_session(emphasis_path)
    torch_s = onnx_s = 0.0
    diffs = {"emotion": 0.0, "ctc": 0.0, "emphasis": 0.0}
    torch_texts, onnx_texts, same_emotion = [], [], 0
    for batch, batch_words in zip(batched(audios, params.batch_size), batched(words, params.batch_size)):
        features = predictor.features(list(batch))
        inputs = pad_words([predictor.words(w) for w in batch_words])
        for _ in range(params.timing_repeats):  # the same features and word inputs for both runtimes
            started = time.perf_counter()
            encoded = predictor.encode_features(features)
            probs = predictor.emphasis(encoded, list(batch_words))
            torch_s += time.perf_counter() - started
            started = time.perf_counter()
            hidden_o, mask_o, emotion_o, ctc_o = encoder.run(None, {
                "input_features": features["input_features"].numpy(), "feature_mask": features["feature_mask"].numpy()})
            logits_o = emphasis.run(None, {"hidden": hidden_o, "frame_mask": mask_o,
                                           "word_pieces": inputs["word_pieces"].numpy(),
                                           "word_position": inputs["word_position"].numpy(),
                                           "word_mask": inputs["word_mask"].to(torch.int64).numpy()})[0]
            onnx_s += time.perf_counter() - started
        frames = encoded["frames"].numpy()
        diffs["emotion"] = max(diffs["emotion"], float(np.abs(encoded["emotion"].numpy() - emotion_o).max()))
        diffs["ctc"] = max(diffs["ctc"], float(np.abs(encoded["ctc"].numpy() - ctc_o).max()))
        onnx_probs = 1 / (1 + np.exp(-logits_o))
        for b, p in enumerate(probs):
            if p:
                diffs["emphasis"] = max(diffs["emphasis"], float(np.abs(np.asarray(p) - onnx_probs[b, :len(p)]).max()))
        same_emotion += int((encoded["emotion"].numpy().argmax(-1) == emotion_o.argmax(-1)).sum())
        torch_texts += predictor.transcripts(encoded)
        onnx_texts += [predictor.pieces.decode(greedy_ids(lp, int(n))) for lp, n in zip(ctc_o, frames)]
    parity = parity_report([r.id for r in records], torch_texts, onnx_texts, diffs["ctc"],
                           max_emotion_prob_diff=diffs["emotion"], max_emphasis_prob_diff=diffs["emphasis"],
                           identical_emotions=same_emotion)
    speed = speed_report(torch_s / params.timing_repeats, onnx_s / params.timing_repeats, params.batch_size,
                         params.timing_repeats)
    (out / "parity.json").write_text(json.dumps({"parity": parity, "speed": speed}, indent=2))
    log.info("ONNX parity %s; speed %s", {k: v for k, v in parity.items() if k != "mismatches"}, speed)
    return {"files": {p.name: p.stat().st_size for p in (encoder_path, emphasis_path)}, "parity": parity,
            "speed": speed,
            "metrics": {"max_emotion_prob_diff": round(diffs["emotion"], 6),
                        "max_emphasis_prob_diff": round(diffs["emphasis"], 6),
                        "identical_emotions": f"{same_emotion}/{len(records)}",
                        "identical": f"{parity['identical_transcripts']}/{len(records)}", "ort_speedup": speed["speedup"]}}
