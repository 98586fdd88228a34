"""User-facing output in one place: logging set-up (once, in an entrypoint) and progress bars."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("SPEECHOPS_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for noisy in ("urllib3", "filelock", "matplotlib", "httpx", "alembic", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A progress bar on stderr; quiet when SPEECHOPS_PROGRESS=0 (tests, CI logs)."""
    disable = os.environ.get("SPEECHOPS_PROGRESS", "1") == "0"
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, mininterval=0.5,
                    dynamic_ncols=True, file=sys.stderr)
