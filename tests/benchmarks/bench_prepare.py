#!/usr/bin/env python3
"""Benchmark the prepare stage's throughput against the straightforward approach, in one process.

Not a test: run it by hand on an otherwise idle machine::

    python tests/benchmarks/bench_prepare.py                 # the whole bundled corpus (2,348 clips)
    python tests/benchmarks/bench_prepare.py --clips 500 --repeats 2

Both sides read the same clips (the bundled corpus, 16 kHz Ogg/Opus), decode them, make them
16 kHz mono and compute RMS dBFS and integrated loudness:

* **baseline** — what the seed does: a ``datasets.Dataset`` of the records, ``.map`` with one
  ``pyloudnorm.Meter(rate).integrated_loudness`` call per file (soundfile decoding, numpy RMS);
* **project** — ``steps.prepare.prepare`` itself (robust decoding, checks, batched BS.1770 loudness
  with ``steps.common.loudness.measure_batch``, writing the manifests and audio).

It prints audio-seconds per wall-second for each, and the ratio. Single process; BLAS threads
pinned to 1 on both sides, so the comparison is per core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("SPEECHOPS_PROGRESS", "0")

import numpy as np  # noqa: E402

CORPUS = REPO_ROOT / "steps" / "corpus" / "sample"


def subset_manifest(folder: Path, clips: int | None) -> tuple[Path, float]:
    rows = [json.loads(line) for line in (CORPUS / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = rows[:clips] if clips else rows
    (folder / "audio").mkdir()
    for row in rows:  # a copy: prepare refuses audio that resolves outside the manifest's folder
        shutil.copyfile(CORPUS / row["audio"], folder / row["audio"])
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest, sum(r["duration"] for r in rows)


def baseline(manifest: Path) -> float:
    """datasets.map + one pyloudnorm Meter call per file; returns wall seconds."""
    import pyloudnorm
    import soundfile as sf
    from datasets import Dataset, disable_progress_bars
    from scipy.signal import resample_poly

    disable_progress_bars()
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    ds = Dataset.from_list([{"id": r["id"], "audio": str(manifest.parent / r["audio"])} for r in rows])

    def label(example: dict) -> dict:
        audio, rate = sf.read(example["audio"], dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != 16000:
            audio = resample_poly(audio, 16000, rate)
        rms = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lufs = pyloudnorm.Meter(16000).integrated_loudness(audio.astype(np.float64))
        return {"rms_dbfs": float(np.clip(rms, -60, 0)), "lufs": float(np.clip(lufs, -70, 0))}

    started = time.perf_counter()
    ds.map(label, load_from_cache_file=False, keep_in_memory=True)
    return time.perf_counter() - started


def project(manifest: Path, workdir: Path) -> float:
    from steps.prepare import PrepareParams, prepare

    out = workdir / f"out-{time.perf_counter_ns()}"
    started = time.perf_counter()
    prepare(PrepareParams(source=str(manifest), max_duration=30.0), None, out / "data", out / "rejects")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=None, help="use the first N corpus clips (default: all)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N rounds (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manifest, seconds = subset_manifest(workdir, args.clips)
        clips = len(manifest.read_text().splitlines())
        times = {"baseline": [], "project": []}
        for _ in range(max(1, args.repeats)):  # interleaved rounds, best of each
            times["baseline"].append(baseline(manifest))
            times["project"].append(project(manifest, workdir))
    base, ours = min(times["baseline"]), min(times["project"])
    print(f"prepare throughput on {clips} bundled clips ({seconds / 60:.1f} min of audio), one process, 1 BLAS thread")
    print(f"{'approach':<52} {'wall s':>8} {'audio-s / wall-s':>18}")
    print(f"{'baseline: datasets.map + pyloudnorm per file':<52} {base:>8.2f} {seconds / base:>18.1f}")
    print(f"{'project: steps.prepare (robust decode + batched BS.1770)':<52} {ours:>8.2f} {seconds / ours:>18.1f}")
    print(f"ratio (project / baseline throughput): {base / ours:.2f}x")


if __name__ == "__main__":
    main()
