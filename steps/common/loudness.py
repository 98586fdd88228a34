"""Loudness labels: RMS dBFS, integrated loudness (LUFS), loudness range and true peak.

One module, used by the data-prep stage and by serving, that turns the samples of a clip (one read
of the audio, as soundfile returns it) into intensity labels:

* **RMS dBFS** -- ``10*log10(mean(x**2))`` over every sample of every channel, so a full-scale
  square wave is 0 dBFS and a full-scale sine -3.01 dBFS. Digital silence (and anything below
  it) reads :data:`RMS_FLOOR_DBFS` (-120 dBFS, below the noise floor of 20-bit audio) and is
  flagged ``"silent"``.
* **Integrated loudness** per ITU-R BS.1770-4: K-weighting, mean square per 400 ms block with
  75 % overlap (the hop is ``round(rate/10)`` samples, as libebur128, and a block is four hops),
  channel weights (L, R, C = 1.0; Ls, Rs = 1.41; LFE excluded), absolute gate at -70 LUFS,
  relative gate at -10 LU below the absolute-gated loudness, ``L = -0.691 + 10*log10(z)``.
* **Loudness range** (optional) per EBU Tech 3342: 3 s short-term blocks every 100 ms, absolute
  gate -70 LUFS, relative gate -20 LU below the power mean of the absolute-gated blocks, then the
  95th minus the 10th percentile of the survivors (nearest rank, as libebur128:
  ``sorted[int((n - 1) * p + 0.5)]``).
* **True peak** (optional) per BS.1770-4 Annex 2: 4x oversampling with the Annex's 48-tap
  polyphase interpolator, reported in dBTP as the largest absolute value of the oversampled signal
  or of the samples themselves, over all channels (LFE included). 4x is used at every rate.

K-weighting
-----------
BS.1770 tabulates the two biquads only at 48 kHz. :func:`k_weighting_sos` derives them for the
actual rate by the bilinear transform (pre-warped at each stage's corner frequency) of the analog
prototype whose 48 kHz image is the table -- the parameters fitted by libebur128 (shelf: f0 =
1681.97 Hz, G = +4.0 dB, Q = 0.7072; high pass: f0 = 38.135 Hz, Q = 0.5003). At 48 kHz the
result equals the BS.1770 table to 1e-15. One deliberate difference from libebur128: libebur128
keeps the high-pass numerator at ``[1, -2, 1]`` at every rate, which makes the pass-band gain of
that stage ``1 + K/Q + K**2`` (K = tan(pi*f0/fs)), i.e. +0.043 dB at 48 kHz (as the table) but
+0.130 dB at 16 kHz. Here the numerator is scaled so that the pass-band gain is the 48 kHz
table's at every rate; at 16 kHz this module therefore reads 0.087 LU lower than libebur128 for
the same signal and is closer to the 48 kHz reference response. What remains is the bilinear
frequency warping of the shelf near Nyquist: against the 48 kHz reference response the 16 kHz
filter is within +-0.07 dB from 20 Hz to 7 kHz (-0.046 dB at 1 kHz, +0.06 dB at 3 kHz); at 44.1 kHz
within 0.002 dB; at 8 kHz it reaches 0.2 dB. Rates below :data:`MIN_SAMPLE_RATE` are rejected.

Edge cases (documented values, never an exception or an absurd number from :func:`measure_batch`)
--------------------------------------------------------------------------------------------------
* silence (RMS below -120 dBFS, e.g. all zeros): ``rms_dbfs = RMS_FLOOR_DBFS``, ``lufs =
  LUFS_FLOOR`` (-70), flag ``"silent"``; true peak (if asked) is floored at ``RMS_FLOOR_DBFS``.
* no 400 ms block above the absolute gate (very quiet or LFE-only input): ``lufs = LUFS_FLOOR``,
  flag ``"gated"``.
* shorter than one 400 ms block: the whole clip is measured as one block (mean square over its
  own length, then the same gates), flag ``"short"``.
* loudness range of a clip with no 3 s short-term block surviving the gates (e.g. < 3 s): 0.0
  (the libebur128 convention).
* NaN or infinite samples, empty input, non-float dtype, bad shape: :class:`LoudnessError` from
  :func:`measure` and :func:`rms_dbfs`; in :func:`measure_batch` that clip's result carries the
  reason in ``error`` (numbers NaN, flag ``"rejected"``) and the other clips are still measured.
* multi-channel ``(frames, channels)``: 1-3 channels are L, R, C (weight 1.0); 4 are L, R, Ls, Rs;
  5 are L, R, C, Ls, Rs; 6 are 5.1 in the order L, R, C, LFE, Ls, Rs (LFE weight 0); channels
  after the sixth have unknown positions and get 1.0. More than :data:`MAX_CHANNELS` channels is
  taken for a transposed ``(channels, frames)`` array and rejected.

Implementation (what was measured to choose it)
-----------------------------------------------
On a 2-core AMD EPYC VM, one thread (OMP/MKL/OPENBLAS = 1), 5 s mono clips at 16 kHz, per sample:
pyloudnorm 0.2 about 20-30 ns (two ``lfilter`` passes, copies and a Python loop over blocks);
``scipy.signal.sosfilt`` alone 6.7 ns (4.5x, not enough: the IIR recursion is latency bound,
every sample waits for the previous one, and scipy filters rows one after the other);
pyebur128 (libebur128 in C, per clip) 10 ns; torchaudio ``lfilter`` 75 ns; a numba kernel
interleaving many clips 0.6 ns but 4.8 ns for a single clip, a 1.2 s JIT on first use and a new
dependency. The chosen method keeps to numpy and scipy and parallelises the recursion itself,
so single clips are fast too: the K-weighting cascade is written as a 4-state linear system and
run **block-state**. The signal is cut into chunks of M = 16 samples (a divisor of the hop close
to 16 at other rates); within a chunk the output is an exact 16x16 lower-triangular Toeplitz
product of the impulse response plus the zero-input response of the chunk's start state, and the
chunk's end state is a 16x4 product -- all BLAS matrix products over the whole batch at once. The
chunk start states follow from the same construction one level up (groups of 8, then 16, 16 ...
chunks with 4x4 block matrices of powers of the transition matrix), and only the top level,
tens of steps per clip, is a Python loop. It is exact linear algebra, not an approximation: the
level-1 products run in float32 (relative error about 1e-6 on the filtered signal, i.e. 1e-5 dB),
the state propagation in float64. Energies per 100 ms hop come from one ``einsum`` over the
filtered batch; block energies are sums of four hop energies (three-second blocks of thirty), so
gating, the LRA percentiles and everything else are vectorised over all clips of a call with no
loop over blocks. Clips of similar length are padded into one batch; long clips are processed in
pieces with the filter state carried across. The benchmark ``tests/benchmarks/bench_loudness.py``
prints clips/s against pyloudnorm on the same clips.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "LUFS_FLOOR",
    "RMS_FLOOR_DBFS",
    "ABSOLUTE_GATE_LUFS",
    "MIN_SAMPLE_RATE",
    "MAX_CHANNELS",
    "LoudnessError",
    "Loudness",
    "measure",
    "measure_batch",
    "rms_dbfs",
    "k_weighting_sos",
    "channel_weights",
]

logger = logging.getLogger(__name__)

LUFS_FLOOR = -70.0
"""Integrated loudness reported for silent or fully gated input (the BS.1770 absolute gate)."""
RMS_FLOOR_DBFS = -120.0
"""RMS (and true peak) reported for digital silence: anything quieter reads this value."""
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LRA_RELATIVE_GATE_LU = -20.0
LRA_LOW_PERCENTILE = 0.10
LRA_HIGH_PERCENTILE = 0.95
MIN_SAMPLE_RATE = 4000
"""Below about 3.4 kHz the 1.68 kHz shelf of the K-weighting lies above Nyquist."""
MAX_CHANNELS = 32

_LOUDNESS_OFFSET = -0.691
_BLOCK_HOPS = 4  # 400 ms block = 4 hops of 100 ms (75 % overlap)
_LRA_BLOCK_HOPS = 30  # 3 s short-term block = 30 hops of 100 ms (10 Hz rate)
_SURROUND_WEIGHT = 1.41
_RMS_FLOOR_POWER = 10.0 ** (RMS_FLOOR_DBFS / 10.0)
_PEAK_FLOOR = 10.0 ** (RMS_FLOOR_DBFS / 20.0)

# Analog prototype of the K-weighting (libebur128's fit to the BS.1770 48 kHz table).
_SHELF_F0 = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HIGHPASS_F0 = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773
_REFERENCE_RATE = 48000

# BS.1770-4 Annex 2: 48-tap interpolator, four phases of twelve taps (phase p = taps p, p+4, ...).
_TRUE_PEAK_PHASES = np.array(
    [
        [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
         -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
         0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500],
        [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
         -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
         0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375],
        [-0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000,
         -0.2003173828125, 0.7797851562500, 0.4650878906250, -0.1665039062500,
         0.0891113281250, -0.0517578125000, 0.0292968750000, -0.0291748046875],
        [-0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750,
         -0.1022949218750, 0.9721679687500, 0.1373291015625, -0.0594482421875,
         0.0332031250000, -0.0196533203125, 0.0109863281250, 0.0017089843750],
    ]
)

# Block-state engine tuning (see the module docstring).
_CHUNK = 16  # level-1 chunk (samples); a divisor of the hop near this is used at other rates
_LEVEL_SIZES = (8, 16, 16, 16, 16)  # steps grouped at each higher level
_GROUP_SAMPLES = 1 << 20  # samples per padded batch (rows x piece), bounds memory (~10 MB)
_MAX_PAD_RATIO = 1.25  # clips share a batch when the longest is at most this much longer


class LoudnessError(ValueError):
    """Audio (or a sample rate) that cannot be measured, with a reason fit for a rejects manifest."""


@dataclass(frozen=True)
class Loudness:
    """Labels of one clip. ``flags``: "silent", "gated", "short" (see the module docstring)."""

    rms_dbfs: float
    lufs: float
    flags: tuple[str, ...] = ()
    loudness_range: float | None = None
    true_peak_dbtp: float | None = None
    error: str | None = None  # set (and the numbers NaN) only in batch results for rejected clips


# --------------------------------------------------------------------------------------------
# Filter design
# --------------------------------------------------------------------------------------------


def _check_rate(sample_rate: int) -> int:
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError) as exc:
        raise LoudnessError(f"sample rate must be an integer, got {sample_rate!r}") from exc
    if rate != sample_rate or rate < MIN_SAMPLE_RATE:
        raise LoudnessError(
            f"sample rate must be an integer >= {MIN_SAMPLE_RATE} Hz, got {sample_rate!r}"
        )
    return rate


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """K-weighting as second-order sections ``[[b0, b1, b2, 1, a1, a2], ...]`` for this rate.

    Bilinear transform of the analog prototype, pre-warped at each stage's corner; equal to the
    BS.1770 table at 48 kHz. Stage 2's numerator is scaled to keep the 48 kHz pass-band gain at
    every rate (libebur128 leaves it at [1, -2, 1]; see the module docstring).
    """
    rate = float(_check_rate(sample_rate))
    k = math.tan(math.pi * _SHELF_F0 / rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]

    def highpass_norm(r: float) -> float:
        kk = math.tan(math.pi * _HIGHPASS_F0 / r)
        return 1.0 + kk / _HIGHPASS_Q + kk * kk

    k = math.tan(math.pi * _HIGHPASS_F0 / rate)
    d = highpass_norm(rate)
    g = highpass_norm(float(_REFERENCE_RATE)) / d  # exactly 1.0 at 48 kHz
    highpass = [g, -2.0 * g, g, 1.0, 2.0 * (k * k - 1.0) / d, (1.0 - k / _HIGHPASS_Q + k * k) / d]
    return np.array([shelf, highpass], dtype=np.float64)


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770 weights G_i for ``channels`` in the orders given in the module docstring."""
    w = np.ones(channels, dtype=np.float64)
    if channels == 4:
        w[2:4] = _SURROUND_WEIGHT
    elif channels == 5:
        w[3:5] = _SURROUND_WEIGHT
    elif channels >= 6:
        w[3] = 0.0
        w[4:6] = _SURROUND_WEIGHT
    return w


# --------------------------------------------------------------------------------------------
# Block-state engine: exact K-weighted energy per hop for a batch of rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Level:
    """One level above the sample chunks: ``size`` steps of the level below form one step here.

    Row-vector convention, ``s_next = s @ P + u`` per step below, inputs ``u`` flattened per group.
    """

    size: int
    within: np.ndarray  # (4m, 4m): inputs of the group -> state at the start of each step
    start: np.ndarray  # (4, 4m): state at the group start -> state at the start of each step
    end: np.ndarray  # (4m, 4): inputs of the group -> state at the group end (from zero)


@dataclass(frozen=True)
class _Plan:
    rate: int
    hop: int
    chunk: int
    level1: np.ndarray  # (chunk + 4, chunk) float32: [chunk samples | start state] -> outputs
    level1_end: np.ndarray  # (chunk, 4) float32: chunk samples -> end state (from zero)
    levels: tuple[_Level, ...]
    transitions: tuple[np.ndarray, ...]  # transitions[d]: (4, 4) step transition at depth d
    products: tuple[int, ...]  # products[d]: samples per step at depth d


def _state_space(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Cascade of transposed-direct-form-II biquads as (A, B, C, D), column convention."""
    parts = []
    for b0, b1, b2, _, a1, a2 in sos:
        a = np.array([[-a1, 1.0], [-a2, 0.0]])
        b = np.array([b1 - a1 * b0, b2 - a2 * b0])
        parts.append((a, b, np.array([1.0, 0.0]), b0))
    (a1m, b1v, c1v, d1), (a2m, b2v, c2v, d2) = parts
    a = np.zeros((4, 4))
    a[:2, :2] = a1m
    a[2:, 2:] = a2m
    a[2:, :2] = np.outer(b2v, c1v)
    b = np.concatenate([b1v, b2v * d1])
    c = np.concatenate([d2 * c1v, c2v])
    return a, b, c, float(d2 * d1)


def _pick_chunk(hop: int) -> int:
    """A divisor of the hop near 16 (so hop energies are sums of whole chunks), else 16."""
    divisors = [m for m in range(12, 25) if hop % m == 0]
    return min(divisors, key=lambda m: (abs(m - _CHUNK), m)) if divisors else _CHUNK


@lru_cache(maxsize=16)
def _plan(rate: int) -> _Plan:
    hop = (rate + 5) // 10
    m = _pick_chunk(hop)
    a, b, c, d = _state_space(k_weighting_sos(rate))
    ar = a.T  # row convention: s_next = s @ ar + x * b
    powers = [np.eye(4)]
    for _ in range(m):
        powers.append(powers[-1] @ ar)
    impulse = np.array([d] + [float(b @ powers[k] @ c) for k in range(m - 1)])
    within = np.zeros((m, m))
    for i in range(m):
        within[i, i:] = impulse[: m - i]
    start = np.stack([powers[j] @ c for j in range(m)], axis=1)  # (4, m)
    end = np.stack([b @ powers[m - 1 - i] for i in range(m)], axis=0)  # (m, 4)
    level1 = np.concatenate([within, start], axis=0).astype(np.float32)
    transitions = [powers[m]]
    products = [m]
    levels = []
    for size in _LEVEL_SIZES:
        p = transitions[-1]
        pw = [np.eye(4)]
        for _ in range(size):
            pw.append(pw[-1] @ p)
        w = np.zeros((4 * size, 4 * size))
        for j in range(size):
            for i in range(j):
                w[4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = pw[j - 1 - i]
        st = np.concatenate([pw[j] for j in range(size)], axis=1)
        en = np.concatenate([pw[size - 1 - i] for i in range(size)], axis=0)
        levels.append(_Level(size, w, st, en))
        transitions.append(pw[size])
        products.append(products[-1] * size)
    return _Plan(
        rate=rate,
        hop=hop,
        chunk=m,
        level1=level1,
        level1_end=end.astype(np.float32),
        levels=tuple(levels),
        transitions=tuple(transitions),
        products=tuple(products),
    )


def _step_states(
    plan: _Plan, u: np.ndarray, s0: np.ndarray, depth: int, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """States at the start of each step, and after the last, for inputs ``u`` (R, L, 4)."""
    rows, steps, _ = u.shape
    if depth == top:
        p = plan.transitions[depth]
        states = np.empty_like(u)
        s = s0.copy()
        for t in range(steps):  # the only Python loop: a few tens of steps per piece
            states[:, t] = s
            s = s @ p
            s += u[:, t]
        return states, s
    level = plan.levels[depth]
    grouped = u.reshape(rows * (steps // level.size), 4 * level.size)
    inner, s_end = _step_states(
        plan, (grouped @ level.end).reshape(rows, steps // level.size, 4), s0, depth + 1, top
    )
    states = grouped @ level.within
    states += inner.reshape(-1, 4) @ level.start
    return states.reshape(rows, steps, 4), s_end


def _choose_depth(plan: _Plan, rows: int, length: int) -> int:
    """Levels to use for a piece: trade padding to a whole top step against top-loop steps."""
    best, best_cost = 0, math.inf
    for depth, prod in enumerate(plan.products):
        padded = -(-length // prod) * prod
        cost = rows * padded * 2e-9 + (padded // prod) * 4e-6 + depth * 2e-5
        if cost < best_cost:
            best, best_cost = depth, cost
    return best


def _hop_energies(rows: list[np.ndarray], plan: _Plan) -> list[np.ndarray]:
    """For each 1-D row, sum of squared K-weighted samples per hop (the last one may be partial)."""
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    lengths = np.array([r.shape[0] for r in rows], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    hop, m = plan.hop, plan.chunk
    unit = hop * m // math.gcd(hop, m)  # piece boundaries fall on hop and chunk boundaries
    aligned = hop % m == 0
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        piece = max(unit, (_GROUP_SAMPLES // unit) * unit) if aligned else longest
        piece = min(piece, longest)
        j = i + 1
        budget = max(1, _GROUP_SAMPLES // max(piece, 1))
        while (
            j < len(order)
            and j - i < budget
            and lengths[order[j]] * _MAX_PAD_RATIO >= longest
        ):
            j += 1
        members = [int(k) for k in order[i:j]]
        energies = _group_energies([rows[k] for k in members], longest, piece, plan)
        for k, e in zip(members, energies):
            out[k] = e
        i = j
    return out


def _group_energies(
    rows: list[np.ndarray], longest: int, piece: int, plan: _Plan
) -> list[np.ndarray]:
    hop, m = plan.hop, plan.chunk
    n_rows = len(rows)
    lengths = [r.shape[0] for r in rows]
    n_hops = [-(-n // hop) for n in lengths]
    energies = np.zeros((n_rows, -(-longest // hop)), dtype=np.float64)
    state = np.zeros((n_rows, 4), dtype=np.float64)
    for a in range(0, longest, piece):
        real = min(piece, longest - a)
        span = -(-real // hop) * hop  # whole hops
        depth = _choose_depth(plan, n_rows, span)
        prod = plan.products[depth]
        padded = -(-span // prod) * prod
        chunks = padded // m
        buf = np.zeros((n_rows, chunks, m + 4), dtype=np.float32)
        for r, row in enumerate(rows):
            seg = row[a : a + real]
            q, rem = divmod(seg.shape[0], m)
            if q:
                buf[r, :q, :m] = seg[: q * m].reshape(q, m)
            if rem:
                buf[r, q, :rem] = seg[q * m :]
        flat = buf.reshape(n_rows * chunks, m + 4)
        u = (flat[:, :m] @ plan.level1_end).astype(np.float64).reshape(n_rows, chunks, 4)
        states, s_end = _step_states(plan, u, state, 0, depth)
        flat[:, m:] = states.reshape(-1, 4)
        y = (flat @ plan.level1).reshape(n_rows, padded)
        if real == piece and a + piece < longest:  # carry the state at the piece end
            idx = real // m
            state = states[:, idx] if idx < chunks else s_end
        for r, n in enumerate(lengths):
            if n - a < padded:
                y[r, max(n - a, 0) :] = 0.0
        k0 = a // hop
        kp = span // hop
        if plan.hop % m == 0:
            blocks = y[:, :span].reshape(n_rows, kp, hop)
            energies[:, k0 : k0 + kp] = np.einsum("rkh,rkh->rk", blocks, blocks)
        else:
            sq = np.square(y[:, :span], dtype=np.float64)
            energies[:, k0 : k0 + kp] = np.add.reduceat(sq, np.arange(0, span, hop), axis=1)
    return [energies[r, : n_hops[r]] for r in range(n_rows)]


# --------------------------------------------------------------------------------------------
# Validation, peaks, gating
# --------------------------------------------------------------------------------------------


@dataclass
class _Clip:
    audio: np.ndarray  # (frames, channels), float
    power: float  # mean square over all samples and channels


def _validate(audio: object) -> _Clip:
    try:
        a = np.asarray(audio)
    except (ValueError, TypeError) as exc:
        raise LoudnessError(f"audio is not an array of samples: {exc}") from exc
    if a.dtype.kind != "f":
        raise LoudnessError(
            f"audio must be floating point in [-1, 1] (as soundfile returns), got dtype {a.dtype}"
        )
    if a.dtype.itemsize < 4:
        a = a.astype(np.float32)
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim != 2:
        raise LoudnessError(f"audio must have shape (frames,) or (frames, channels), got {a.shape}")
    frames, channels = a.shape
    if frames == 0 or channels == 0:
        raise LoudnessError(f"empty audio (shape {a.shape})")
    if channels > MAX_CHANNELS:
        raise LoudnessError(
            f"{channels} channels (shape {a.shape}): expected (frames, channels) with at most "
            f"{MAX_CHANNELS} channels; is the array transposed?"
        )
    sumsq = np.einsum("ij,ij->", a, a) if channels > 1 else float(np.dot(a[:, 0], a[:, 0]))
    if not math.isfinite(float(sumsq)):
        bad = ~np.isfinite(a)
        if bad.any():
            frame = int(np.argmax(bad.any(axis=1)))
            kind = "NaN" if np.isnan(a[frame]).any() else "infinite"
            raise LoudnessError(
                f"audio contains {int(bad.sum())} NaN or infinite samples (first: {kind} at frame "
                f"{frame})"
            )
        a = a.astype(np.float64)
        sumsq = np.einsum("ij,ij->", a, a)
        if not math.isfinite(float(sumsq)):
            raise LoudnessError("audio sample values are too large to measure")
    return _Clip(a, float(sumsq) / a.size)


def _db_power(power: float) -> float:
    return 10.0 * math.log10(power) if power > _RMS_FLOOR_POWER else RMS_FLOOR_DBFS


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dBFS (full-scale square wave = 0) over all samples and channels.

    Floored at :data:`RMS_FLOOR_DBFS`; raises :class:`LoudnessError` for NaN/inf/empty input.
    """
    return _db_power(_validate(audio).power)


def _true_peak(audio: np.ndarray) -> float:
    """Largest absolute value of the 4x oversampled signal (or of the samples), all channels."""
    peak = float(np.max(np.abs(audio)))
    for ch in range(audio.shape[1]):
        x = np.ascontiguousarray(audio[:, ch], dtype=np.float64)
        for phase in _TRUE_PEAK_PHASES:
            peak = max(peak, float(np.max(np.abs(np.convolve(x, phase)))))
    return peak


def _loudness_of(z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return _LOUDNESS_OFFSET + 10.0 * np.log10(z)


def _gated_mean(
    z: np.ndarray, valid: np.ndarray, relative_lu: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-stage gating along axis 1: (power mean of survivors, their mask, absolute-gate count)."""
    level = _loudness_of(z)
    absolute = valid & (level > ABSOLUTE_GATE_LUFS)
    count = absolute.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        threshold = _loudness_of(np.where(absolute, z, 0.0).sum(axis=1) / count) + relative_lu
        kept = absolute & (level > threshold[:, None])
        mean = np.where(kept, z, 0.0).sum(axis=1) / kept.sum(axis=1)
    return mean, kept, count


def _hop_matrix(series: list[np.ndarray]) -> np.ndarray:
    width = max((s.shape[0] for s in series), default=0)
    out = np.zeros((len(series), max(width, 1)), dtype=np.float64)
    for i, s in enumerate(series):
        out[i, : s.shape[0]] = s
    return out


def _window_sums(hops: np.ndarray, width: int) -> np.ndarray:
    if hops.shape[1] < width:
        return np.zeros((hops.shape[0], 0))
    return np.lib.stride_tricks.sliding_window_view(hops, width, axis=1).sum(axis=2)


def _integrated(
    hops: np.ndarray, frames: np.ndarray, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LUFS or NaN when fully gated, short mask, gated mask) for weighted hop energies."""
    full = frames // hop
    short = full < _BLOCK_HOPS
    blocks = _window_sums(hops, _BLOCK_HOPS) / (_BLOCK_HOPS * hop)
    valid = np.arange(blocks.shape[1])[None, :] < (full - _BLOCK_HOPS + 1)[:, None]
    mean, _, count = _gated_mean(blocks, valid, RELATIVE_GATE_LU)
    # Shorter than one block: the whole clip is one block (its own mean square).
    whole = hops.sum(axis=1) / frames
    single = _loudness_of(whole)
    lufs = np.where(short, single, _loudness_of(np.where(count > 0, mean, 1.0)))
    gated = np.where(short, ~(single > ABSOLUTE_GATE_LUFS), count == 0)
    return lufs, short, gated


def _loudness_range(hops: np.ndarray, frames: np.ndarray, hop: int) -> np.ndarray:
    full = frames // hop
    blocks = _window_sums(hops, _LRA_BLOCK_HOPS) / (_LRA_BLOCK_HOPS * hop)
    if blocks.shape[1] == 0:
        return np.zeros(hops.shape[0])
    valid = np.arange(blocks.shape[1])[None, :] < (full - _LRA_BLOCK_HOPS + 1)[:, None]
    _, kept, _ = _gated_mean(blocks, valid, LRA_RELATIVE_GATE_LU)
    level = np.where(kept, _loudness_of(np.where(kept, blocks, 1.0)), np.inf)
    level.sort(axis=1)
    n = kept.sum(axis=1)
    last = np.maximum(n - 1, 0)
    lo = (last * LRA_LOW_PERCENTILE + 0.5).astype(np.int64)
    hi = (last * LRA_HIGH_PERCENTILE + 0.5).astype(np.int64)
    rows = np.arange(hops.shape[0])
    lra = level[rows, np.minimum(hi, level.shape[1] - 1)] - level[rows, np.minimum(lo, level.shape[1] - 1)]
    return np.where(n > 0, lra, 0.0)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _rejected(reason: str, loudness_range: bool, true_peak: bool) -> Loudness:
    nan = float("nan")
    return Loudness(
        rms_dbfs=nan,
        lufs=nan,
        flags=("rejected",),
        loudness_range=nan if loudness_range else None,
        true_peak_dbtp=nan if true_peak else None,
        error=reason,
    )


def _measure_valid(
    good: list[_Clip], plan: _Plan, loudness_range: bool, true_peak: bool
) -> list[Loudness]:
    # Filter every weighted channel of every clip in one batch (LFE is never filtered).
    rows: list[np.ndarray] = []
    owners: list[tuple[int, float]] = []
    for g, clip in enumerate(good):
        for ch, w in enumerate(channel_weights(clip.audio.shape[1])):
            if w > 0.0:
                rows.append(clip.audio[:, ch])
                owners.append((g, float(w)))
    energies = _hop_energies(rows, plan)
    per_clip: list[np.ndarray | None] = [None] * len(good)
    for (g, w), e in zip(owners, energies):
        weighted = e if w == 1.0 else w * e
        per_clip[g] = weighted if per_clip[g] is None else per_clip[g] + weighted
    series = [
        e if e is not None else np.zeros(-(-clip.audio.shape[0] // plan.hop))  # LFE only
        for e, clip in zip(per_clip, good)
    ]
    hops = _hop_matrix(series)
    frames = np.array([clip.audio.shape[0] for clip in good], dtype=np.int64)
    lufs, short, gated = _integrated(hops, frames, plan.hop)
    lra = _loudness_range(hops, frames, plan.hop) if loudness_range else None
    out = []
    for g, clip in enumerate(good):
        silent = clip.power <= _RMS_FLOOR_POWER
        flags: list[str] = []
        if short[g]:
            flags.append("short")
        if silent:
            flags.append("silent")
        elif gated[g]:
            flags.append("gated")
        tp = None
        if true_peak:
            peak = _true_peak(clip.audio)
            tp = 20.0 * math.log10(peak) if peak > _PEAK_FLOOR else RMS_FLOOR_DBFS
        out.append(
            Loudness(
                rms_dbfs=_db_power(clip.power),
                lufs=LUFS_FLOOR if silent or gated[g] else float(lufs[g]),
                flags=tuple(flags),
                loudness_range=None if lra is None else (0.0 if silent else float(lra[g])),
                true_peak_dbtp=tp,
            )
        )
    return out


def measure_batch(
    clips: Sequence[np.ndarray],
    sample_rate: int,
    *,
    loudness_range: bool = False,
    true_peak: bool = False,
) -> list[Loudness]:
    """Measure many clips (any lengths and channel counts) at one sample rate, in one pass.

    Never raises for a bad clip: its result has ``error`` set, NaN numbers and the flag
    ``"rejected"``. Raises :class:`LoudnessError` only for an invalid ``sample_rate``.
    """
    plan = _plan(_check_rate(sample_rate))
    results: list[Loudness | None] = [None] * len(clips)
    good: list[_Clip] = []
    where: list[int] = []
    for i, audio in enumerate(clips):
        try:
            good.append(_validate(audio))
            where.append(i)
        except LoudnessError as exc:
            logger.debug("clip %d rejected: %s", i, exc)
            results[i] = _rejected(str(exc), loudness_range, true_peak)
    if good:
        for i, result in zip(where, _measure_valid(good, plan, loudness_range, true_peak)):
            results[i] = result
    return [r for r in results if r is not None]


def measure(
    audio: np.ndarray,
    sample_rate: int,
    *,
    loudness_range: bool = False,
    true_peak: bool = False,
) -> Loudness:
    """Measure one clip: ``audio`` of shape (frames,) or (frames, channels), floats in [-1, 1].

    Raises :class:`LoudnessError` for NaN/inf samples, empty input, a non-float dtype, a bad shape
    or an invalid sample rate.
    """
    plan = _plan(_check_rate(sample_rate))
    return _measure_valid([_validate(audio)], plan, loudness_range, true_peak)[0]
