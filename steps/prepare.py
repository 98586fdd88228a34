"""Stage ``prepare``: load a source, decode robustly, filter, normalise text, label intensity, split.

Sources: the bundled corpus, a local folder (with a ``manifest.jsonl``, or audio files with
same-named ``.txt`` transcripts), a JSONL manifest, the mounted ``raw`` input, or a Hugging Face
dataset (``hf:NAME``, needs a network). Every record that cannot be used lands in
``rejects/rejects.jsonl`` with its reason; nothing is dropped silently.

Manifests are read in our format (``id``, ``audio``, ``text``, ...) or NeMo-style
(``audio_filepath``, ``duration``, ``text``); a record without ``id`` gets one from its audio file
name. Audio paths are relative to the manifest, or absolute but inside the manifest's folder.

Task fields: every record field beyond the common ones travels on into the output manifests
unchanged (lists and objects such as ``words`` stay JSON). The fields the task declares in
``Task.manifest_fields`` are required: a record that lacks one (absent or null) is rejected with
"missing field 'X' that task T needs"; from a Hugging Face dataset they are read from the columns
of the same name (or ``hf_field_columns``). A folder without a manifest carries no task fields.

A malformed manifest line (invalid JSON, not an object, no audio key, a field of the wrong type)
is reported as ``manifest.jsonl:LINE: reason``. ``on_bad_line`` decides what follows: ``skip``
(default) puts the line into the rejects manifest (with ``where``) and goes on, counted as
``bad_lines`` in the report; ``fail`` stops the stage with that one sentence before any audio is
decoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from pydantic import Field, model_validator

from steps.common import loudness
from steps.common.audio import TARGET_SAMPLE_RATE, AudioError, check, decode, resample, to_mono
from steps.common.console import progress
from steps.common.manifest import (GUARD_SPLIT, ManifestError, Reject, SourceLine, Utterance, iter_source_manifest,
                                   resolve_audio, write_jsonl, write_manifest)
from steps.common.stage import Params, StageError, StageSpec, run_stage
from steps.common.text import clean_transcript

log = logging.getLogger(__name__)

BUNDLED_MANIFEST = Path(__file__).resolve().parent / "corpus" / "sample" / "manifest.jsonl"
# the corpora shipped in steps/corpus/: ``bundled`` is the English sample, ``bundled:hindi`` the Hindi one
BUNDLED_SOURCES = {"bundled": BUNDLED_MANIFEST, "bundled:hindi": BUNDLED_MANIFEST.parents[1] / "hindi" / "manifest.jsonl",
                   "bundled:guard": BUNDLED_MANIFEST.parents[1] / "guard" / "manifest.jsonl"}
SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}
RMS_RANGE = (-60.0, 0.0)
LUFS_RANGE = (-70.0, 0.0)
LOUDNESS_BATCH = 64  # clips per batched loudness call


class PrepareParams(Params):
    source: str = Field("bundled", description="bundled | bundled:hindi | input | PATH (folder or .jsonl) | hf:DATASET")
    hf_config: str | None = Field(None, description="Hugging Face dataset config (e.g. clean)")
    hf_splits: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"},
        description="our split -> the dataset's split name",
    )
    text_column: str = Field("text", description="transcript column of a Hugging Face dataset")
    min_duration: float = Field(0.3, ge=0, description="seconds; shorter clips are rejected")
    max_duration: float = Field(30.0, gt=0, description="seconds; longer clips are rejected")
    intensity: Literal["rms", "lufs"] = Field("rms", description="intensity target: RMS dBFS or LUFS")
    max_per_split: int | None = Field(None, ge=1, description="keep at most N utterances per split")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="for sources without splits")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="for sources without splits")
    require_text: bool = Field(True, description="reject records with an empty transcript")
    on_bad_line: Literal["skip", "fail"] = Field(
        "skip", description="a malformed manifest line: skip it (into the rejects, with file:line) or fail the stage")
    hf_field_columns: dict[str, str] = Field(
        default_factory=dict, description="task field -> Hugging Face column, where the names differ")
    guard: str | None = Field(
        None, description="a general-speech guard set, prepared as the 'guard' split and never trained on; evaluate "
                          "scores it next to test so the gate can refuse a model that forgot general speech: "
                          "bundled:guard | PATH (folder or .jsonl) | hf:DATASET | null (none)")
    guard_hf_config: str | None = Field(None, description="Hugging Face config of an hf: guard (e.g. clean)")
    guard_hf_split: str = Field("test", description="the split of an hf: guard dataset")
    split_manifests: dict[Literal["train", "validation", "test"], str] | None = Field(
        None, description="one JSONL manifest per split (seed 003's train/val/test files), read instead of "
                          "source; their records take that split")
    audio_root: str | None = Field(
        None, description="the folder the manifests' audio paths are relative to (seed 003's audio_base_path); "
                          "default: each manifest's own folder. Paths may not leave it")
    speaker_splits: dict[Literal["validation", "test"], list[str]] | None = Field(
        None, description="hold speakers out: {validation: [SPEAKER, ...], test: [...]}; their records form those "
                          "splits and every other speaker's the training split, whatever split the source gives "
                          "(a record without a speaker is rejected)")

    @model_validator(mode="after")
    def _speakers_once(self):
        if self.speaker_splits:
            seen: dict[str, str] = {}
            for split, speakers in self.speaker_splits.items():
                for speaker in speakers:
                    if speaker in seen and seen[speaker] != split:
                        raise ValueError(f"speaker_splits: speaker {speaker!r} is in both {seen[speaker]} and {split}")
                    seen[speaker] = split
        return self


def prepare(params: PrepareParams, raw: Path | None, data_out: Path, rejects_out: Path,
            task: str | None = None) -> dict:
    """Prepare ``params.source`` for ``task`` (None: no task fields required)."""
    if params.min_duration >= params.max_duration:
        raise ValueError(f"min_duration {params.min_duration} must be below max_duration {params.max_duration}")
    needed = task_fields(task)
    aliases = _task_aliases(task)
    records, root = _load_source(params, raw, needed)
    audio_dir = data_out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    kept: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    rejects: list[Reject] = []
    seen: set[str] = set()
    bad_lines = 0
    sources = [(records, None, "prepare")]
    if params.guard:
        guard_params = params.model_copy(update={"source": params.guard, "hf_config": params.guard_hf_config,
                                                 "hf_splits": {GUARD_SPLIT: params.guard_hf_split},
                                                 "split_manifests": None, "audio_root": None})
        kept[GUARD_SPLIT] = []
        sources.append((_load_source(guard_params, None, needed)[0], GUARD_SPLIT, "prepare guard"))

    def accept(rec: Utterance, split: str | None) -> None:
        seen.add(rec.id)
        if split:
            rec.split = split
        elif params.speaker_splits:
            rec.split = next((s for s, speakers in params.speaker_splits.items() if rec.speaker in speakers), "train")
        else:
            rec.split = rec.split if rec.split in SPLITS else _hash_split(rec, params)
        if params.max_per_split is None or len(kept[rec.split]) < params.max_per_split:
            kept[rec.split].append(rec)

    # Decode a chunk, label it with one batched loudness call, then store it.
    for records, split, desc in sources:
        for chunk in _chunked(progress(records, desc=desc, unit="utt"), LOUDNESS_BATCH):
            decoded: list[tuple[Utterance, Path | bytes, Decoded]] = []
            for rec, source_path, error in chunk:
                if isinstance(error, SourceLine):
                    rejects.append(Reject(id=error.fallback_id, audio=error.fallback_audio, reason=error.message,
                                          where=error.where))
                    log.warning("%s (line skipped; on_bad_line=fail stops instead)", error.message)
                    bad_lines += 1
                    continue
                if split:  # the guard's ids never collide with the corpus's
                    rec.id = f"{split}-{rec.id}"
                if error is None and (rec.id in seen or rec.id in {d[0].id for d in decoded}):
                    error = "duplicate id"
                if error is None:
                    _adapt_record(rec, aliases)
                    error = _check_record(rec, needed, task)
                if error is None and params.speaker_splits and not split and rec.speaker is None:
                    error = "no 'speaker': speaker_splits holds speakers out, so every record needs one"
                result = _decode_one(rec, source_path, params) if error is None else error
                if isinstance(result, str):
                    rejects.append(Reject(id=rec.id, audio=rec.audio, reason=result))
                else:
                    decoded.append((rec, source_path, result))
            levels = loudness.measure_batch([d[2].audio for d in decoded], TARGET_SAMPLE_RATE)
            for (rec, source_path, item), level in zip(decoded, levels):
                if level.error:
                    rejects.append(Reject(id=rec.id, audio=rec.audio, reason=f"loudness: {level.error}"))
                    continue
                _store_one(rec, source_path, item, level, params, audio_dir)
                accept(rec, split)

    for split, recs in kept.items():
        write_manifest(data_out / f"{split}.jsonl", recs)
    write_jsonl(rejects_out / "rejects.jsonl", (r.to_dict() for r in rejects))
    # Drop audio of records that were capped away, so the output holds only what manifests reference.
    referenced = {Path(r.audio).name for recs in kept.values() for r in recs}
    for path in audio_dir.iterdir():
        if path.name not in referenced:
            path.unlink()

    return _report(params, kept, rejects, data_out, root, bad_lines)


def task_fields(task: str | None) -> tuple[str, ...]:
    """The record fields ``task`` needs beyond the common ones (none without a task)."""
    if not task:
        return ()
    from steps.tasks import get_task

    return tuple(get_task(task).manifest_fields)


def _task_aliases(task: str | None) -> dict[str, str]:
    """field -> the other name a source may give it (``Task.field_aliases``)."""
    if not task:
        return {}
    from steps.tasks import get_task

    return dict(get_task(task).field_aliases)


def _adapt_record(rec: Utterance, aliases: dict[str, str]) -> None:
    """A task field under its alias takes the task's name; a record with ``words`` and no transcript gets
    the words joined as its text (the seed-003 format has no ``text``)."""
    for name, alias in aliases.items():
        if rec.extra.get(name) is None and alias in rec.extra:
            rec.extra[name] = rec.extra.pop(alias)
    words = rec.extra.get("words")
    if not rec.text and isinstance(words, list) and words and all(isinstance(w, str) for w in words):
        rec.text = " ".join(words)


_CORE_FIELDS = {"id", "audio", "duration", "sample_rate", "text", "speaker", "split", "rms_dbfs", "lufs", "intensity"}


def _field_value(rec: Utterance, name: str):
    return getattr(rec, name) if name in _CORE_FIELDS else rec.extra.get(name)


def _check_record(rec: Utterance, needed: tuple[str, ...], task: str | None) -> str | None:
    """A reject reason for a well-formed record prepare still cannot use, or None."""
    for name in needed:
        if _field_value(rec, name) is None:
            return f"missing field '{name}' that task {task} needs"
    offset = rec.extra.get("offset")
    if isinstance(offset, (int, float)) and not isinstance(offset, bool) and offset != 0:
        return "segment offsets (NeMo 'offset') are not supported: cut the clip to its own file"
    return None


@dataclass
class Decoded:
    audio: np.ndarray  # 16 kHz mono float32
    rate: int
    channels: int


def _decode_one(rec: Utterance, source: Path | bytes, params: PrepareParams) -> Decoded | str:
    """Decode and check one record; returns the audio or a reject reason."""
    try:
        data, rate = decode(source)
        check(data)
    except AudioError as exc:
        return str(exc)
    audio = resample(to_mono(data), rate)
    duration = audio.shape[0] / TARGET_SAMPLE_RATE
    if duration < params.min_duration:
        return f"too short: {duration:.2f}s < min_duration {params.min_duration}s"
    if duration > params.max_duration:
        return f"too long: {duration:.2f}s > max_duration {params.max_duration}s"
    rec.text = clean_transcript(rec.text)
    if params.require_text and not rec.text:
        return "empty transcript"
    return Decoded(audio=audio, rate=rate, channels=int(data.shape[1]))


def _store_one(rec: Utterance, source: Path | bytes, item: Decoded, level: loudness.Loudness,
               params: PrepareParams, audio_dir: Path) -> None:
    """Add the intensity labels and write (or copy) the 16 kHz mono audio next to the manifests."""
    rec.rms_dbfs = round(float(np.clip(level.rms_dbfs, *RMS_RANGE)), 3)
    rec.lufs = round(float(np.clip(level.lufs, *LUFS_RANGE)), 3)
    rec.intensity = rec.rms_dbfs if params.intensity == "rms" else rec.lufs
    if level.flags:
        rec.extra["loudness_flags"] = list(level.flags)
    rec.extra.setdefault("source_sample_rate", item.rate)
    if item.channels != 1:
        rec.extra.setdefault("source_channels", item.channels)
    name = _safe_name(rec.id)
    if isinstance(source, Path) and item.rate == TARGET_SAMPLE_RATE and item.channels == 1 \
            and source.suffix.lower() in AUDIO_EXTENSIONS:
        target = audio_dir / f"{name}{source.suffix.lower()}"
        shutil.copyfile(source, target)
    else:
        target = audio_dir / f"{name}.flac"
        sf.write(target, item.audio, TARGET_SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    rec.audio = f"audio/{target.name}"
    rec.duration = round(item.audio.shape[0] / TARGET_SAMPLE_RATE, 3)
    rec.sample_rate = TARGET_SAMPLE_RATE


def _chunked(items, size: int):
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _safe_name(utt_id: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in utt_id).strip("._") or "utt"
    return f"{cleaned[:80]}-{hashlib.sha1(utt_id.encode()).hexdigest()[:8]}"


def _hash_split(rec: Utterance, params: PrepareParams) -> str:
    """A stable split for records without one: by pair/sentence when known, so a text never spans splits."""
    key = str(rec.extra.get("pair_id") or rec.text or rec.id)
    bucket = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < params.test_fraction:
        return "test"
    if bucket < params.test_fraction + params.validation_fraction:
        return "validation"
    return "train"


# (record, audio path or bytes, None | a reject reason | the malformed source line)
Item = tuple[Utterance, "Path | bytes", "str | SourceLine | None"]


def _load_source(params: PrepareParams, raw: Path | None,
                 needed: tuple[str, ...] = ()) -> tuple[Iterator[Item], str]:
    source = params.source
    if params.split_manifests:
        missing = [str(p) for p in params.split_manifests.values() if not Path(p).expanduser().is_file()]
        if missing:
            raise FileNotFoundError(f"split_manifests: no such manifest {', '.join(missing)}")
        return _split_items(params), ", ".join(str(p) for p in params.split_manifests.values())
    if source in BUNDLED_SOURCES:
        bundled = BUNDLED_SOURCES[source]
        if not bundled.is_file():
            raise FileNotFoundError(f"the bundled corpus is missing at {bundled}; "
                                    "regenerate it with python steps/corpus/generate_corpus.py (_hindi.py)")
        return _from_manifest(bundled, params.model_copy(update={"audio_root": None})), str(bundled)
    if source.startswith("hf:"):
        return _from_hf(params, needed), source
    path = raw if source == "input" else Path(source).expanduser()
    if path is None or not path.exists():
        raise FileNotFoundError(f"source {source!r} not found (for 'input', mount the raw input)")
    if path.is_file() and path.suffix == ".jsonl":
        return _from_manifest(path, params), str(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        return _from_manifest(path / "manifest.jsonl", params), str(path)
    if path.is_dir():
        return _from_folder(path), str(path)
    raise ValueError(f"source {source!r} is neither a folder nor a .jsonl manifest")


def _from_manifest(manifest: Path, params: PrepareParams) -> Iterator[Item]:
    """The records of a manifest; malformed lines come as ``SourceLine`` (skip) or stop the stage (fail)."""
    if params.on_bad_line == "fail":
        # check every line before any audio is decoded, so a bad line fails fast
        for line in iter_source_manifest(manifest):
            if line.error is not None:
                raise StageError(line.message)
    return _manifest_items(manifest, params.audio_root)


def _split_items(params: PrepareParams) -> Iterator[Item]:
    for split, path in (params.split_manifests or {}).items():
        for rec, source, error in _from_manifest(Path(path).expanduser(), params):
            if error is None or isinstance(error, str):
                rec.split = split
            yield rec, source, error


def _manifest_items(manifest: Path, audio_root: str | None = None) -> Iterator[Item]:
    base = Path(audio_root).expanduser() if audio_root else None
    for line in iter_source_manifest(manifest):
        if line.record is None:
            yield Utterance(id=line.fallback_id, audio=line.fallback_audio), Path("/nonexistent"), line
            continue
        rec = line.record
        try:
            path = resolve_audio(manifest, rec.audio, base=base)
        except ManifestError as exc:
            yield rec, Path("/nonexistent"), str(exc)
            continue
        yield rec, path, None


def _from_folder(folder: Path) -> Iterator[Item]:
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
        rel = path.relative_to(folder)
        rec = Utterance(id=str(rel.with_suffix("")).replace("/", "_"), audio=str(rel), text=text)
        yield rec, path, None


def _from_hf(params: PrepareParams, needed: tuple[str, ...] = ()) -> Iterator[Item]:  # pragma: no cover - network
    import io

    from datasets import Audio, load_dataset

    name = params.source[3:]
    for ours, theirs in params.hf_splits.items():
        ds = load_dataset(name, params.hf_config, split=theirs)
        ds = ds.cast_column("audio", Audio(decode=False))
        # class-label columns (e.g. an emotion as an int) are kept by their names
        labels = {col: feat.int2str for col, feat in ds.features.items() if hasattr(feat, "int2str")}
        for i, row in enumerate(ds):
            audio = row["audio"]
            payload = audio.get("bytes") or Path(audio["path"]).read_bytes()
            rec, error = _hf_record(row, ours, i, params, needed, labels)
            yield rec, bytes(io.BytesIO(payload).getbuffer()), error


def _hf_record(row: dict, ours: str, index: int, params: PrepareParams, needed: tuple[str, ...],
               labels: dict | None = None) -> tuple[Utterance, str | None]:
    """One Hugging Face row as a record, with the task's fields taken from their columns."""
    audio = row.get("audio") or {}
    rec = Utterance(id=f"{ours}-{index:07d}", audio=str(audio.get("path") or index),
                    text=str(row.get(params.text_column) or ""), split=ours,
                    speaker=str(row.get("speaker_id", row.get("client_id", ""))) or None)
    for name in needed:
        column = params.hf_field_columns.get(name, name)
        if column not in row or row[column] is None:
            continue  # reported by _check_record as a missing field
        value = row[column]
        if labels and column in labels and isinstance(value, int) and not isinstance(value, bool):
            value = labels[column](value)
        value = value.tolist() if hasattr(value, "tolist") else value
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return rec, f"field '{name}' (column {column!r}) is not JSON: {type(value).__name__}"
        if name in _CORE_FIELDS:
            setattr(rec, name, value if name not in ("speaker", "text", "split") else str(value))
        else:
            rec.extra[name] = value
    return rec, None


def _report(params: PrepareParams, kept: dict[str, list[Utterance]], rejects: list[Reject],
            data_out: Path, root: str, bad_lines: int = 0) -> dict:
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update((data_out / f"{split}.jsonl").read_bytes())
    counts = {s: len(r) for s, r in kept.items()}
    train = kept["train"]
    hours = sum(r.duration for recs in kept.values() for r in recs) / 3600
    intensity = [r.intensity for r in train if r.intensity is not None]
    if counts["train"] == 0:
        raise ValueError(f"no usable training utterances from {params.source}; "
                         f"{len(rejects)} rejected — see rejects/rejects.jsonl")
    log.info("kept %s, rejected %d (%s)", counts, len(rejects), dict(Counter(_reason_kind(r) for r in rejects)))
    return {
        "source": root,
        "counts": counts,
        "rejected": len(rejects),
        "reject_reasons": dict(Counter(_reason_kind(r) for r in rejects)),
        "bad_lines": bad_lines,
        "hours": round(hours, 4),
        "speakers": len({r.speaker for recs in kept.values() for r in recs if r.speaker}),
        "speakers_by_split": {split: sorted({r.speaker for r in recs if r.speaker}) for split, recs in kept.items()
                              if params.speaker_splits},
        "intensity": params.intensity,
        "intensity_train_mean": float(np.mean(intensity)) if intensity else None,
        "intensity_train_std": float(np.std(intensity)) if intensity else None,
        "manifest_sha256": digest.hexdigest(),
        "guard": params.guard,
        "metrics": {"train_utts": counts["train"], "rejected": len(rejects), "bad_lines": bad_lines,
                    **({"guard_utts": counts[GUARD_SPLIT]} if GUARD_SPLIT in counts else {}),
                    "hours": round(hours, 3)},
    }


def _external_inputs(params: PrepareParams) -> list[Path]:
    """The folders whose content the stage's cache key must cover: the source's and the guard's."""
    if params.split_manifests:
        folders = [Path(p).expanduser().parent for p in params.split_manifests.values()]
    else:
        folders = _source_folders(params.source)
    if params.audio_root:
        folders.append(Path(params.audio_root).expanduser())
    return folders + (_source_folders(params.guard) if params.guard else [])


def _source_folders(source: str) -> list[Path]:
    if source in BUNDLED_SOURCES:
        return [BUNDLED_SOURCES[source].parent]
    if source in ("input",) or source.startswith("hf:"):
        return []
    path = Path(source).expanduser()
    return [path.parent if path.suffix == ".jsonl" else path]


def _reason_kind(reject: Reject) -> str:
    if reject.where:
        return "bad manifest line"
    return reject.reason.split(":")[0].split("(")[0].strip()[:60]


SPEC = StageSpec(
    name="prepare",
    kind="processing",
    inputs=("raw",),
    optional_inputs=("raw",),
    outputs=("data", "rejects"),
    params=lambda task: PrepareParams,
    run=lambda p, task, io: prepare(p, io.inputs.get("raw"), io.outputs["data"], io.outputs["rejects"], task),
    needs_task=False,
    external_inputs=lambda p: _external_inputs(p),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
