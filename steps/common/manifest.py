"""JSONL manifests: the one format data travels in between stages.

One record per utterance; audio paths are relative to the manifest file, so a manifest and its
audio move together (to S3, into a container, into the cache). Task fields (emotion, word-level
prosody, parallel-pair id, ...) travel in ``extra`` and are written flat.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ManifestError(ValueError):
    """A manifest that cannot be read or a record that breaks the manifest rules."""


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float = 0.0
    sample_rate: int = 16000
    text: str = ""
    speaker: str | None = None
    split: str | None = None
    rms_dbfs: float | None = None
    lufs: float | None = None
    intensity: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data = {k: v for k, v in data.items() if v is not None}
        data.update(extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Utterance":
        if "id" not in data or "audio" not in data:
            raise ManifestError(f"record needs 'id' and 'audio' fields, got keys {sorted(data)}")
        known = {f.name for f in fields(cls)} - {"extra"}
        core = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        core["id"] = str(core["id"])
        core["audio"] = str(core["audio"])
        return cls(**core, extra=extra)


@dataclass
class Reject:
    """A record a stage refused, with the reason, so nothing is lost silently."""

    id: str
    audio: str
    reason: str
    stage: str = "prepare"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def iter_manifest(path: Path) -> Iterator[Utterance]:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(data, dict):
                raise ManifestError(f"{path}:{line_no}: a record must be a JSON object")
            try:
                yield Utterance.from_dict(data)
            except (ManifestError, TypeError) as exc:
                raise ManifestError(f"{path}:{line_no}: {exc}") from exc


def read_manifest(path: Path) -> list[Utterance]:
    return list(iter_manifest(Path(path)))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (aside, then rename); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def write_manifest(path: Path, records: Iterable[Utterance]) -> int:
    return write_jsonl(path, (r.to_dict() for r in records))


def resolve_audio(manifest_path: Path, audio: str, root: Path | None = None) -> Path:
    """The absolute audio path of a record, refusing any path that escapes the data root.

    ``root`` defaults to the manifest's folder. Absolute paths and ``..`` tricks that land outside
    it raise ``ManifestError``: a manifest must not make a stage read arbitrary files.
    """
    base = Path(manifest_path).resolve().parent
    root = Path(root).resolve() if root else base
    candidate = (base / audio).resolve()
    if candidate != root and root not in candidate.parents:
        raise ManifestError(f"audio path {audio!r} escapes the data root {root}")
    return candidate


def split_path(data_dir: Path, split: str) -> Path:
    """Where the prepared manifest of ``split`` lives inside a prepare output."""
    return Path(data_dir) / f"{split}.jsonl"


def load_split(data_dir: Path, split: str, limit: int | None = None, require: bool = False) -> tuple[list[Utterance], Path]:
    """The records of a prepared split (the first ``limit``) and its manifest path.

    With ``require``, an empty split is an error that names the split (evaluation has nothing to score).
    """
    manifest = split_path(data_dir, split)
    records = read_manifest(manifest)
    records = records[:limit] if limit else records
    if require and not records:
        raise ManifestError(f"split {split!r} is empty in {data_dir}; nothing to evaluate")
    return records, manifest
