"""Where runs live on this machine: the runs folder, the MLflow tracking URI, the stage cache, the
training checkpoints and the per-pipeline lock. One place, so the CLI, the backends and the scheduler
agree on them, and none of them imports another to find out.

  runs/                         SPEECHOPS_RUNS_DIR, else ./runs beside the repository's code
    <pipeline>/<run-id>/<stage>/  one run (``latest`` links the newest)
    <pipeline>/.lock              held by a run of the pipeline (``pipeline_lock``)
    .cache/                       the content-addressed stage cache (``backends/cache.py``)
    .checkpoints/                 training checkpoints, per stage and cache key
    mlflow/mlflow.db              the local MLflow store, unless MLFLOW_TRACKING_URI is set
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR_ENV = "SPEECHOPS_RUNS_DIR"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
LOCK_FILE = ".lock"
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the lock; retrying later is right


class PipelineBusy(RuntimeError):
    """Another run of the same pipeline holds its lock."""


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, REPO_ROOT / "runs"))


def default_tracking_uri(runs_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` as given, else a SQLite store in the runs folder (no server needed)."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{(Path(runs_dir) / 'mlflow' / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Workspace:
    """The folders and services of the runs on this machine."""

    runs_dir: Path

    @classmethod
    def at(cls, runs_dir: Path | str | None = None) -> Workspace:
        """The workspace in ``runs_dir`` (default: ``SPEECHOPS_RUNS_DIR``, else ./runs)."""
        return cls(Path(runs_dir or default_runs_dir()).resolve())

    @property
    def tracking_uri(self) -> str:
        return default_tracking_uri(self.runs_dir)

    @property
    def cache_dir(self) -> Path:
        return self.runs_dir / ".cache"

    @property
    def checkpoints_dir(self) -> Path:
        return self.runs_dir / ".checkpoints"

    @property
    def environment_memo(self) -> Path:
        """Where a passed check of the installed packages is remembered (``pipelines/doctor.py``)."""
        return self.cache_dir / "environment"

    def pipeline_dir(self, pipeline: str) -> Path:
        return self.runs_dir / pipeline

    def run_dir(self, pipeline: str, run_id: str) -> Path:
        return self.pipeline_dir(pipeline) / run_id

    def lock(self, pipeline: str, purpose: str = "run") -> contextlib.AbstractContextManager[Path]:
        return pipeline_lock(self.runs_dir, pipeline, purpose)


@contextlib.contextmanager
def pipeline_lock(runs_dir: Path, pipeline: str, purpose: str = "run") -> Iterator[Path]:
    """Hold ``runs/<pipeline>/.lock`` for the duration, or raise ``PipelineBusy`` at once, naming the holder.

    ``filelock`` uses ``flock``: the OS releases the lock when its holder dies, so a killed run never
    leaves a stale lock. The holder's description sits in ``.lock.holder.json`` for the message.
    """
    from filelock import FileLock, Timeout

    folder = Path(runs_dir) / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    holder_file = folder / f"{LOCK_FILE}.holder.json"
    lock = FileLock(str(path), timeout=0)  # one attempt: refuse at once
    try:
        lock.acquire()
    except Timeout:
        raise PipelineBusy(f"pipeline {pipeline!r} is already running ({_describe_holder(holder_file)}); "
                           f"this {purpose} was refused. Wait for it to finish, or stop it (lock: {path})") from None
    try:
        holder_file.write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}))
        yield path
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _describe_holder(holder_file: Path) -> str:
    try:
        holder = json.loads(holder_file.read_text())
    except (OSError, json.JSONDecodeError):
        return "holder unknown"
    return (f"{holder.get('purpose', 'run')} by pid {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('started')}: {holder.get('command', '')}")
