"""Put a parallel target utterance on the source's timeline, for ``aligned`` decoding.

Two speakers saying the same sentence take different times over each sound. Dynamic time warping on mel
cepstra (coefficients 1-24 of the log-mel frames, each utterance's mean removed, so loudness and the
speaker's average spectrum count less than what is said) pairs every source frame with target frames;
each source frame's training target is the middle one of the target frames it is paired with (a real
frame: a mean of neighbours would teach the model blurred speech).
"""

from __future__ import annotations

import numpy as np

CEPSTRA = 24


def cepstra(frames: np.ndarray) -> np.ndarray:
    from scipy.fft import dct

    coefficients = dct(np.asarray(frames, dtype=np.float64), type=2, norm="ortho", axis=1)[:, 1:CEPSTRA + 1]
    return coefficients - coefficients.mean(axis=0)


def warp_path(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """DTW path (pairs of source, target frame indices, in time order) between two (frames, bins) arrays."""
    import librosa

    _, path = librosa.sequence.dtw(X=cepstra(source).T, Y=cepstra(target).T, metric="euclidean")
    return path[::-1]


def target_on_source_timeline(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(source frames, bins): for each source frame, the middle one of the target frames DTW pairs it with."""
    if len(source) == 0 or len(target) == 0:
        raise ValueError("cannot align an empty utterance")
    path = warp_path(source, target)  # every source frame appears, in order
    _, first, count = np.unique(path[:, 0], return_index=True, return_counts=True)
    return np.asarray(target[path[first + count // 2, 1]], dtype=np.float32)
