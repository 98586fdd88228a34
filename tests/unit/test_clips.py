"""Long clips cut into windows at pauses, and clips that cannot hold speech."""

from __future__ import annotations

import numpy as np
import pytest

from steps.common.clips import merge_levels, no_speech, windowed, windows
from tests.conftest import tone


def _speech_with_pauses(words: int = 12, word_s: float = 1.3, pause_s: float = 0.3) -> tuple[np.ndarray, list]:
    parts, gaps, at = [], [], 0
    for i in range(words):
        parts.append(tone(word_s, freq=150 + 10 * i, seed=i, dbfs=-20))
        at += int(word_s * 16000)
        parts.append(np.zeros(int(pause_s * 16000), dtype=np.float32))
        gaps.append((at, at + int(pause_s * 16000)))
        at += int(pause_s * 16000)
    return np.concatenate(parts), gaps


def test_long_audio_is_cut_into_windows_at_pauses_and_nothing_is_lost():
    audio, gaps = _speech_with_pauses()
    pieces = windows(audio, window_s=6.0)
    assert len(pieces) >= 4 and all(p.shape[0] <= 6 * 16000 for p in pieces)
    assert sum(p.shape[0] for p in pieces) == audio.shape[0]
    cuts = np.cumsum([p.shape[0] for p in pieces])[:-1]
    assert all(any(lo <= cut <= hi for lo, hi in gaps) for cut in cuts)  # every cut falls in a pause
    assert len(windows(audio[:16000], 6.0)) == 1


def test_windowed_runs_every_piece_in_one_batch_and_regroups_them_in_order():
    long, _ = _speech_with_pauses()
    short = tone(2.0)
    calls = []

    def run(pieces):
        calls.append(len(pieces))
        return [p.shape[0] for p in pieces]

    grouped = windowed([short, long, short], 6.0, run)
    assert len(calls) == 1 and calls[0] == 2 + len(windows(long, 6.0))
    assert grouped[0] == [32000] and grouped[2] == [32000] and sum(grouped[1]) == long.shape[0]
    assert windowed([long], None, run)[0] == [long.shape[0]]


def test_silence_and_crumbs_are_not_speech():
    assert "too short" in no_speech(np.full(480, 0.1, dtype=np.float32))
    assert "silent" in no_speech(np.zeros(16000, dtype=np.float32))
    assert "silent" in no_speech(tone(1.0, dbfs=-75))
    assert no_speech(tone(1.0, dbfs=-30)) is None


def test_levels_of_pieces_merge_into_the_level_of_the_whole():
    assert merge_levels([-20.0, -20.0], [100, 300]) == pytest.approx(-20.0)
    a, b = tone(1.0, dbfs=-20, seed=1), tone(3.0, dbfs=-30, seed=2)
    whole = 10 * np.log10(np.mean(np.square(np.concatenate([a, b]), dtype=np.float64)))
    assert merge_levels([-20.0, -30.0], [a.shape[0], b.shape[0]]) == pytest.approx(whole, abs=0.05)
