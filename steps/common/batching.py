"""Batching and timing helpers shared by every task's evaluation and export."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from steps.common.console import progress

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def run_batches(fn: Callable[[Sequence[Any]], tuple[list[str], Any]], items: Sequence[Any], batch_size: int,
                desc: str) -> tuple[list[str], np.ndarray]:
    """Apply ``fn`` (batch -> (texts, values)) over ``items`` with a progress bar; concatenates both."""
    texts: list[str] = []
    values: list[np.ndarray] = []
    for batch in progress(list(batched(items, batch_size)), desc=desc, unit="batch"):
        t, v = fn(batch)
        texts += list(t)
        values.append(np.asarray(v))
    return texts, (np.concatenate(values) if values else np.zeros(0))


def best_time(fn: Callable[[Sequence[Any]], tuple[list[str], Any]], batches: list[Sequence[Any]],
              repeats: int) -> tuple[list[str], np.ndarray, float]:
    """Run ``fn`` over all batches ``repeats`` times; outputs of the last pass and the best wall time."""
    best = float("inf")
    texts: list[str] = []
    values: np.ndarray = np.zeros(0)
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        texts, parts = [], []
        for batch in batches:
            t, v = fn(batch)
            texts += list(t)
            parts.append(np.asarray(v))
        best = min(best, time.perf_counter() - started)
        values = np.concatenate(parts) if parts else np.zeros(0)
    return texts, values, best
