"""Stage ``prepare``: load a source, decode robustly, filter, normalise text, label intensity, split.

Sources: the bundled corpus, a local folder (with a ``manifest.jsonl``, or audio files with
same-named ``.txt`` transcripts), a JSONL manifest, the mounted ``raw`` input, or a Hugging Face
dataset (``hf:NAME``, needs a network). Every record that cannot be used lands in
``rejects/rejects.jsonl`` with its reason; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from pydantic import Field

from steps.common import loudness
from steps.common.audio import TARGET_SAMPLE_RATE, AudioError, check, decode, resample, to_mono
from steps.common.console import progress
from steps.common.manifest import ManifestError, Reject, Utterance, iter_manifest, resolve_audio, write_jsonl, write_manifest
from steps.common.stage import Params, StageSpec, run_stage
from steps.common.text import clean_transcript

log = logging.getLogger(__name__)

BUNDLED_MANIFEST = Path(__file__).resolve().parent / "corpus" / "sample" / "manifest.jsonl"
SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}
RMS_RANGE = (-60.0, 0.0)
LUFS_RANGE = (-70.0, 0.0)
LOUDNESS_BATCH = 64  # clips per batched loudness call


class PrepareParams(Params):
    source: str = Field("bundled", description="bundled | input | PATH (folder or .jsonl) | hf:DATASET")
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


def prepare(params: PrepareParams, raw: Path | None, data_out: Path, rejects_out: Path) -> dict:
    if params.min_duration >= params.max_duration:
        raise ValueError(f"min_duration {params.min_duration} must be below max_duration {params.max_duration}")
    records, root = _load_source(params, raw)
    audio_dir = data_out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    kept: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    rejects: list[Reject] = []
    seen: set[str] = set()

    def accept(rec: Utterance) -> None:
        seen.add(rec.id)
        rec.split = rec.split if rec.split in SPLITS else _hash_split(rec, params)
        if params.max_per_split is None or len(kept[rec.split]) < params.max_per_split:
            kept[rec.split].append(rec)

    # Decode a chunk, label it with one batched loudness call, then store it.
    for chunk in _chunked(progress(records, desc="prepare", unit="utt"), LOUDNESS_BATCH):
        decoded: list[tuple[Utterance, Path | bytes, Decoded]] = []
        for rec, source_path, error in chunk:
            if error is None and (rec.id in seen or rec.id in {d[0].id for d in decoded}):
                error = "duplicate id"
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
            accept(rec)

    for split, recs in kept.items():
        write_manifest(data_out / f"{split}.jsonl", recs)
    write_jsonl(rejects_out / "rejects.jsonl", (r.to_dict() for r in rejects))
    # Drop audio of records that were capped away, so the output holds only what manifests reference.
    referenced = {Path(r.audio).name for recs in kept.values() for r in recs}
    for path in audio_dir.iterdir():
        if path.name not in referenced:
            path.unlink()

    return _report(params, kept, rejects, data_out, root)


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


Item = tuple[Utterance, "Path | bytes", "str | None"]


def _load_source(params: PrepareParams, raw: Path | None) -> tuple[Iterator[Item], str]:
    source = params.source
    if source == "bundled":
        if not BUNDLED_MANIFEST.is_file():
            raise FileNotFoundError(f"the bundled corpus is missing at {BUNDLED_MANIFEST}; "
                                    "regenerate it with python steps/corpus/generate_corpus.py")
        return _from_manifest(BUNDLED_MANIFEST), str(BUNDLED_MANIFEST)
    if source.startswith("hf:"):
        return _from_hf(params), source
    path = raw if source == "input" else Path(source).expanduser()
    if path is None or not path.exists():
        raise FileNotFoundError(f"source {source!r} not found (for 'input', mount the raw input)")
    if path.is_file() and path.suffix == ".jsonl":
        return _from_manifest(path), str(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        return _from_manifest(path / "manifest.jsonl"), str(path)
    if path.is_dir():
        return _from_folder(path), str(path)
    raise ValueError(f"source {source!r} is neither a folder nor a .jsonl manifest")


def _from_manifest(manifest: Path) -> Iterator[Item]:
    try:
        for rec in iter_manifest(manifest):
            try:
                path = resolve_audio(manifest, rec.audio)
            except ManifestError as exc:
                yield rec, Path("/nonexistent"), str(exc)
                continue
            yield rec, path, None
    except ManifestError as exc:
        raise ValueError(f"cannot read manifest {manifest}: {exc}") from exc


def _from_folder(folder: Path) -> Iterator[Item]:
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else ""
        rel = path.relative_to(folder)
        rec = Utterance(id=str(rel.with_suffix("")).replace("/", "_"), audio=str(rel), text=text)
        yield rec, path, None


def _from_hf(params: PrepareParams) -> Iterator[Item]:  # pragma: no cover - needs a network
    import io

    from datasets import Audio, load_dataset

    name = params.source[3:]
    for ours, theirs in params.hf_splits.items():
        ds = load_dataset(name, params.hf_config, split=theirs)
        ds = ds.cast_column("audio", Audio(decode=False))
        for i, row in enumerate(ds):
            audio = row["audio"]
            payload = audio.get("bytes") or Path(audio["path"]).read_bytes()
            rec = Utterance(id=f"{ours}-{i:07d}", audio=str(audio.get("path") or i),
                            text=str(row.get(params.text_column, "")), split=ours,
                            speaker=str(row.get("speaker_id", row.get("client_id", ""))) or None)
            yield rec, bytes(io.BytesIO(payload).getbuffer()), None


def _report(params: PrepareParams, kept: dict[str, list[Utterance]], rejects: list[Reject],
            data_out: Path, root: str) -> dict:
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
    log.info("kept %s, rejected %d (%s)", counts, len(rejects), dict(Counter(_reason_kind(r.reason) for r in rejects)))
    return {
        "source": root,
        "counts": counts,
        "rejected": len(rejects),
        "reject_reasons": dict(Counter(_reason_kind(r.reason) for r in rejects)),
        "hours": round(hours, 4),
        "speakers": len({r.speaker for recs in kept.values() for r in recs if r.speaker}),
        "intensity": params.intensity,
        "intensity_train_mean": float(np.mean(intensity)) if intensity else None,
        "intensity_train_std": float(np.std(intensity)) if intensity else None,
        "manifest_sha256": digest.hexdigest(),
        "metrics": {"train_utts": counts["train"], "rejected": len(rejects), "hours": round(hours, 3)},
    }


def _external_inputs(params: PrepareParams) -> list[Path]:
    if params.source == "bundled":
        return [BUNDLED_MANIFEST.parent]
    if params.source in ("input",) or params.source.startswith("hf:"):
        return []
    path = Path(params.source).expanduser()
    return [path.parent if path.suffix == ".jsonl" else path]


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()[:60]


SPEC = StageSpec(
    name="prepare",
    kind="processing",
    inputs=("raw",),
    optional_inputs=("raw",),
    outputs=("data", "rejects"),
    params=lambda task: PrepareParams,
    run=lambda p, task, io: prepare(p, io.inputs.get("raw"), io.outputs["data"], io.outputs["rejects"]),
    needs_task=False,
    external_inputs=lambda p: _external_inputs(p),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
