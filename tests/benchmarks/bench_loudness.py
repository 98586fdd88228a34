#!/usr/bin/env python3
"""Benchmark ``steps.common.loudness`` against pyloudnorm on the same clips, in one process.

Not a test: run it by hand (single core, BLAS/OpenMP threads pinned to 1)::

    python tests/benchmarks/bench_loudness.py            # real corpus clips + synthetic lengths
    python tests/benchmarks/bench_loudness.py --clips 100 --repeats 3

For (a) up to ``--clips`` real clips of the bundled corpus (``steps/corpus/sample/manifest.jsonl``,
read with soundfile; synthetic speech-like clips when the corpus is absent, and the table says so)
and (b) synthetic speech-like clips of 1 s, 5 s, 30 s and 10 min at 16 kHz, it prints clips/s for
pyloudnorm (``Meter.integrated_loudness`` per clip), for this module's ``measure_batch`` (all the
clips in one call) and ``measure`` (one call per clip), the speed-ups, and the largest
disagreement with pyloudnorm in LU (over clips where pyloudnorm is defined: at least 0.4 s and not
fully gated). Timings are the best of ``--repeats`` interleaved rounds.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: single core, as the issue asks

import argparse
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from steps.common import loudness  # noqa: E402

RATE = 16000
CORPUS = REPO_ROOT / "steps" / "corpus" / "sample"
SYNTHETIC = [("1 s", 1.0, 200), ("5 s", 5.0, 100), ("30 s", 30.0, 16), ("10 min", 600.0, 2)]


def speech_like(rng: np.random.Generator, seconds: float, rate: int = RATE) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope, pauses, a random tilt and level (float32)."""
    n = max(1, int(round(seconds * rate)))
    noise = rng.standard_normal(n)
    b, a = signal.butter(2, rng.uniform(800, 3500) / (rate / 2))
    noise = signal.lfilter(b, a, noise) + 0.3 * noise
    t = np.arange(n) / rate
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
    env *= np.repeat(rng.random(int(np.ceil(seconds * 2)) + 1) > 0.25, rate // 2)[:n]
    x = noise * env
    level = 10 ** (rng.uniform(-40, -12) / 20) / (np.sqrt(np.mean(x**2)) + 1e-12)
    return (x * level).astype(np.float32)


def load_corpus(limit: int) -> tuple[list[np.ndarray], str]:
    import soundfile as sf

    manifest = CORPUS / "manifest.jsonl"
    clips: list[np.ndarray] = []
    skipped = 0
    with manifest.open(encoding="utf-8") as fh:
        for line in fh:
            if len(clips) >= limit:
                break
            try:
                rec = json.loads(line)
                data, rate = sf.read(CORPUS / rec["audio"], dtype="float32")
            except (ValueError, KeyError, RuntimeError, OSError, sf.LibsndfileError):
                skipped += 1  # a clip still being written, or a broken line
                continue
            if rate == RATE and data.ndim == 1 and data.size:
                clips.append(data)
            else:
                skipped += 1
    seconds = sum(c.shape[0] for c in clips) / RATE
    where = manifest.relative_to(REPO_ROOT)
    note = f"corpus: {len(clips)} real clips from {where} ({seconds:.0f} s)"
    return clips, note + (f", {skipped} unreadable skipped" if skipped else "")


def best_of(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each function over interleaved rounds (robust to a noisy machine)."""
    best = {k: math.inf for k in funcs}
    for _ in range(repeats):
        for name, fn in funcs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def run_set(
    label: str, clips: list[np.ndarray], repeats: int, pyln_cap_s: float
) -> dict[str, object]:
    import pyloudnorm

    meter = pyloudnorm.Meter(RATE)
    # pyloudnorm raises below one block: it is timed and compared on the clips it accepts.
    pyln_clips = [c for c in clips if c.shape[0] >= int(0.4 * RATE)]
    # Keep pyloudnorm's share of the run bounded: time it on a prefix when the set is long.
    total_s = sum(c.shape[0] for c in pyln_clips) / RATE
    take = len(pyln_clips)
    if total_s > pyln_cap_s:
        take = max(1, int(len(pyln_clips) * pyln_cap_s / total_s))
    pyln_subset = [c.astype(np.float64) for c in pyln_clips[:take]]

    def run_pyln() -> list[float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [meter.integrated_loudness(c) for c in pyln_subset]

    times = best_of(
        {
            "pyloudnorm": run_pyln,
            "batch": lambda: loudness.measure_batch(clips, RATE),
            "single": lambda: [loudness.measure(c, RATE) for c in clips],
        },
        repeats,
    )
    ours = loudness.measure_batch(pyln_clips, RATE)
    theirs = run_pyln() if take == len(pyln_clips) else None
    if theirs is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = [meter.integrated_loudness(c.astype(np.float64)) for c in pyln_clips]
    diffs = [
        abs(o.lufs - t)
        for o, t in zip(ours, theirs)
        if math.isfinite(t) and not o.flags and t > loudness.LUFS_FLOOR
    ]
    # pyloudnorm also counts a partial last block (scaled as a full one); on clips cut to whole
    # 100 ms hops both implementations see the same blocks and only the filters differ.
    trimmed = [c[: c.shape[0] // (RATE // 10) * (RATE // 10)] for c in pyln_clips]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_t = [meter.integrated_loudness(c.astype(np.float64)) for c in trimmed]
    diffs_t = [
        abs(o.lufs - t)
        for o, t in zip(loudness.measure_batch(trimmed, RATE), theirs_t)
        if math.isfinite(t) and not o.flags and t > loudness.LUFS_FLOOR
    ]
    pyln_cps = take / times["pyloudnorm"]
    batch_cps = len(clips) / times["batch"]
    single_cps = len(clips) / times["single"]
    return {
        "label": label,
        "clips": len(clips),
        "pyln_clips": take,
        "pyln": pyln_cps,
        "batch": batch_cps,
        "single": single_cps,
        "ratio_batch": batch_cps / pyln_cps,
        "ratio_single": single_cps / pyln_cps,
        "max_diff": max(diffs) if diffs else float("nan"),
        "max_diff_trimmed": max(diffs_t) if diffs_t else float("nan"),
        "compared": len(diffs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Loudness labels: this project's implementation vs pyloudnorm (clips/s).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clips", type=int, default=300, help="real corpus clips to use")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pyln-seconds",
        type=float,
        default=200.0,
        help="audio seconds per set that pyloudnorm is timed on (a prefix, to bound the run)",
    )
    parser.add_argument("--skip-long", action="store_true", help="leave out the 10 min clips")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    sets: list[tuple[str, list[np.ndarray]]] = []
    clips, note = load_corpus(args.clips) if (CORPUS / "manifest.jsonl").is_file() else ([], "")
    if clips:
        sets.append(("corpus (real)", clips))
    else:
        lengths = rng.uniform(1.0, 8.0, size=args.clips)
        sets.append(("speech-like (synthetic)", [speech_like(rng, s) for s in lengths]))
        note = (f"corpus: no readable clips in {CORPUS.relative_to(REPO_ROOT)} -- "
                "(a) uses synthetic speech-like clips instead")
    for label, seconds, count in SYNTHETIC:
        if args.skip_long and seconds > 60:
            continue
        sets.append((f"synthetic {label}", [speech_like(rng, seconds) for _ in range(count)]))

    from importlib.metadata import version

    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {version('scipy')}, "
          f"pyloudnorm {version('pyloudnorm')}, {platform.machine()} "
          f"({os.cpu_count()} cpus; BLAS/OpenMP threads pinned to 1)")
    print(note)
    loudness.measure_batch([np.zeros(RATE, dtype=np.float32)], RATE)  # build the filter plan
    rows = [run_set(label, clips, args.repeats, args.pyln_seconds) for label, clips in sets]

    header = (f"{'set':<24} {'clips':>6} {'pyloudnorm/s':>13} {'batch/s':>10} {'x':>6} "
              f"{'single/s':>10} {'x':>6} {'max |dLU|':>10} {'(whole hops)':>12}")
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['label']:<24} {r['clips']:>6} {r['pyln']:>13.1f} {r['batch']:>10.1f} "
              f"{r['ratio_batch']:>6.1f} {r['single']:>10.1f} {r['ratio_single']:>6.1f} "
              f"{r['max_diff']:>10.3f} {r['max_diff_trimmed']:>12.3f}")
    print()
    print("clips/s: best of interleaved rounds; x: speed-up over pyloudnorm on the same clips;")
    print("batch = one measure_batch call for the set, single = one measure call per clip;")
    print("max |dLU|: largest |ours - pyloudnorm| over clips >= 0.4 s that neither gates out;")
    print("(whole hops): the same on clips cut to a whole number of 100 ms hops, where pyloudnorm")
    print("has no partial last block and only the K-weighting filters differ (<= 0.05 dB, 16 kHz).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
