"""Content-addressed stage cache with atomic publication.

A stage's key hashes its step name, task, parameters, the code version (the repository modules
the stage really imports, see ``stage_code.py``) and the content hashes of its inputs. Outputs are
written to ``.cache/.tmp-<key>-<pid>/`` and renamed to ``.cache/<key>/`` only after the stage
succeeded and a ``_complete.json`` was written, so a killed stage never leaves an entry a later run
would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines.backends.stage_code import code_version

COMPLETE = "_complete.json"
RACY_NS = 3 * 10**9  # files modified this recently are read again (see StageCache.hash_external)


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


def tree_signature(path: Path) -> tuple[str, int]:
    """A cheap fingerprint of a file or folder (relative paths, sizes and modification times, no contents),
    and the newest modification time in it (ns)."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return hashlib.sha256(f"{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest(), stat.st_mtime_ns
    entries: list[str] = []
    newest = 0
    stack = [(str(path), "")]
    while stack:  # os.scandir: a corpus of thousands of files in a few milliseconds
        folder, prefix = stack.pop()
        with os.scandir(folder) as found:
            for entry in found:
                if entry.is_dir():  # symlinks followed, as hash_tree does
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.is_file() and entry.name != COMPLETE:
                    stat = entry.stat()
                    newest = max(newest, stat.st_mtime_ns)
                    entries.append(f"{prefix}{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest(), newest


def _hash_file(digest: "hashlib._Hash", file: Path) -> None:
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def stage_key(step: str, task: str, params: dict[str, Any], input_hashes: dict[str, str],
              code: str | None = None) -> str:
    """The cache key; ``code`` is the stage's code version (default: ``code_version(step, task)``)."""
    payload = json.dumps(
        {"step": step, "task": task, "params": params, "code": code or code_version(step, task),
         "inputs": input_hashes},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)  # made by the first stage that stages outputs

    def hash_external(self, path: Path) -> str:
        """``hash_tree`` of a stage's external input (e.g. prepare's source folder), remembered by its
        ``tree_signature``: an unchanged folder (same files, sizes and modification times, the test make
        and rsync use) is not read again, so a cached re-run does not re-hash a whole corpus. A file
        modified in the last seconds could change again within the file system's clock tick without
        changing its signature, so such a folder is always read (git's "racy clean" rule)."""
        memo_file = self.root / "external-hashes.json"
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            memo = {}
        key = str(Path(path).resolve())
        signature, newest = tree_signature(path)
        known = memo.get(key) or {}
        if known.get("signature") == signature:
            return known["sha256"]
        digest = hash_tree(path)
        if newest > time.time_ns() - RACY_NS:
            return digest
        memo[key] = {"signature": signature, "sha256": digest}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
            os.replace(tmp, memo_file)
        except OSError:
            pass  # an optimisation only
        return digest

    @property
    def code_index(self) -> Path:
        """Where the scans of the stages' modules are kept between runs (``stage_code.py``)."""
        return self.root / "code-index.json"

    def code_version(self, step: str, task: str) -> str:
        return code_version(step, task, index=self.code_index)

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
