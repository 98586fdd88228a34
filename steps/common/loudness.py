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
Measured on the project's 2-core AMD EPYC VM (AVX-512, shared and noisy: timings moved by up to
2x between runs, so candidates were compared interleaved in one process, best of several rounds),
one thread, 5 s mono clips at 16 kHz, per sample: pyloudnorm 0.2 about 20-30 ns (two ``lfilter``
passes, copies, a Python loop over blocks); ``scipy.signal.sosfilt`` alone 6.7 ns, i.e. at best
4.5x even with free gating, because an IIR recursion is latency bound (every sample waits for
the previous one) and scipy filters the rows of a batch one after the other; pyebur128 0.1.1
(libebur128 in C, one clip per call) 10 ns; torchaudio ``lfilter`` 75 ns; a numba kernel
interleaving 64 clips in SIMD lanes 0.6 ns, but 3 ns more to transpose the batch, 4.8 ns for a
single clip, a 1.2 s JIT on first use and a new dependency. The chosen method needs only numpy
(and threadpoolctl, optional) and parallelises the recursion itself, so a single clip is fast too.

The K-weighting cascade is a 4-state linear system run **block-state**: the signal is cut into
chunks of M = 32 samples (a divisor of the hop near 32 at other rates). A chunk's outputs are an
exact 32x32 Toeplitz product of the impulse response plus the zero-input response of the
chunk's start state (32x4), and its end state is a 32x4 product: float32 BLAS products over many
chunks at once, about 2 ns per sample together. The chunk start states come from the same
construction one level up (groups of 4, 8, 16, ... chunks, 4x4 blocks of powers of the
transition matrix, float64) and only the top level, a few steps per piece, is a Python loop.
This is exact linear algebra, not an approximation: against float64 ``sosfilt`` plus a
per-block loop the integrated loudness agrees within 2e-6 LU on noise and within 1e-4 LU on
signals with a large DC offset or strong infrasound (tested). Energies per 100 ms hop come from
one ``vecdot`` per tile (3x faster than the ``einsum`` it replaced); a 400 ms block is four hops
and a 3 s block thirty, so gating, the LRA percentiles and the rest are vectorised over all clips
of a call, with no loop over blocks. Clips of similar length share a batch of about 2^19 samples
(six 5 s clips) and long clips go in pieces of 2^17 samples with the state carried across; outputs
are formed in tiles of 2^17 samples. BLAS is held to one thread during a call: multi-threaded
OpenBLAS on these small products was measured 10-15x slower on the busy VM.

What made the difference (second round, measured interleaved in one process, 5 s clips):

* every large temporary lives in a per-thread scratch buffer reused across calls (``_buffer``).
  Fresh arrays of this size come from mmap on glibc, and faulting their pages in again on every
  call made a measurement 3x slower (about 9 against 3 ns per sample) whenever the allocator's
  mmap threshold was low, which depends on what the process did before (a fresh process, or
  the prepare stage after decoding, rather than a benchmark that had allocated large arrays);
* rows are filtered in place (no padded copy of the batch: 0.5 ns per sample);
* the plain sum of squares for RMS is taken in the filter pass, right before the row is read
  again from cache, instead of in a separate validation pass over memory (NaN/inf then shows as a
  non-finite sum, and that clip alone is validated again for its reason);
* the zero-input response is added by ``sgemm`` with beta = 1, in place; larger batches and
  tiles once the copies were gone. float32 state levels would save another 6 % but move the
  result by up to 3e-3 LU at 44.1/48 kHz with a DC offset, so the levels stay float64.

Where the time goes now, per sample on 5 s clips (about 2.3 ns): the 32x32 Toeplitz product
0.9 (near the core's float32 peak), the state levels 0.4, reading the audio from memory with the
sum of squares 0.4, the chunk-end products 0.25, the zero-input response 0.25, hop energies 0.1.

Result on that VM (``python tests/benchmarks/bench_loudness.py``, same clips, same process, best
of 5 interleaved rounds; pyloudnorm 0.2.0): ``measure_batch`` at 10.0x pyloudnorm's clips/s on
5 s clips (5402 against 541 clips/s; 10.0x and 10.1x in two more runs), 7.9x on 300 real corpus
clips (2.3 s average, where per-batch overheads weigh more), 8.3x on 1 s clips, 14.9x on 30 s and
12.3x on 10 min clips. An earlier numba kernel (float64 cascade, 16 lanes per clip, two passes
joined by the exact segment-state recursion) ran its filter loop at 0.6 ns/sample, but the whole
kernel measured 6-9 ns/sample (the lane gather/transposition dominated) with a 7 s first
compile, so it was not adopted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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
# Working sets are kept near the L2 cache size: measured on the reference VM, batches of 2^20
# samples ran 2-3x slower than batches of 2^17 (the matrix products are memory bound there).
_CHUNK = 32  # level-1 chunk (samples); a divisor of the hop near this is used at other rates
_LEVEL_SIZES = (4, 8, 16, 16, 16)  # steps grouped at each higher level
_GROUP_SAMPLES = 1 << 19  # samples per batch (rows x piece); see the module docstring
_PIECE_SAMPLES = 1 << 17  # rows longer than this are filtered in pieces, state carried across
_TILE_SAMPLES = 1 << 17  # outputs are formed in tiles of about this size
_MAX_PAD_RATIO = 1.25  # clips share a batch when the longest is at most this much longer

_workspace = threading.local()


def _buffer(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """A per-thread scratch array, reused from call to call (contents undefined).

    Every large temporary of the filter lives in one of these. Fresh arrays of this size come
    from mmap on glibc, and touching their pages again on every call was measured to make a
    measurement 3x slower (about 9 ns instead of 3 ns per sample on 5 s clips) whenever the
    allocator's mmap threshold was low, which depends on what the process did before.
    """
    pool = getattr(_workspace, "pool", None)
    if pool is None:
        pool = _workspace.pool = {}
    size = math.prod(shape)
    buf = pool.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = pool[name] = np.empty(max(size, 1 << 12), dtype=dtype)
    return buf[:size].reshape(shape)


class LoudnessError(ValueError):
    """Audio (or a sample rate) that cannot be measured, with a reason fit for a rejects list."""


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
    response: np.ndarray  # (chunk, chunk) float32: chunk samples -> outputs (zero start state)
    free: np.ndarray  # (4, chunk) float32: start state -> outputs (zero input)
    end: np.ndarray  # (chunk, 4) float32: chunk samples -> end state (zero start state)
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
    """A divisor of the hop near 32 (so hop energies are sums of whole chunks), else 32."""
    divisors = [m for m in range(_CHUNK * 3 // 4, _CHUNK * 3 // 2 + 1) if hop % m == 0]
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
    response = np.zeros((m, m))
    for i in range(m):
        response[i, i:] = impulse[: m - i]
    free = np.stack([powers[j] @ c for j in range(m)], axis=1)  # (4, m)
    end = np.stack([b @ powers[m - 1 - i] for i in range(m)], axis=0)  # (m, 4)
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
    f32 = np.float32
    return _Plan(
        rate=rate,
        hop=hop,
        chunk=m,
        response=response.astype(f32),
        free=free.astype(f32),
        end=end.astype(f32),
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
        states = _buffer(f"states{depth}", u.shape, np.float64)
        s = s0.copy()
        for t in range(steps):  # the only Python loop: a few steps per piece
            states[:, t] = s
            s = s @ p
            s += u[:, t]
        return states, s
    level = plan.levels[depth]
    grouped = u.reshape(rows * (steps // level.size), 4 * level.size)
    ends = np.matmul(grouped, level.end, out=_buffer(f"ends{depth}", (grouped.shape[0], 4), np.float64))
    inner, s_end = _step_states(plan, ends.reshape(rows, steps // level.size, 4), s0, depth + 1, top)
    states = np.matmul(grouped, level.within, out=_buffer(f"states{depth}", grouped.shape, np.float64))
    states += np.matmul(inner.reshape(-1, 4), level.start, out=_buffer(f"starts{depth}", grouped.shape, np.float64))
    return states.reshape(rows, steps, 4), s_end


def _choose_depth(plan: _Plan, rows: int, length: int) -> int:
    """Levels to use for a piece: trade padding to a whole top step against top-loop steps."""
    best, best_cost = 0, math.inf
    for depth, prod in enumerate(plan.products):
        padded = -(-length // prod) * prod
        cost = rows * padded * 1e-9 + (padded // prod) * 3e-6 + depth * 1e-5
        if cost < best_cost:
            best, best_cost = depth, cost
    return best


def _hop_energies(rows: list[np.ndarray], plan: _Plan) -> tuple[list[np.ndarray], list[float]]:
    """For each 1-D row, sum of squared K-weighted samples per hop (the last one may be partial),
    and the row's plain sum of squares (for RMS), taken while the row is in cache anyway."""
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    sumsq: list[float] = [0.0] * len(rows)
    lengths = [r.shape[0] for r in rows]
    order = sorted(range(len(rows)), key=lambda k: -lengths[k])
    unit = plan.hop * plan.chunk // math.gcd(plan.hop, plan.chunk)  # hop and chunk boundary
    i = 0
    while i < len(order):
        longest = lengths[order[i]]
        # Very long rows go in pieces (state carried across) to bound memory.
        piece = longest if longest <= _PIECE_SAMPLES else max(unit, _PIECE_SAMPLES // unit * unit)
        budget = max(1, _GROUP_SAMPLES // piece)
        j = i + 1
        while j < len(order) and j - i < budget and lengths[order[j]] * _MAX_PAD_RATIO >= longest:
            j += 1
        members = order[i:j]
        energies, sums = _group_energies([rows[k] for k in members], longest, piece, plan)
        for k, e, s in zip(members, energies, sums):
            out[k], sumsq[k] = e, s
        i = j
    return out, sumsq


class _Chunks:
    """The input chunks of one piece, row by row: ``(chunks, m)`` float32, zero-padded at the end.

    Contiguous float32 rows (the usual clips) are used in place, without a copy: only each row's
    last partial chunk and its padding are materialised (measured: copying a batch into one padded
    array cost about 0.5 ns of the 2.9 ns per sample on 5 s clips). Other rows are converted once.
    """

    def __init__(self, rows: list[np.ndarray], a: int, real: int, width: int, m: int) -> None:
        chunks = width // m
        self.mains: list[np.ndarray] = []
        self.fulls: list[int] = []
        segs = []
        for row in rows:
            seg = row[a : a + real]
            if seg.dtype != np.float32 or seg.strides != (4,):
                seg = np.ascontiguousarray(seg, dtype=np.float32)
            segs.append(seg)
            self.fulls.append(seg.shape[0] // m)
        # RMS needs every sample squared: done here, where the next product reads the row from cache
        self.sumsq = [float(np.dot(seg, seg)) for seg in segs]
        spare = [chunks - full for full in self.fulls]
        flat = _buffer("tails", (sum(spare) * m,))
        self.tails: list[np.ndarray] = []
        offset = 0
        for seg, full, extra in zip(segs, self.fulls, spare):
            self.mains.append(seg[: full * m].reshape(full, m))
            tail = flat[offset : offset + extra * m]
            rest = seg.shape[0] - full * m
            tail[:rest] = seg[full * m :]
            tail[rest:] = 0.0
            self.tails.append(tail.reshape(extra, m))
            offset += extra * m

    def product(self, mat: np.ndarray, r0: int, r1: int, lo: int, hi: int, name: str) -> np.ndarray:
        """``chunks[r0:r1, lo:hi] @ mat`` as float32 of shape (r1 - r0, hi - lo, mat.shape[1]),
        in the scratch buffer ``name``."""
        out = _buffer(name, (r1 - r0, hi - lo, mat.shape[1]))
        for r in range(r0, r1):
            q, o = self.fulls[r], out[r - r0]
            if hi <= q:
                np.matmul(self.mains[r][lo:hi], mat, out=o)
            elif lo >= q:
                np.matmul(self.tails[r][lo - q : hi - q], mat, out=o)
            else:
                np.matmul(self.mains[r][lo:q], mat, out=o[: q - lo])
                np.matmul(self.tails[r][: hi - q], mat, out=o[q - lo :])
        return out


def _add_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out += a @ b`` (last two axes), in place through BLAS ``gemm`` with beta = 1 when the
    operands are contiguous and of one float type: no temporary and no second pass over ``out``
    (measured 0.1 ns per sample less than ``out += a @ b`` for the float32 outputs; no measurable
    gain on the float64 state levels, which keep numpy). Other layouts fall back to numpy."""
    if (out.flags.c_contiguous and a.flags.c_contiguous and b.flags.c_contiguous
            and out.dtype == a.dtype == b.dtype and out.dtype in (np.float32, np.float64)):
        o2, a2 = out.reshape(-1, out.shape[-1]), a.reshape(-1, a.shape[-1])
        gemm = _gemm(out.dtype.char)
        # row-major out = a @ b is column-major out.T = b.T @ a.T
        result = gemm(1.0, b.T, a2.T, 1.0, o2.T, overwrite_c=1)
        if not np.shares_memory(result, o2):  # the wrapper had to copy: write the result back
            o2[...] = result.T
        return
    out += np.matmul(a, b)


@lru_cache(maxsize=2)
def _gemm(kind: str) -> Any:
    from scipy.linalg import blas

    return blas.sgemm if kind == "f" else blas.dgemm


def _group_energies(
    rows: list[np.ndarray], longest: int, piece: int, plan: _Plan
) -> list[np.ndarray]:
    hop, m = plan.hop, plan.chunk
    n_rows = len(rows)
    lengths = [r.shape[0] for r in rows]
    energies = np.zeros((n_rows, -(-longest // hop)), dtype=np.float64)
    state = np.zeros((n_rows, 4), dtype=np.float64)
    sumsq = [0.0] * n_rows
    for a in range(0, longest, piece):
        real = min(piece, longest - a)
        hops = -(-real // hop)
        depth = _choose_depth(plan, n_rows, hops * hop)
        prod = plan.products[depth]
        width = -(-(hops * hop) // prod) * prod  # whole hops, whole top-level steps
        chunks = width // m
        z = _Chunks(rows, a, real, width, m)
        sumsq = [s + t for s, t in zip(sumsq, z.sumsq)]
        u = _buffer("u", (n_rows, chunks, 4), np.float64)
        np.copyto(u, z.product(plan.end, 0, n_rows, 0, chunks, "u32"))
        states, s_end = _step_states(plan, u, state, 0, depth)
        if a + real < longest:  # carry the state at the piece end (a chunk boundary)
            # a copy: ``states`` is a scratch buffer the next piece overwrites
            state = states[:, real // m].copy() if real // m < chunks else s_end
        start = _buffer("start", (n_rows * chunks, 4))
        np.copyto(start, states.reshape(n_rows * chunks, 4))
        # Outputs in cache-sized tiles of whole rows (or of whole hops of one row).
        k0 = a // hop
        if hop % m == 0:
            step = max(1, _TILE_SAMPLES // width)  # rows per tile
            cols = width if step > 1 else max(hop, _TILE_SAMPLES // hop * hop)
            for r0 in range(0, n_rows, step):
                r1 = min(n_rows, r0 + step)
                for c0 in range(0, hops * hop, cols):
                    c1 = min(hops * hop, c0 + cols)
                    lo, hi = c0 // m, c1 // m
                    span = (r1 - r0, c1 - c0)
                    y = z.product(plan.response, r0, r1, lo, hi, "y")
                    _add_product(y, start.reshape(n_rows, chunks, 4)[r0:r1, lo:hi], plan.free)
                    y = y.reshape(span)
                    for r in range(r0, r1):  # drop the filter's ringing after a row's end
                        end = lengths[r] - a - c0
                        if end < span[1]:
                            y[r - r0, max(end, 0) :] = 0.0
                    blocks = y.reshape(span[0], span[1] // hop, hop)
                    # vecdot: a dot product per hop, measured 3x faster than the einsum
                    energies[r0:r1, k0 + c0 // hop : k0 + c1 // hop] = np.vecdot(blocks, blocks)
        else:
            y = z.product(plan.response, 0, n_rows, 0, chunks, "y")
            _add_product(y, start.reshape(n_rows, chunks, 4), plan.free)
            y = y.reshape(n_rows, width)
            for r in range(n_rows):
                end = lengths[r] - a
                if end < width:
                    y[r, max(end, 0) :] = 0.0
            sq = np.square(y[:, : hops * hop], dtype=np.float64)
            energies[:, k0 : k0 + hops] = np.add.reduceat(
                sq, np.arange(0, hops * hop, hop), axis=1
            )
    return [energies[r, : -(-n // hop)] for r, n in enumerate(lengths)], sumsq



# --------------------------------------------------------------------------------------------
# Validation, peaks, gating
# --------------------------------------------------------------------------------------------


@dataclass
class _Clip:
    audio: np.ndarray  # (frames, channels), float
    power: float  # mean square over all samples and channels


def _validate(audio: object, power: bool = True) -> _Clip:
    """Check the array; with ``power=False`` leave the value checks (NaN/inf, via the sum of
    squares) to the filter pass, which computes that sum anyway (``_Clip.power`` is NaN then)."""
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
    if not power:
        return _Clip(a, math.nan)
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


def _hop_matrix(series: list[np.ndarray]) -> np.ndarray:
    if len(series) == 1:
        return series[0][None, :]
    out = np.zeros((len(series), max(s.shape[0] for s in series)), dtype=np.float64)
    for i, s in enumerate(series):
        out[i, : s.shape[0]] = s
    return out


def _integrated(
    hops: np.ndarray, frames: np.ndarray, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LUFS or NaN when fully gated, short mask, gated mask) from weighted hop energies.

    Block j (400 ms) is hops j..j+3; only blocks made of whole hops count (BS.1770: blocks
    within the signal). Vectorised over clips with masks; no loop over blocks.
    """
    full = frames // hop
    short = full < _BLOCK_HOPS
    k = hops.shape[1] - _BLOCK_HOPS + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        # Shorter than one block: the whole clip is one block (its own mean square).
        whole = _LOUDNESS_OFFSET + 10.0 * np.log10(hops.sum(axis=1) / frames)
        if k > 0:
            z = hops[:, :k] + hops[:, 1 : k + 1]
            z += hops[:, 2 : k + 2]
            z += hops[:, 3 : k + 3]
            z *= 1.0 / (_BLOCK_HOPS * hop)
            level = _LOUDNESS_OFFSET + 10.0 * np.log10(z)
            absolute = (level > ABSOLUTE_GATE_LUFS) & (np.arange(k) < (full - 3)[:, None])
            count = absolute.sum(axis=1)
            relative = _LOUDNESS_OFFSET + 10.0 * np.log10(
                np.where(absolute, z, 0.0).sum(axis=1) / count
            )
            kept = absolute & (level > (relative + RELATIVE_GATE_LU)[:, None])
            gated_mean = np.where(kept, z, 0.0).sum(axis=1) / kept.sum(axis=1)
            blocks = _LOUDNESS_OFFSET + 10.0 * np.log10(gated_mean)
        else:
            count = np.zeros(hops.shape[0], dtype=np.int64)
            blocks = np.full(hops.shape[0], np.nan)
    lufs = np.where(short, whole, blocks)
    gated = np.where(short, ~(whole > ABSOLUTE_GATE_LUFS), count == 0)
    return lufs, short, gated


def _loudness_range(hops: np.ndarray, frames: np.ndarray, hop: int) -> np.ndarray:
    """EBU Tech 3342 LRA from weighted hop energies (3 s blocks = 30 hops, every hop)."""
    full = frames // hop
    if hops.shape[1] < _LRA_BLOCK_HOPS:
        return np.zeros(hops.shape[0])
    z = np.lib.stride_tricks.sliding_window_view(hops, _LRA_BLOCK_HOPS, axis=1).sum(axis=2)
    z /= _LRA_BLOCK_HOPS * hop
    valid = np.arange(z.shape[1])[None, :] < (full - _LRA_BLOCK_HOPS + 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        level = _LOUDNESS_OFFSET + 10.0 * np.log10(z)
        absolute = valid & (level > ABSOLUTE_GATE_LUFS)
        relative = _LOUDNESS_OFFSET + 10.0 * np.log10(
            np.where(absolute, z, 0.0).sum(axis=1) / absolute.sum(axis=1)
        )
        kept = absolute & (level > (relative + LRA_RELATIVE_GATE_LU)[:, None])
        level = np.where(kept, level, np.inf)
        level.sort(axis=1)
        n = kept.sum(axis=1)
        last = np.maximum(n - 1, 0)
        top = level.shape[1] - 1
        lo = np.minimum((last * LRA_LOW_PERCENTILE + 0.5).astype(np.int64), top)
        hi = np.minimum((last * LRA_HIGH_PERCENTILE + 0.5).astype(np.int64), top)
        rows = np.arange(hops.shape[0])
        lra = level[rows, hi] - level[rows, lo]  # inf - inf where nothing survived: 0.0 below
    return np.where(n > 0, lra, 0.0)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: list[tuple[Any, int]] = []
_blas_libs: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception as exc:  # noqa: BLE001 - optional: never fail a measurement on it
            logger.debug("cannot control BLAS threads: %s", exc)
            _blas_libs = []
    return _blas_libs


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Keep BLAS on one thread while measuring (reference-counted across Python threads).

    The matrix products here are small and cache-sized; a multi-threaded BLAS only adds
    synchronisation, and on a busy machine it was measured 10-15x slower (threads waiting for
    descheduled siblings). Uses threadpoolctl when it is installed, else does nothing.
    """
    global _blas_users
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved.clear()
            for lib in _blas_controllers():
                threads = lib.get_num_threads()
                if threads != 1:
                    _blas_saved.append((lib, threads))
                    lib.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for lib, threads in _blas_saved:
                    lib.set_num_threads(threads)
                _blas_saved.clear()


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
) -> list[Loudness | None]:
    """Results of validated clips; a clip validated with ``power=False`` whose samples turn out
    not to be finite gets ``None`` (the caller validates it fully for the reason)."""
    # Filter every weighted channel of every clip in one batch (LFE is never filtered).
    rows: list[np.ndarray] = []
    owners: list[tuple[int, float]] = []
    for g, clip in enumerate(good):
        for ch, w in enumerate(channel_weights(clip.audio.shape[1])):
            if w > 0.0:
                rows.append(clip.audio[:, ch])
                owners.append((g, float(w)))
    energies, row_sumsq = _hop_energies(rows, plan)
    totals = [0.0] * len(good)
    for (g, _), s in zip(owners, row_sumsq):
        totals[g] += s
    for g, clip in enumerate(good):
        if math.isnan(clip.power):  # deferred: channels not filtered (LFE) still count for RMS
            for ch, w in enumerate(channel_weights(clip.audio.shape[1])):
                if w == 0.0:
                    column = clip.audio[:, ch]
                    totals[g] += float(np.dot(column, column))
            clip.power = totals[g] / clip.audio.size
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
    out: list[Loudness | None] = []
    for g, clip in enumerate(good):
        if not math.isfinite(clip.power):
            out.append(None)
            continue
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
            good.append(_validate(audio, power=False))
            where.append(i)
        except LoudnessError as exc:
            logger.debug("clip %d rejected: %s", i, exc)
            results[i] = _rejected(str(exc), loudness_range, true_peak)
    if good:
        with _single_threaded_blas():
            measured = _measure_valid(good, plan, loudness_range, true_peak)
        for i, result in zip(where, measured):
            if result is None:  # NaN/inf samples, or values too large for float32 sums
                try:
                    clip = _validate(clips[i])  # raises with the reason, or copes (float64)
                    with _single_threaded_blas():
                        result = _measure_valid([clip], plan, loudness_range, true_peak)[0]
                except LoudnessError as exc:
                    logger.debug("clip %d rejected: %s", i, exc)
                    result = _rejected(str(exc), loudness_range, true_peak)
                if result is None:
                    result = _rejected("audio sample values are too large to measure", loudness_range, true_peak)
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
    clip = _validate(audio)
    with _single_threaded_blas():
        return _measure_valid([clip], plan, loudness_range, true_peak)[0]
