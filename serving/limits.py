"""What one request may hold and how the server schedules work: the one place serving's settings are set.

Handlers check clips against the payload limits (``steps.common.payload``); the app refuses a larger body
while reading it. Environment variables override the defaults:

* ``SPEECHOPS_MAX_BODY_MB`` (25), ``SPEECHOPS_MAX_SECONDS`` (60): body size and audio duration;
* ``SAGEMAKER_MODEL_SERVER_WORKERS`` (1): inference threads sharing the model (SageMaker's name);
* ``SPEECHOPS_MAX_PENDING`` (16): requests in the server at once; more get 503 with ``Retry-After``;
* ``SPEECHOPS_MAX_BATCH`` (8), ``SPEECHOPS_BATCH_WAIT_MS`` (5): dynamic batching;
* ``SPEECHOPS_REQUEST_TIMEOUT_S`` (30): a request not answered by then gets 503.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from steps.common.payload import Limits


@dataclass(frozen=True)
class Scheduling:
    workers: int = 1
    max_pending: int = 16
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    request_timeout_s: float = 30.0


def _number(name: str, default: float, cast=float, low: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(float(raw)) if cast is int else cast(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value < low:
        raise SystemExit(f"{name} must be at least {low:g}, got {raw!r}")
    return value


def limits_from_environment() -> Limits:
    defaults = Limits()
    body = int(_number("SPEECHOPS_MAX_BODY_MB", defaults.max_body_bytes / 2**20, low=0.001) * 2**20)
    seconds = _number("SPEECHOPS_MAX_SECONDS", defaults.max_seconds, low=0.1)
    return Limits(max_body_bytes=body, max_seconds=seconds)


def scheduling_from_environment() -> Scheduling:
    d = Scheduling()
    return Scheduling(workers=int(_number("SAGEMAKER_MODEL_SERVER_WORKERS", d.workers, int, 1)),
                      max_pending=int(_number("SPEECHOPS_MAX_PENDING", d.max_pending, int, 1)),
                      max_batch=int(_number("SPEECHOPS_MAX_BATCH", d.max_batch, int, 1)),
                      batch_wait_ms=_number("SPEECHOPS_BATCH_WAIT_MS", d.batch_wait_ms),
                      request_timeout_s=_number("SPEECHOPS_REQUEST_TIMEOUT_S", d.request_timeout_s, low=0.01))
