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
    # "manifest.jsonl:LINE" when the reject is a malformed source line (not written when None)
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


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


# NeMo-style manifests ({"audio_filepath", "duration", "text"}) name the audio this way.
NEMO_AUDIO_KEY = "audio_filepath"
GUARD_SPLIT = "guard"  # a general-speech set prepare adds when asked, never trained on (steps/models/whisper/guard.py)
_NUMBER_FIELDS = ("duration", "rms_dbfs", "lufs", "intensity")
_OPTIONAL_TEXT_FIELDS = ("speaker", "split")


@dataclass
class SourceLine:
    """One non-empty line of a source manifest: the record, or why the line cannot be used.

    ``where`` is ``"<file name>:<line number>"``; ``error`` is the reason without the location.
    ``record`` is None for a malformed line, except that ``id``/``audio`` are recovered into
    ``fallback`` as far as the line allows (so a reject can still name them).
    """

    where: str
    record: Utterance | None = None
    error: str | None = None
    fallback_id: str = ""
    fallback_audio: str = ""

    @property
    def message(self) -> str:
        return f"{self.where}: {self.error}"


def source_record(data: Any) -> Utterance:
    """A record of a *source* manifest: ours (``id``, ``audio``, ...) or NeMo-style
    (``audio_filepath``, ``duration``, ``text``), with its field types checked.

    ``id`` may be absent (the reader derives one); every other key is kept in ``extra``.
    Raises ``ManifestError`` with the reason (no location) for a record that breaks the rules.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"a record must be a JSON object, got {_json_type(data)}")
    data = dict(data)
    if "audio" not in data and NEMO_AUDIO_KEY in data:
        data["audio"] = data.pop(NEMO_AUDIO_KEY)
    if "audio" not in data:
        raise ManifestError(f"no audio path: a record needs 'audio' or '{NEMO_AUDIO_KEY}', got keys {sorted(data)}")
    if not isinstance(data["audio"], str) or not data["audio"].strip():
        raise ManifestError(f"'audio' must be a non-empty string, got {_json_type(data['audio'])}")
    if "id" in data:
        if isinstance(data["id"], bool) or not isinstance(data["id"], (str, int)) or str(data["id"]).strip() == "":
            raise ManifestError(f"'id' must be a non-empty string, got {_json_type(data['id'])}")
        data["id"] = str(data["id"])
    if data.get("text") is None:
        data["text"] = ""
    elif not isinstance(data["text"], str):
        raise ManifestError(f"'text' must be a string, got {_json_type(data['text'])}")
    for name in _NUMBER_FIELDS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ManifestError(f"'{name}' must be a number, got {_json_type(value)}")
    if "duration" in data and data["duration"] is None:
        del data["duration"]
    rate = data.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0):
        raise ManifestError(f"'sample_rate' must be a positive integer, got {_json_type(rate)}")
    if "sample_rate" in data and rate is None:
        del data["sample_rate"]
    for name in _OPTIONAL_TEXT_FIELDS:
        value = data.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ManifestError(f"'{name}' must be a string, got {_json_type(value)}")
            data[name] = str(value)
    data.setdefault("id", "")
    return Utterance.from_dict(data)


def iter_source_manifest(path: Path) -> Iterator[SourceLine]:
    """Read a source manifest line by line without ever raising on a bad line.

    Each non-empty line gives a ``SourceLine``: a record, or the reason the line is malformed
    (invalid JSON, not an object, no audio key, a field of the wrong type). A record without an
    ``id`` gets one from its audio file name (``clip.wav`` -> ``clip``), made unique within the
    manifest with ``-2``, ``-3``, ... suffixes.
    """
    path = Path(path)
    used: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            where = f"{path.name}:{line_no}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield SourceLine(where, error=f"not valid JSON ({exc.msg} at column {exc.colno})", fallback_id=where)
                continue
            try:
                rec = source_record(data)
            except (ManifestError, TypeError) as exc:
                fallback_id, fallback_audio = where, ""
                if isinstance(data, dict):
                    if isinstance(data.get("id"), (str, int)) and not isinstance(data.get("id"), bool):
                        fallback_id = str(data["id"]) or where
                    audio = data.get("audio", data.get(NEMO_AUDIO_KEY))
                    fallback_audio = audio if isinstance(audio, str) else ""
                yield SourceLine(where, error=str(exc), fallback_id=fallback_id, fallback_audio=fallback_audio)
                continue
            if not rec.id:
                rec.id = _unique(_id_from_audio(rec.audio), used)
            used.add(rec.id)
            yield SourceLine(where, record=rec)


def _id_from_audio(audio: str) -> str:
    stem = Path(audio.replace("\\", "/")).stem.strip()
    return stem or "utt"


def _unique(base: str, used: set[str]) -> str:
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


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


def resolve_audio(manifest_path: Path, audio: str, root: Path | None = None, base: Path | None = None) -> Path:
    """The absolute audio path of a record, refusing any path that escapes the data root.

    Paths are relative to ``base`` (default: the manifest's folder); ``root`` defaults to ``base``.
    Absolute paths and ``..`` tricks that land outside it raise ``ManifestError``: a manifest must not
    make a stage read arbitrary files.
    """
    base = Path(base).resolve() if base else Path(manifest_path).resolve().parent
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
