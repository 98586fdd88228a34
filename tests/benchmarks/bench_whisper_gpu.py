#!/usr/bin/env python
"""GPU throughput of Whisper fine-tuning: the seed's recipe against ours, same model, same clips, same session.

whisper-small is built from its config (no weights needed: throughput does not depend on them) and
trained for a fixed number of optimizer steps on the bundled corpus's training clips:

* **seed**: every clip padded to Whisper's 30 s window, fp16 autocast with a gradient scaler,
  shuffled batches (seed 002's ``Seq2SeqTrainingArguments(fp16=True, per_device_train_batch_size=16)``);
* **ours**: the encoder window cut to the longest clip (``steps/models/whisper/window.py``), bf16
  autocast, length-grouped batches (less label padding).

Log-mel features are computed once before timing, on the GPU, as the seed's ``dataset.map`` does
before training. Timed: forward, backward and optimizer steps, after warm-up, with the device
synchronised. It prints samples/s, audio seconds per second, peak memory and the ratio.

Two steps, because the GPU machine has no audio decoder and no network::

    python tests/benchmarks/bench_whisper_gpu.py prepare --out .bench/whisper_gpu.npz   # here: decode + tokenize
    python tests/benchmarks/bench_whisper_gpu.py run --data .bench/whisper_gpu.npz      # where CUDA is
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

RATE = 16000
SMALL = dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
             decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=51865,
             num_mel_bins=80, max_source_positions=1500, max_target_positions=448)


def prepare(out: Path, clips: int) -> None:
    """Decode the corpus's training clips and tokenize their transcripts (the English tiny.en tokenizer)."""
    from transformers import AutoTokenizer

    from steps.common.audio import load_audio
    from steps.common.manifest import read_manifest, resolve_audio
    from steps.models.whisper.ct2 import bundled_whisper_tiny_en
    from steps.models.whisper.prompt import ENGLISH_ONLY, TranscriptLabels

    manifest = REPO / "steps/corpus/sample/manifest.jsonl"
    records = [r for r in read_manifest(manifest) if r.split == "train"][:clips]
    tokenizer = AutoTokenizer.from_pretrained(bundled_whisper_tiny_en())
    labels = TranscriptLabels(tokenizer, ENGLISH_ONLY)
    audio = [np.round(load_audio(resolve_audio(manifest, r.audio)) * 32767).astype(np.int16) for r in records]
    ids = [np.asarray(labels(r.text), dtype=np.int32) for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, audio=np.concatenate(audio), audio_len=np.array([len(a) for a in audio]),
             labels=np.concatenate(ids), labels_len=np.array([len(i) for i in ids]))
    seconds = sum(len(a) for a in audio) / RATE
    print(f"wrote {out}: {len(records)} clips, {seconds / 60:.1f} min of audio, "
          f"longest {max(len(a) for a in audio) / RATE:.2f} s, {out.stat().st_size / 2**20:.1f} MiB")


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lengths)[:-1])


TINY = dict(SMALL, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128)


def run(data: Path, steps: int, warmup: int, batch: int, seed_window: int, smoke: bool = False) -> dict:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from steps.models.whisper.window import shrink_encoder_window

    if not torch.cuda.is_available() and not smoke:
        raise SystemExit("no CUDA device: this benchmark runs only where one is present (--smoke checks it on CPU)")
    kind = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    loaded = np.load(data)
    audio = [a.astype(np.float32) / 32767 for a in _split(loaded["audio"], loaded["audio_len"])]
    labels = _split(loaded["labels"], loaded["labels_len"])
    durations = np.array([len(a) / RATE for a in audio])
    window = int(math.ceil(durations.max()))
    window += window % 2  # whole encoder positions after the stride-2 convolution
    device = torch.device(kind)
    results = {}
    for recipe in ("seed", "ours"):
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = WhisperForConditionalGeneration(WhisperConfig(**(TINY if smoke else SMALL)))
        extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=seed_window)
        if recipe == "ours":
            model, extractor = shrink_encoder_window(model, extractor, window)
        model.to(device).train()
        dtype = torch.float16 if recipe == "seed" else torch.bfloat16
        feats = [extractor(a, sampling_rate=RATE, return_tensors="pt", device=kind).input_features[0].to(device)
                 for a in audio]
        if recipe == "seed":
            order = rng.permutation(len(audio))
        else:  # length-grouped: sort by duration inside megabatches of 50 batches, shuffle the batches
            order = rng.permutation(len(audio))
            mega = batch * 50
            order = np.concatenate([sorted(order[i:i + mega], key=lambda j: -durations[j])
                                    for i in range(0, len(order), mega)])
        batches = [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]
        rng.shuffle(batches) if recipe == "ours" else None
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=kind == "cuda")
        scaler = torch.amp.GradScaler(kind, enabled=recipe == "seed" and kind == "cuda")

        def step(index: np.ndarray) -> None:
            x = torch.stack([feats[i] for i in index])
            longest = max(len(labels[i]) for i in index)
            y = torch.full((len(index), longest), -100, dtype=torch.long)
            for row, i in enumerate(index):
                y[row, : len(labels[i])] = torch.from_numpy(labels[i].astype(np.int64))
            with torch.autocast(kind, dtype=dtype if kind == "cuda" else torch.bfloat16):
                loss = model(input_features=x, labels=y.to(device)).loss
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

        for i in range(warmup):
            step(batches[i % len(batches)])
        sync()
        if kind == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        seen = 0.0
        for i in range(steps):
            index = batches[(warmup + i) % len(batches)]
            step(index)
            seen += float(durations[index].sum())
        sync()
        elapsed = time.perf_counter() - started
        results[recipe] = {"samples_per_s": steps * batch / elapsed, "audio_s_per_s": seen / elapsed,
                           "step_ms": 1000 * elapsed / steps, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if kind == "cuda" else 0.0,
                           "window_s": seed_window if recipe == "seed" else window,
                           "precision": "fp16" if recipe == "seed" else "bf16"}
        del model, optimizer, feats
        if kind == "cuda":
            torch.cuda.empty_cache()
    ratio = results["ours"]["samples_per_s"] / results["seed"]["samples_per_s"]
    name = torch.cuda.get_device_name() if kind == "cuda" else "CPU (smoke test: a tiny config, not a measurement)"
    print(f"whisper-{'tiny-smoke' if smoke else 'small'} from config, {name}, batch {batch}, {steps} timed steps "
          f"after {warmup} warm-up, {len(audio)} corpus clips (mean {durations.mean():.2f} s)")
    for recipe, r in results.items():
        print(f"  {recipe:<5} window {r['window_s']:>2} s {r['precision']}: {r['samples_per_s']:8.1f} samples/s "
              f"{r['audio_s_per_s']:8.1f} audio-s/s  {r['step_ms']:7.1f} ms/step  peak {r['peak_gib']:.1f} GiB")
    print(f"  ours / seed: {ratio:.2f}x samples per second")
    return {"results": results, "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="decode clips and tokenize transcripts (any machine)")
    p.add_argument("--out", type=Path, default=REPO / ".bench" / "whisper_gpu.npz")
    p.add_argument("--clips", type=int, default=400)
    r = sub.add_parser("run", help="time both recipes (needs CUDA)")
    r.add_argument("--data", type=Path, default=REPO / ".bench" / "whisper_gpu.npz")
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--seed-window", type=int, default=30)
    r.add_argument("--json", type=Path, help="also write the figures here")
    r.add_argument("--smoke", action="store_true", help="a tiny config, CPU allowed: checks the script, measures nothing")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.clips)
        return 0
    figures = run(args.data, args.steps, args.warmup, args.batch, args.seed_window, args.smoke)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
