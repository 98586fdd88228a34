"""Conformance and edge-case tests for ``steps.common.loudness``.

Signals are synthesised as the standards describe them: EBU Tech 3341 (integrated loudness) and
Tech 3342 (loudness range) test sequences as 1 kHz sine tones, BS.2217-style tones across
frequencies and sample rates compared with the K-weighting response computed analytically from
the analog prototype, and agreement with pyloudnorm where pyloudnorm is well defined.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from steps.common import loudness as L

# BS.1770-4 Tables 1 and 2: the normative K-weighting at 48 kHz.
BS1770_48K = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241,
         0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)

# Analog prototype (libebur128's fit to the tables): shelf and high pass, corners in Hz.
SHELF_F0, SHELF_G = 1681.974450955533, 3.999843853973347
SHELF_Q, SHELF_VB_EXP = 0.7071752369554196, 0.4996667741545416
HP_F0, HP_Q = 38.13547087602444, 0.5003270373238773


def _hp_gain() -> float:
    """Pass-band gain of the high-pass prototype, so its 48 kHz image has numerator [1, -2, 1]."""
    k = math.tan(math.pi * HP_F0 / 48000)
    return 1.0 + k / HP_Q + k * k


def prototype_gain_db(freq: float, sample_rate: int | None) -> float:
    """|H| in dB of the analog prototype; with a rate, at the bilinear-warped frequency."""

    def omega(f0: float) -> float:  # frequency in units of the stage's corner
        if sample_rate is None:
            return freq / f0
        return math.tan(math.pi * freq / sample_rate) / math.tan(math.pi * f0 / sample_rate)

    vh = 10 ** (SHELF_G / 20)
    vb = vh**SHELF_VB_EXP
    s = 1j * omega(SHELF_F0)
    shelf = (vh * s * s + vb / SHELF_Q * s + 1) / (s * s + s / SHELF_Q + 1)
    s = 1j * omega(HP_F0)
    highpass = _hp_gain() * s * s / (s * s + s / HP_Q + 1)
    return 20 * math.log10(abs(shelf * highpass))


def sine(freq: float, dbfs: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """Sine whose peak is ``dbfs`` (Tech 3341 levels are peak levels of the sine)."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float64)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def sequence(
    levels_secs: list[tuple[float, float]], rate: int = 48000, channels: int = 2
) -> np.ndarray:
    """1 kHz tone through consecutive (dBFS, seconds) segments, phase continuous."""
    gains = np.concatenate(
        [np.full(int(round(s * rate)), 10 ** (db / 20)) for db, s in levels_secs]
    )
    period = rate // 1000  # 1 kHz divides every rate used here: tile one exact period
    x = gains * np.resize(np.sin(2 * np.pi * np.arange(period) / period), gains.size)
    return np.repeat(x[:, None], channels, axis=1)


def reference_lufs(x: np.ndarray, rate: int) -> float:
    """Straightforward BS.1770 (sosfilt and a loop over blocks) with this module's filter."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = signal.sosfilt(L.k_weighting_sos(rate), x, axis=0)
    w = L.channel_weights(x.shape[1])
    hop = (rate + 5) // 10
    blocks = x.shape[0] // hop - 3
    if blocks < 1:
        z = np.array([float((np.mean(y**2, axis=0) * w).sum())])
    else:
        z = np.array(
            [
                float((np.mean(y[j * hop : j * hop + 4 * hop] ** 2, axis=0) * w).sum())
                for j in range(blocks)
            ]
        )
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(z)
    keep = lk > -70
    if not keep.any():
        return L.LUFS_FLOOR
    gate = -0.691 + 10 * np.log10(z[keep].mean()) - 10
    keep &= lk > gate
    return float(-0.691 + 10 * np.log10(z[keep].mean()))


def speech_like(rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope, pauses and a random spectral tilt."""
    n = int(round(seconds * rate))
    noise = rng.standard_normal(n)
    b, a = signal.butter(2, rng.uniform(800, 3500) / (rate / 2))
    noise = signal.lfilter(b, a, noise) + 0.3 * noise
    t = np.arange(n) / rate
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
    env *= np.repeat(rng.random(int(np.ceil(seconds * 2))) > 0.25, rate // 2)[:n]
    x = noise * env
    gain = 10 ** (rng.uniform(-40, -12) / 20) / (np.sqrt(np.mean(x**2)) + 1e-12)
    return (x * gain).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# K-weighting filter
# ----------------------------------------------------------------------------------------------


def test_k_weighting_at_48k_is_the_bs1770_table() -> None:
    np.testing.assert_allclose(L.k_weighting_sos(48000), BS1770_48K, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 96000])
def test_k_weighting_is_derived_per_rate(rate: int) -> None:
    sos = L.k_weighting_sos(rate)
    assert sos.shape == (2, 6)
    assert not np.allclose(sos, BS1770_48K)  # not the 48 kHz table reused
    assert np.all(np.abs(np.roots(np.r_[1.0, sos[0, 4:]])) < 1)  # stable
    assert np.all(np.abs(np.roots(np.r_[1.0, sos[1, 4:]])) < 1)
    # Its response is the analog prototype's at the bilinear-warped frequency (exactly).
    freqs = np.array([50.0, 200.0, 997.0, 3000.0, 0.4 * rate])
    _, h = signal.sosfreqz(sos, worN=freqs, fs=rate)
    expected = [prototype_gain_db(f, rate) for f in freqs]
    np.testing.assert_allclose(20 * np.log10(np.abs(h)), expected, atol=1e-9)


@pytest.mark.parametrize("bad", [0, 3000, 16000.5, "16k", None])
def test_bad_sample_rate_is_rejected(bad: object) -> None:
    with pytest.raises(L.LoudnessError):
        L.k_weighting_sos(bad)  # type: ignore[arg-type]
    with pytest.raises(L.LoudnessError):
        L.measure(np.zeros(1000), bad)  # type: ignore[arg-type]


TONE_CASES = [
    (rate, f)
    for rate in (16000, 44100, 48000)
    for f in (25, 100, 500, 1000, 2000, 5000, 10000)
    if f < 0.45 * rate
]


@pytest.mark.parametrize(("rate", "freq"), TONE_CASES)
def test_tone_loudness_follows_k_weighting_response(rate: int, freq: float) -> None:
    """BS.2217-style: a steady tone reads -0.691 + 10 log10(A^2/2 * |H(f)|^2)."""
    amplitude_db = -12.0
    measured = L.measure(sine(freq, amplitude_db, 3.0, rate), rate).lufs
    mean_square_db = amplitude_db - 10 * math.log10(2)
    # Exact for the digital filter: the prototype at the warped frequency.
    expected = -0.691 + mean_square_db + prototype_gain_db(freq, rate)
    assert measured == pytest.approx(expected, abs=0.02)
    # Against the BS.1770 48 kHz reference response: exact at 48 kHz, warping elsewhere.
    _, h48 = signal.sosfreqz(BS1770_48K, worN=[freq], fs=48000)
    reference = -0.691 + mean_square_db + 20 * math.log10(abs(h48[0]))
    tolerance = {16000: 0.08, 44100: 0.02, 48000: 0.02}[rate]
    assert measured == pytest.approx(reference, abs=tolerance)
    # And against the unwarped analog prototype at 44.1/48 kHz.
    if rate != 16000:
        assert measured == pytest.approx(
            -0.691 + mean_square_db + prototype_gain_db(freq, None), abs=0.03
        )


def test_full_scale_1khz_sine_mono_is_minus_3_lufs() -> None:
    assert L.measure(sine(1000, 0.0, 5.0, 48000), 48000).lufs == pytest.approx(-3.01, abs=0.02)


# ----------------------------------------------------------------------------------------------
# EBU Tech 3341 (integrated loudness) and Tech 3342 (loudness range)
# ----------------------------------------------------------------------------------------------

TECH_3341 = {
    "case1 -23 dBFS 20 s": ([(-23, 20)], -23.0),
    "case2 -33 dBFS 20 s": ([(-33, 20)], -33.0),
    "case3 -36/-23/-36": ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    "case4 -72/-36/-23/-36/-72": ([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], -23.0),
    "case5 -26/-20/-26": ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}


@pytest.mark.parametrize("rate", [48000, 16000])
@pytest.mark.parametrize("name", list(TECH_3341))
def test_tech3341_stereo_sequences(name: str, rate: int) -> None:
    segments, expected = TECH_3341[name]
    assert L.measure(sequence(segments, rate), rate).lufs == pytest.approx(expected, abs=0.1)


def test_tech3341_case6_five_channels() -> None:
    """Case 6: 5.0 channels 20 s, L and R at -28 dBFS, C at -24, Ls and Rs at -30 -> -23.0 LUFS."""
    front = np.concatenate(
        [sequence([(-28.0, 20)], 48000, channels=2), sequence([(-24.0, 20)], 48000, channels=1)],
        axis=1,
    )
    surround = sequence([(-30.0, 20)], 48000, channels=2)
    audio = np.concatenate([front, surround], axis=1)
    assert L.measure(audio, 48000).lufs == pytest.approx(-23.0, abs=0.1)
    # As 5.1 (L, R, C, LFE, Ls, Rs) with a loud LFE: the LFE is excluded.
    lfe = sequence([(-6.0, 20)], 48000, channels=1)
    audio51 = np.concatenate([front, lfe, surround], axis=1)
    assert L.measure(audio51, 48000).lufs == pytest.approx(-23.0, abs=0.1)


TECH_3342 = {
    "case1 -20/-30": ([(-20, 20), (-30, 20)], 10.0),
    "case2 -20/-15": ([(-20, 20), (-15, 20)], 5.0),
    "case3 -40/-20": ([(-40, 20), (-20, 20)], 20.0),
    "case4 -50/-35/-20/-35/-50": ([(-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)], 15.0),
}


@pytest.mark.parametrize("name", list(TECH_3342))
def test_tech3342_loudness_range(name: str) -> None:
    segments, expected = TECH_3342[name]
    result = L.measure(sequence(segments, 16000), 16000, loudness_range=True)
    assert result.loudness_range == pytest.approx(expected, abs=1.0)
    # The test tones are clean steps: this implementation lands much closer than the tolerance.
    assert result.loudness_range == pytest.approx(expected, abs=0.2)


def test_loudness_range_edge_values() -> None:
    assert L.measure(sine(1000, -20, 20, 16000), 16000).loudness_range is None
    steady = L.measure(sine(1000, -20, 20, 16000), 16000, loudness_range=True)
    assert steady.loudness_range == pytest.approx(0.0, abs=0.05)
    short = L.measure(sine(1000, -20, 2.0, 16000), 16000, loudness_range=True)
    assert short.loudness_range == 0.0  # no 3 s block
    silent = L.measure(np.zeros(16000 * 5), 16000, loudness_range=True)
    assert silent.loudness_range == 0.0


# ----------------------------------------------------------------------------------------------
# Agreement with pyloudnorm and with a straightforward reference
# ----------------------------------------------------------------------------------------------


def test_agrees_with_pyloudnorm_on_speech_like_clips() -> None:
    pyln = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(1770)
    clips = [speech_like(rng, rng.integers(10, 80) / 10) for _ in range(12)]
    ours = L.measure_batch(clips, 16000)
    meter = pyln.Meter(16000)
    for clip, result in zip(clips, ours):
        theirs = meter.integrated_loudness(clip.astype(np.float64))
        assert result.flags == ()
        assert result.lufs == pytest.approx(theirs, abs=0.1)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 44100, 48000])
def test_block_state_engine_matches_direct_filtering(
    rate: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched engine equals sosfilt + per-block loop, across pieces and mixed lengths."""
    monkeypatch.setattr(L, "_PIECE_SAMPLES", 1 << 14)  # force long rows into several pieces
    monkeypatch.setattr(L, "_GROUP_SAMPLES", 1 << 15)
    rng = np.random.default_rng(rate)
    clips: list[np.ndarray] = []
    for seconds in (0.05, 0.39, 0.4, 1.23, 3.0, 7.7):
        n = int(seconds * rate)
        ch = int(rng.choice([1, 2]))
        x = rng.standard_normal((n, ch)) * 10 ** (rng.uniform(-50, -5) / 20)
        x *= np.abs(np.sin(np.arange(n) / rate * 2.1))[:, None]
        x += 0.05  # a DC offset the high pass must remove
        clips.append((x[:, 0] if ch == 1 else x).astype(np.float32))
    for clip, result in zip(clips, L.measure_batch(clips, rate)):
        assert result.lufs == pytest.approx(reference_lufs(clip, rate), abs=1e-3)


# ----------------------------------------------------------------------------------------------
# Edge cases
# ----------------------------------------------------------------------------------------------


def test_silence_reads_the_floors() -> None:
    result = L.measure(np.zeros(16000 * 2, dtype=np.float32), 16000, true_peak=True)
    assert result == L.Loudness(
        rms_dbfs=L.RMS_FLOOR_DBFS,
        lufs=L.LUFS_FLOOR,
        flags=("silent",),
        true_peak_dbtp=L.RMS_FLOOR_DBFS,
    )


def test_fully_gated_signal_reads_the_floor_with_a_flag() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000 * 3) * 10 ** (-85 / 20)
    result = L.measure(x, 16000)
    assert result.lufs == L.LUFS_FLOOR
    assert result.flags == ("gated",)
    assert result.rms_dbfs == pytest.approx(-85, abs=0.2)


def test_short_clip_is_measured_as_one_block() -> None:
    x = sine(1000, -20, 0.2, 16000)
    result = L.measure(x, 16000)
    assert result.flags == ("short",)
    y = signal.sosfilt(L.k_weighting_sos(16000), x)
    assert result.lufs == pytest.approx(-0.691 + 10 * np.log10(np.mean(y**2)), abs=1e-3)
    tiny = L.measure(np.full(3, 0.5), 16000)  # three samples: defined, not an error
    assert "short" in tiny.flags and math.isfinite(tiny.lufs)
    assert L.measure(np.zeros(100), 16000).flags == ("short", "silent")


def test_quiet_signal_at_low_rates_scales_exactly() -> None:
    """pyloudnorm #42: quiet input at a low rate gave absurd values; loudness must follow gain."""
    rng = np.random.default_rng(42)
    for rate in (8000, 16000):
        x = speech_like(rng, 4.0, rate=rate).astype(np.float64)
        loud = L.measure(x, rate).lufs
        for gain_db in (-20.0, -40.0):
            quiet = L.measure(x * 10 ** (gain_db / 20), rate).lufs
            if loud + gain_db > -60:
                assert quiet == pytest.approx(loud + gain_db, abs=1e-3)
            assert quiet >= L.LUFS_FLOOR


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.array([0.1, np.nan, 0.2] * 1000), "NaN"),
        (np.array([0.1, np.inf, 0.2] * 1000, dtype=np.float32), "infinite"),
        (np.zeros(0), "empty"),
        (np.zeros((100, 0)), "empty"),
        (np.zeros((2, 16000)), "transposed"),
        (np.zeros((10, 2, 2)), "shape"),
        (np.zeros(1000, dtype=np.int16), "floating point"),
    ],
)
def test_bad_audio_raises_loudness_error(audio: np.ndarray, message: str) -> None:
    with pytest.raises(L.LoudnessError, match=message):
        L.measure(audio, 16000)
    assert issubclass(L.LoudnessError, ValueError)


def test_rms_dbfs() -> None:
    assert L.rms_dbfs(np.ones(1000)) == pytest.approx(0.0)  # full-scale square/DC
    assert L.rms_dbfs(sine(1000, 0, 1, 16000)) == pytest.approx(-3.0103, abs=1e-3)
    assert L.rms_dbfs(np.full((100, 2), 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert L.rms_dbfs(np.zeros(10)) == L.RMS_FLOOR_DBFS
    with pytest.raises(L.LoudnessError):
        L.rms_dbfs(np.array([np.nan]))


def test_stereo_follows_channel_weights() -> None:
    mono = sine(1000, -20, 5, 16000)
    one = L.measure(mono, 16000).lufs
    both = L.measure(np.stack([mono, mono], axis=1), 16000).lufs
    assert both == pytest.approx(one + 10 * math.log10(2), abs=1e-3)
    left_only = L.measure(np.stack([mono, np.zeros_like(mono)], axis=1), 16000).lufs
    assert left_only == pytest.approx(one, abs=1e-3)
    # Rms over all samples of all channels.
    half = L.measure(np.stack([mono, np.zeros_like(mono)], axis=1), 16000)
    assert half.rms_dbfs == pytest.approx(-20 - 10 * math.log10(2) - 10 * math.log10(2), abs=1e-3)


def test_channel_weights() -> None:
    assert list(L.channel_weights(1)) == [1.0]
    assert list(L.channel_weights(2)) == [1.0, 1.0]
    assert list(L.channel_weights(5)) == [1.0, 1.0, 1.0, 1.41, 1.41]
    assert list(L.channel_weights(6)) == [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]
    mono = sine(1000, -20, 5, 48000)
    silent = np.zeros_like(mono)
    surround = L.measure(np.stack([silent, silent, silent, silent, mono], axis=1), 48000).lufs
    front = L.measure(np.stack([mono, silent, silent, silent, silent], axis=1), 48000).lufs
    assert surround - front == pytest.approx(10 * math.log10(1.41), abs=1e-3)
    lfe_only = L.measure(np.stack([silent, silent, silent, mono, silent, silent], axis=1), 48000)
    assert lfe_only.lufs == L.LUFS_FLOOR and lfe_only.flags == ("gated",)


def test_batch_with_bad_clips_measures_the_others() -> None:
    rng = np.random.default_rng(3)
    good = [speech_like(rng, s) for s in (1.0, 5.0, 0.3)]
    stereo = np.stack([good[0], good[0] * 0.5], axis=1)
    bad = np.array([0.0, np.nan, 0.0], dtype=np.float32)
    clips = [good[0], bad, good[1], np.zeros(0), stereo, good[2]]
    results = L.measure_batch(clips, 16000, loudness_range=True, true_peak=True)
    assert len(results) == len(clips)
    for i in (1, 3):
        r = results[i]
        assert r.error and math.isnan(r.lufs) and math.isnan(r.rms_dbfs)
        assert r.loudness_range is not None and math.isnan(r.loudness_range)
        assert r.true_peak_dbtp is not None and math.isnan(r.true_peak_dbtp)
        assert r.flags == ("rejected",)
    assert "NaN" in results[1].error  # type: ignore[operator]
    for i in (0, 2, 4, 5):
        single = L.measure(clips[i], 16000, loudness_range=True, true_peak=True)
        assert results[i].error is None
        assert results[i].lufs == pytest.approx(single.lufs, abs=1e-6)
        assert results[i].true_peak_dbtp == pytest.approx(single.true_peak_dbtp)
    assert results[5].flags == ("short",)
    assert L.measure_batch([], 16000) == []


def test_float_dtypes_agree() -> None:
    x = sine(440, -18, 2.0, 16000)
    a = L.measure(x.astype(np.float64), 16000)
    b = L.measure(x.astype(np.float32), 16000)
    assert a.lufs == pytest.approx(b.lufs, abs=1e-4)
    assert a.rms_dbfs == pytest.approx(b.rms_dbfs, abs=1e-4)


# ----------------------------------------------------------------------------------------------
# True peak
# ----------------------------------------------------------------------------------------------


def test_true_peak_interpolator_is_the_annex_2_filter() -> None:
    phases = L._TRUE_PEAK_PHASES
    assert phases.shape == (4, 12)
    np.testing.assert_array_equal(phases[3], phases[0][::-1])
    np.testing.assert_array_equal(phases[2], phases[1][::-1])
    dc_gain_db = 20 * np.log10(phases.sum(axis=1))  # the Annex's example filter: +0.01/-0.24 dB
    np.testing.assert_allclose(dc_gain_db, [0.0138, -0.2375, -0.2375, 0.0138], atol=1e-3)


def test_true_peak_finds_inter_sample_peaks() -> None:
    rate = 48000
    n = np.arange(rate)
    # fs/4 sine at 45 degrees: every sample is at 0.707 of the peak, the peaks fall between.
    x = 0.5 * np.sin(2 * np.pi * n / 4 + np.pi / 4)
    result = L.measure(x, rate, true_peak=True)
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-9.03, abs=0.01)
    assert result.true_peak_dbtp == pytest.approx(20 * np.log10(0.5), abs=0.2)
    # A slow tone: the true peak is the sample peak.
    slow = sine(100, -6, 1.0, rate)
    assert L.measure(slow, rate, true_peak=True).true_peak_dbtp == pytest.approx(-6.0, abs=0.05)
    stereo = np.stack([slow * 0.5, slow], axis=1)
    assert L.measure(stereo, rate, true_peak=True).true_peak_dbtp == pytest.approx(-6.0, abs=0.05)


def test_blas_thread_setting_is_restored() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    L.measure_batch([sine(1000, -20, 1.0, 16000)] * 3, 16000)
    L.measure(sine(1000, -20, 1.0, 16000), 16000)
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert after == before
