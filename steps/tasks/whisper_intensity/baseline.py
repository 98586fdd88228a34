"""A baseline intensity regressor on simple acoustic features (ridge regression), as in seed 000.

Features per clip: percentiles, mean and spread of 25 ms frame energies in dB, the fraction of
voiced frames, spectral centroid and roll-off, zero-crossing rate and the peak level. It does not
see the label formula itself (the clip-level mean energy), only frame statistics.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FRAME, HOP, RATE = 400, 160, 16000


def acoustic_features(audio: np.ndarray) -> np.ndarray:
    if audio.shape[0] < FRAME:
        audio = np.pad(audio, (0, FRAME - audio.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[::HOP]
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    voiced = energy_db > energy_db.max() - 30
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1)) + 1e-10
    freqs = np.fft.rfftfreq(FRAME, 1 / RATE)
    centroid = (spectrum * freqs).sum(1) / spectrum.sum(1)
    cumulative = np.cumsum(spectrum, axis=1)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[:, -1:], axis=1)]
    zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=1)), axis=1)
    peak_db = 20 * np.log10(np.max(np.abs(audio)) + 1e-10)
    return np.array([
        *np.percentile(energy_db, [10, 25, 50, 75, 90, 95]), energy_db.mean(), energy_db.std(),
        voiced.mean(), centroid[voiced].mean(), rolloff[voiced].mean(), zcr[voiced].mean(), peak_db,
    ], dtype=np.float64)


class BaselineRegressor:
    def __init__(self) -> None:
        self.model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))

    def fit(self, audios: list[np.ndarray], targets: np.ndarray) -> "BaselineRegressor":
        self.model.fit(np.stack([acoustic_features(a) for a in audios]), targets)
        return self

    def predict(self, audios: list[np.ndarray]) -> np.ndarray:
        return self.model.predict(np.stack([acoustic_features(a) for a in audios]))
