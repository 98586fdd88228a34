"""Honest baselines for emotion: the majority class, and a classifier on acoustic statistics.

The statistics are the classic prosodic cues: pitch (median, spread and range of the voiced frames' f0 in
semitones, by librosa's YIN), energy (spread and range of the frame level in dB: the clip's overall level
says nothing, the corpus scales every clip to a random level), speaking rate (words per second of voiced
time) and voicing (the voiced share). Standardised, then a logistic regression (scikit-learn) trained on
the training split, scored on the same test clips as the model.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

SAMPLE_RATE = 16000
FEATURES = ("f0_median_st", "f0_iqr_st", "f0_range_st", "energy_std_db", "energy_range_db", "words_per_voiced_s",
            "voiced_share", "duration_s")


def acoustic_statistics(audio: np.ndarray, words: int) -> np.ndarray:
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] < 2048:
        audio = np.pad(audio, (0, 2048 - audio.shape[0]))
    frame, hop = 1024, 160
    rms = librosa.feature.rms(y=audio, frame_length=frame, hop_length=hop)[0]
    level = 20 * np.log10(np.maximum(rms, 1e-6))
    speech = level > level.max() - 35  # frames within 35 dB of the loudest: speech, not silence
    f0 = librosa.yin(audio, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=frame, hop_length=hop)
    count = min(len(f0), len(speech))
    voiced = speech[:count]
    semitones = 12 * np.log2(f0[:count][voiced] / 55.0) if voiced.any() else np.zeros(1)
    p10, p25, p50, p75, p90 = np.percentile(semitones, [10, 25, 50, 75, 90])
    active = level[speech] if speech.any() else level
    voiced_s = max(voiced.sum() * hop / SAMPLE_RATE, 0.05)
    return np.array([p50, p75 - p25, p90 - p10, active.std(), np.percentile(active, 95) - np.percentile(active, 5),
                     words / voiced_s, voiced.mean() if count else 0.0, audio.shape[0] / SAMPLE_RATE])


class AcousticBaseline:
    def __init__(self, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))

    def fit(self, features: np.ndarray, labels: list[str]) -> "AcousticBaseline":
        self.model.fit(features, labels)
        return self

    def predict(self, features: np.ndarray) -> list[str]:
        return [str(p) for p in self.model.predict(features)]


def majority(labels: list[str]) -> str:
    return Counter(labels).most_common(1)[0][0]
