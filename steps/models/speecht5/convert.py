"""Convert: a source clip and a speaker embedding in, a 16 kHz waveform in that speaker's voice out.

``VoiceConverter`` loads a trained model folder (SpeechT5 checkpoint + ``features.json``): the model generates
normalised mel frames, autoregressively until its stop token fires (bounded below and above relative to the
source's length) or, in ``aligned`` decoding, in one pass over the source's own mel frames; the frames are
de-normalised and the vocoder renders them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ENCODER_FRAME_RATE = 50.0  # SpeechT5's convolutional front end: one frame per 320 samples at 16 kHz


def mel_frames(vocoder, wav: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The vocoder's mel frames of a 16 kHz clip, normalised per band with the ``speakers`` stage's statistics:
    what the model reads (aligned decoding) and predicts. float32 (frames, bins)."""
    return ((vocoder.features(wav) - mean) / std).astype(np.float32)


def normalise_source(wav: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: what SpeechT5's feature extractor does to the source waveform."""
    wav = np.asarray(wav, dtype=np.float32)
    return ((wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)).astype(np.float32)


class VoiceConverter:
    def __init__(self, model_dir: Path, max_length_ratio: float = 3.0, min_length_ratio: float = 0.3):
        import torch

        from steps.models.speecht5.build import SpeechT5ForVoiceConversion, decoding
        from steps.models.speecht5.framewise import FramewiseConfig, FramewiseConverter
        from steps.models.speecht5.speakers import SpeakerEncoder
        from steps.models.speecht5.vocoder import Vocoder

        self.model_dir = Path(model_dir)
        self.features = json.loads((self.model_dir / "features.json").read_text())
        config = json.loads((self.model_dir / "config.json").read_text())
        family = FramewiseConverter if config.get("model_type") == FramewiseConfig.model_type else SpeechT5ForVoiceConversion
        self.model = family.from_pretrained(self.model_dir).eval()
        self.decoding = decoding(self.model.config)
        self.vocoder = Vocoder(self.features["vocoder"])
        self.encoder = SpeakerEncoder(self.features["speaker_encoder"])
        self.mean = np.asarray(self.features["mel_mean"], dtype=np.float32)
        self.std = np.asarray(self.features["mel_std"], dtype=np.float32)
        ratio = self.features.get("frame_rate", 86.13) / ENCODER_FRAME_RATE
        self.max_ratio, self.min_ratio = max_length_ratio * ratio, min_length_ratio * ratio
        self._torch = torch

    def embed(self, reference: np.ndarray) -> np.ndarray:
        """The conditioning embedding of a reference clip of the target speaker."""
        return self.encoder.embed(reference)

    def mel(self, source: np.ndarray, speaker: np.ndarray) -> np.ndarray:
        """De-normalised mel frames (frames, 80) of the converted speech."""
        torch = self._torch
        inputs = torch.from_numpy(normalise_source(np.asarray(source, dtype=np.float32)))[None]
        vector = torch.from_numpy(np.asarray(speaker, dtype=np.float32))[None]
        with torch.no_grad():
            if self.decoding == "aligned":
                source_frames = mel_frames(self.vocoder, source, self.mean, self.std)
                frames = self.model.convert_aligned(inputs, vector, torch.from_numpy(source_frames)[None])
            else:
                frames = self.model.generate_speech(inputs, vector, threshold=0.5, minlenratio=self.min_ratio,
                                                    maxlenratio=self.max_ratio)
        return frames.numpy() * self.std + self.mean

    def __call__(self, source: np.ndarray, reference: np.ndarray | None = None,
                 speaker: np.ndarray | None = None) -> np.ndarray:
        if speaker is None:
            if reference is None:
                raise ValueError("give a reference clip or a speaker embedding")
            speaker = self.embed(reference)
        return self.vocoder.synthesize(self.mel(source, speaker))
