"""What serving does with a clip before a model sees it: long audio cut into windows at pauses, and clips that
cannot hold speech recognised as such.

* ``windows``: a model with a fixed window (Whisper's is cut to 6 s in the defaults) would see only the first
  window of a longer clip. A longer clip is cut at its pauses into pieces of about one utterance, none longer
  than the window, and the pieces' answers are joined (``steps/tasks/*/handler.py``).
* ``no_speech``: a clip shorter than ``MIN_SPEECH_S`` or quieter than ``SILENCE_DBFS`` overall holds no speech
  a model could transcribe; handlers answer it with an empty transcript and this reason instead of the
  sentence a decoder would invent.
"""

from __future__ import annotations

import numpy as np

from steps.common.audio import TARGET_SAMPLE_RATE

MIN_SPEECH_S = 0.1
SILENCE_DBFS = -60.0
FRAME_S = 0.02
PAUSE_S = 0.3  # a pause this long between words separates utterances
PAUSE_DB = 40.0  # frames this far below the clip's loudest count as pause


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale square wave is 0), as ``steps.common.loudness.rms_dbfs``, without its
    checks: serving has already refused NaN and empty clips."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return float(10 * np.log10(max(power, 1e-12)))


def no_speech(audio: np.ndarray, rate: int = TARGET_SAMPLE_RATE) -> str | None:
    """Why ``audio`` cannot hold speech, or None."""
    seconds = audio.shape[0] / rate
    if seconds < MIN_SPEECH_S:
        return f"the clip is {seconds:.3f} s long, too short to hold speech"
    level = level_dbfs(audio)
    if level < SILENCE_DBFS:
        return f"the clip is silent ({level:.0f} dBFS)"
    return None


def clip_facts(audio: np.ndarray, rate: int = TARGET_SAMPLE_RATE) -> dict:
    """What every answer says of the clip it used: ``duration_s``, and ``no_speech`` with the reason when it
    cannot hold speech."""
    reason = no_speech(audio, rate)
    return {"duration_s": round(audio.shape[0] / rate, 3), **({"no_speech": reason} if reason else {})}


def windows(audio: np.ndarray, window_s: float, search_s: float = 1.5, pause_s: float = PAUSE_S,
            rate: int = TARGET_SAMPLE_RATE) -> list[np.ndarray]:
    """``audio`` in consecutive pieces of at most ``window_s`` seconds (nothing dropped). A clip within the
    window stays whole. A longer one is cut in every pause of at least ``pause_s`` (frames more than
    ``PAUSE_DB`` below its loudest), so a piece holds about one utterance: a window holding several makes a
    short-window Whisper repeat itself; a piece still too long is cut at its quietest frame within the last
    ``search_s`` seconds before the limit."""
    limit = int(window_s * rate)
    if audio.shape[0] <= limit:
        return [audio]
    frame = int(FRAME_S * rate)
    energy = _frame_levels(audio, frame)
    quiet = energy < max(energy.max() - PAUSE_DB, SILENCE_DBFS)
    cuts, run_start = [], None
    for index, is_quiet in enumerate([*quiet, False]):
        if is_quiet and run_start is None:
            run_start = index
        elif not is_quiet and run_start is not None:
            if (index - run_start) * FRAME_S >= pause_s and run_start > 0 and index < len(quiet):
                cuts.append((run_start + index) // 2 * frame + frame // 2)
            run_start = None
    pieces, start = [], 0
    for cut in [*cuts, audio.shape[0]]:
        pieces += _within_limit(audio[start:cut], limit, frame, int(min(search_s, window_s / 2) * rate))
        start = cut
    return pieces


def _frame_levels(audio: np.ndarray, frame: int) -> np.ndarray:
    usable = (audio.shape[0] // frame) * frame
    power = np.square(audio[:usable].reshape(-1, frame), dtype=np.float64).mean(axis=1) if usable else np.zeros(1)
    return 10 * np.log10(np.maximum(power, 1e-12))


def _within_limit(audio: np.ndarray, limit: int, frame: int, search: int) -> list[np.ndarray]:
    pieces, start = [], 0
    while audio.shape[0] - start > limit:
        lo = start + limit - search
        levels = _frame_levels(audio[lo: start + limit], frame)
        cut = lo + int(np.argmin(levels)) * frame + frame // 2
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces


def merge_levels(levels_db: list[float], lengths: list[int]) -> float:
    """The level of the whole from the levels of its pieces (power-average weighted by length)."""
    power = np.asarray([10 ** (level / 10) for level in levels_db]) * np.asarray(lengths, dtype=np.float64)
    return float(10 * np.log10(max(power.sum() / max(sum(lengths), 1), 1e-12)))


def windowed(clips: list[np.ndarray], window_s: float | None, run) -> list[list]:
    """Every clip's pieces (``windows``; the whole clip when ``window_s`` is None) through ``run`` in one batch
    (a list of pieces -> one output per piece); returns, per clip, its pieces' outputs in order."""
    pieces, owners = [], []
    for index, clip in enumerate(clips):
        for piece in (windows(clip, window_s) if window_s else [clip]):
            pieces.append(piece)
            owners.append(index)
    grouped: list[list] = [[] for _ in clips]
    for owner, output in zip(owners, run(pieces)):
        grouped[owner].append(output)
    return grouped
