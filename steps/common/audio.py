"""The one audio loader: decode anything soundfile reads, check it, make it 16 kHz mono float32.

Used by the prepare stage, by every task's data loading and by serving, so a clip is decoded the
same way in training and in production.
"""

from __future__ import annotations

import io
import re
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

TARGET_SAMPLE_RATE = 16000


class AudioError(ValueError):
    """Audio that cannot be used, with a reason fit for a rejects manifest or an HTTP 4xx."""


def decode(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Decode a file path or encoded bytes to float32 of shape (frames, channels) and its rate."""
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        data, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = re.sub(r"Error opening <_io\.BytesIO object at 0x[0-9a-f]+>: ", "", str(exc))
        raise AudioError(f"cannot decode audio: {reason}") from exc
    except OSError as exc:  # missing file, permissions
        raise AudioError(f"cannot open audio: {exc}") from exc
    return data, int(rate)


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(audio: np.ndarray, rate: int, target: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return audio
    from scipy.signal import resample_poly  # here, not at the top: building a pipeline must not import scipy

    g = gcd(int(rate), int(target))
    return resample_poly(audio, target // g, int(rate) // g).astype(np.float32)


def check(audio: np.ndarray, min_samples: int = 1) -> None:
    if audio.size < min_samples:
        raise AudioError("empty audio (no samples)")
    if not np.all(np.isfinite(audio)):
        raise AudioError("audio contains NaN or infinite samples")


def load_audio(source: str | Path | bytes, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Decode, validate, downmix and resample: float32 mono at ``target_rate``."""
    data, rate = decode(source)
    check(data)
    mono = to_mono(data)
    return np.ascontiguousarray(resample(mono, rate, target_rate), dtype=np.float32)


def to_wav_bytes(audio: np.ndarray, rate: int = TARGET_SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
