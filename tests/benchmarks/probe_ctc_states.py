#!/usr/bin/env python3
"""How readable are a speech encoder's *frozen* states for CTC? A probe for the ``prosody_ser`` CTC head.

Not a test: run it by hand after a ``prosody_ser`` run has prepared its data and tokenizer::

    python tests/benchmarks/probe_ctc_states.py --run runs/prosody_ser/latest
    python tests/benchmarks/probe_ctc_states.py --run runs/prosody_ser/latest --steps 600 --heads mlp

It encodes the run's train and validation clips once with the pretrained encoder the profile names
(frozen, no fine-tuning), then trains CTC heads over the run's SentencePiece pieces on those fixed
states, the same head shapes as ``ProsodySERModel`` (``ctc_hidden_dim`` 0: linear; else an MLP), with
AdamW and a one-cycle schedule, batch 16, and prints greedy WER, CER and the share of blank transcripts
on the validation speaker at a third, two thirds and all of ``--steps``. What a head reaches here is
what the joint model's CTC head could reach if the other heads' losses did not move the encoder: the
gap between the two is the cost of sharing the backbone (see the README's prosody_ser section).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def encode_split(encoder, features, manifest: Path, pieces, max_clips: int | None):
    import torch

    from steps.common.audio import load_audio
    from steps.common.manifest import read_manifest, resolve_audio
    from steps.tasks.prosody_ser.backbone import encode
    from steps.tasks.prosody_ser.tokenizer import words_of

    records = read_manifest(manifest)[:max_clips]
    states, labels, texts = [], [], []
    for start in range(0, len(records), 16):
        batch = records[start:start + 16]
        inputs = features([load_audio(resolve_audio(manifest, r.audio)) for r in batch])
        with torch.inference_mode():
            hidden, mask = encode(encoder, inputs["input_features"], inputs["feature_mask"])
        for row, record in enumerate(batch):
            words = words_of(record, pieces.lowercase)
            states.append(hidden[row, : int(mask[row].sum())].clone())
            labels.append(pieces.encode(words))
            texts.append(" ".join(words))
    return states, labels, texts


def greedy_text(pieces, log_probs, frames: int) -> str:
    from steps.tasks.prosody_ser.inference import greedy_ids

    return pieces.decode(greedy_ids(log_probs, frames))


def probe(head_name: str, hidden_dim: int, train, valid, pieces, steps: int, lr: float, seed: int) -> list[dict]:
    import torch
    from torch.nn import functional as F

    from steps.common.metrics import ctc_collapse
    from steps.tasks.prosody_ser.model import ctc_head
    from steps.tasks.prosody_ser.tokenizer import BLANK

    torch.manual_seed(seed)
    order_rng = random.Random(seed)
    states, labels, _ = train
    head = ctc_head(states[0].shape[-1], hidden_dim, len(pieces), 0.1)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps, pct_start=0.1)

    def padded(items):
        longest = max(x.shape[0] for x in items)
        out = torch.zeros(len(items), longest, items[0].shape[-1])
        for i, x in enumerate(items):
            out[i, : x.shape[0]] = x
        return out, torch.tensor([x.shape[0] for x in items])

    def score() -> dict:
        head.eval()
        hypotheses = []
        with torch.inference_mode():
            for start in range(0, len(valid[0]), 32):
                x, lengths = padded(valid[0][start:start + 32])
                log_probs = head(x).log_softmax(-1).numpy()
                hypotheses += [greedy_text(pieces, lp, int(n)) for lp, n in zip(log_probs, lengths)]
        head.train()
        result = ctc_collapse(hypotheses, valid[2], 1.0)
        return {"wer": round(result["wer"], 3), "cer": round(result["cer"], 3),
                "blank_share": round(result["empty_share"], 3), "example": hypotheses[0]}

    rows, queue, started = [], [], time.time()
    for step in range(1, steps + 1):
        if not queue:
            queue = order_rng.sample(range(len(states)), len(states))
        batch = [queue.pop() for _ in range(min(16, len(queue)))]
        x, lengths = padded([states[i] for i in batch])
        targets = [torch.tensor(labels[i]) for i in batch]
        log_probs = head(x).log_softmax(-1)
        loss = F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), lengths,
                          torch.tensor([len(t) for t in targets]), blank=BLANK, zero_infinity=True)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step in {steps // 3, 2 * steps // 3, steps}:
            rows.append({"head": head_name, "step": step, "loss": round(loss.item(), 3), **score(),
                         "seconds": round(time.time() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True,
                        help="a prosody_ser run folder with prepare/ and tokenizer/ (runs/prosody_ser/<id>)")
    parser.add_argument("--steps", type=int, default=270, help="optimiser steps per head (default: 270, "
                        "the default profile's 3 epochs)")
    parser.add_argument("--heads", default="linear,mlp", help="comma-separated: linear, mlp (default: both)")
    parser.add_argument("--hidden-dim", type=int, default=512, help="the MLP head's width (default: 512)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: the profile's head_lr)")
    parser.add_argument("--max-clips", type=int, default=None, help="use only the first N clips of each split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoFeatureExtractor

    from steps.tasks.prosody_ser.backbone import Features, build_encoder, pretrained
    from steps.tasks.prosody_ser.tokenizer import Pieces

    tokenizer = args.run / "tokenizer" / "tokenizer"
    data = args.run / "prepare" / "data"
    if not (tokenizer / "spm.model").is_file() or not (data / "train.jsonl").is_file():
        parser.error(f"{args.run} has no prepare/data and tokenizer/tokenizer: run the pipeline first "
                     "(python pipelines/run.py --pipeline prosody_ser)")
    config = json.loads((args.run / "run.json").read_text())["config"]
    model_id = config.get("common", {}).get("model_id", "bundled:whisper-tiny.en")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pieces, extractor = Pieces(tokenizer), AutoFeatureExtractor.from_pretrained(tokenizer)
    encoder_config, weights = pretrained(model_id, None, extractor)
    encoder = build_encoder(encoder_config)
    encoder.load_state_dict(weights)
    encoder.eval()
    features = Features(extractor)
    started = time.time()
    train = encode_split(encoder, features, data / "train.jsonl", pieces, args.max_clips)
    valid = encode_split(encoder, features, data / "validation.jsonl", pieces, args.max_clips)
    print(f"encoded {len(train[0])} train and {len(valid[0])} validation clips with {model_id} (frozen) "
          f"in {time.time() - started:.0f} s", flush=True)
    for name in [h.strip() for h in args.heads.split(",") if h.strip()]:
        if name not in ("linear", "mlp"):
            parser.error(f"unknown head {name!r}: linear or mlp")
        probe(name, 0 if name == "linear" else args.hidden_dim, train, valid, pieces, args.steps, args.lr, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
