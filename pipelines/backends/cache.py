"""Content-addressed stage cache with atomic publication.

A stage's key hashes its step name, task, parameters, the code version and the content hashes of
its inputs. Outputs are written to ``.cache/.tmp-<key>-<pid>/`` and renamed to ``.cache/<key>/``
only after the stage succeeded and a ``_complete.json`` was written, so a killed stage never leaves
an entry a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# Code every stage depends on; a stage also depends on its own module and its task's package.
SHARED_CODE = ("steps/common", "steps/models", "steps/tasks/base.py", "steps/tasks/__init__.py", "steps/registry.py",
               "steps/__init__.py", "serving")
COMPLETE = "_complete.json"


def hash_tree(path: Path) -> str:
    """SHA-256 over relative paths and file contents (symlinks followed); stable across machines."""
    digest = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        _hash_file(digest, path)
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != COMPLETE):
        digest.update(str(file.relative_to(path)).encode())
        _hash_file(digest, file)
    return digest.hexdigest()


def _hash_file(digest: "hashlib._Hash", file: Path) -> None:
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


_CODE_VERSIONS: dict[tuple[str, str], str] = {}


def code_version(step: str = "", task: str = "") -> str:
    """A hash of the code a stage runs: the shared code, its step module and its task's package.

    Changing evaluation code does not retrain; changing shared code (the contract, the audio
    loader, ...) invalidates every stage.
    """
    key = (step, task)
    if key not in _CODE_VERSIONS:
        paths = [REPO_ROOT / p for p in SHARED_CODE]
        if step:
            paths.append(REPO_ROOT / "steps" / f"{step}.py")
        if task:
            paths.append(REPO_ROOT / "steps" / "tasks" / task)
        files: list[Path] = []
        for path in paths:
            files += [path] if path.is_file() else sorted(path.rglob("*.py"))
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(REPO_ROOT)).encode())
            digest.update(file.read_bytes())
        _CODE_VERSIONS[key] = digest.hexdigest()[:16]
    return _CODE_VERSIONS[key]


def stage_key(step: str, task: str, params: dict[str, Any], input_hashes: dict[str, str]) -> str:
    payload = json.dumps(
        {"step": step, "task": task, "params": params, "code": code_version(step, task), "inputs": input_hashes},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def entry(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def lookup(self, stage: str, key: str) -> dict[str, Any] | None:
        """The completion record of a published entry, or None."""
        marker = self.entry(stage, key) / COMPLETE
        if not marker.is_file():
            return None
        try:
            return json.loads(marker.read_text())
        except json.JSONDecodeError:
            return None

    def staging(self, stage: str, key: str) -> Path:
        path = self.root / f".tmp-{stage}-{key}-{os.getpid()}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def publish(self, staging: Path, stage: str, key: str, record: dict[str, Any]) -> Path:
        (staging / COMPLETE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        final = self.entry(stage, key)
        if final.exists():  # an incomplete leftover (no marker) or a concurrent twin: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        return final

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
