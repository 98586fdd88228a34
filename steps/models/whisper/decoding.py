"""Greedy decoding shared by evaluation, serving and the ONNX parity check.

One loop, two back ends (PyTorch, with or without a key/value cache, and onnxruntime), so
"identical greedy transcripts" compares like with like. The prefix is the decoder prompt
(``prompt.DecoderPrompt``), e.g. ``<|startoftranscript|><|notimestamps|>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodingSpec:
    prefix: tuple[int, ...]  # decoder start + forced tokens
    eos: int
    suppress: tuple[int, ...] = ()  # never emitted (timestamps, other special tokens)
    max_new_tokens: int = 64


StepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ids [B, L], encoder states) -> logits [B, V]


def greedy_decode(step: StepFn, encoder_states: np.ndarray, spec: DecodingSpec) -> list[list[int]]:
    """Token ids (prefix and EOS removed) for each item of the batch."""
    batch = encoder_states.shape[0]
    ids = np.tile(np.asarray(spec.prefix, dtype=np.int64), (batch, 1))
    finished = np.zeros(batch, dtype=bool)
    suppress = np.asarray(spec.suppress, dtype=np.int64)
    for _ in range(spec.max_new_tokens):
        logits = np.array(step(ids, encoder_states), dtype=np.float32, copy=True)
        if suppress.size:
            logits[:, suppress] = -np.inf
        nxt = logits.argmax(axis=-1)
        nxt = np.where(finished, spec.eos, nxt)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        finished |= nxt == spec.eos
        if finished.all():
            break
    out = []
    for row in ids[:, len(spec.prefix):]:
        tokens = row.tolist()
        out.append(tokens[: tokens.index(spec.eos)] if spec.eos in tokens else tokens)
    return out
