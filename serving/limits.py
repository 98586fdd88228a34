"""What one request may hold: the one place serving's limits are set.

Handlers check clips against these (``steps.common.payload``); the app refuses a larger body before
decoding anything. ``SPEECHOPS_MAX_BODY_MB`` and ``SPEECHOPS_MAX_SECONDS`` override the defaults.
"""

from __future__ import annotations

import os

from steps.common.payload import Limits


def limits_from_environment() -> Limits:
    defaults = Limits()
    try:
        body = int(float(os.environ.get("SPEECHOPS_MAX_BODY_MB", defaults.max_body_bytes / 2**20)) * 2**20)
        seconds = float(os.environ.get("SPEECHOPS_MAX_SECONDS", defaults.max_seconds))
    except ValueError as exc:
        raise SystemExit(f"SPEECHOPS_MAX_BODY_MB and SPEECHOPS_MAX_SECONDS must be numbers: {exc}") from None
    return Limits(max_body_bytes=body, max_seconds=seconds)
