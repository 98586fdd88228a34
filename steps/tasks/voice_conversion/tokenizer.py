"""The ``speakers`` stage of ``voice_conversion`` (the tokenizer slot of the stage chain): which pairs train,
validate and test, and the speaker embeddings that condition the model, computed once.

Writes ``pairs.jsonl`` (one ``Pair`` per line, with its split: train, validation, test and, when speakers are
held out, test_unseen), ``speakers.npz`` (the conditioning encoder's embedding of every clip it read, and each
speaker's average) and ``features.json`` (the vocoder, the speaker encoder, the mel statistics the model's
targets are normalised with).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from steps.common.audio import AudioError, load_audio
from steps.common.console import progress
from steps.common.manifest import Utterance, load_split, resolve_audio
from steps.common.stage import StageError
from steps.tasks.voice_conversion import pairs as P
from steps.tasks.voice_conversion.params import TokenizerParams

log = logging.getLogger(__name__)
STATS_CLIPS = 200


def select_pairs(params: TokenizerParams, splits: dict[str, list[Utterance]]) -> list[P.Pair]:
    held = set(params.holdout_speakers)
    known = {r.speaker for records in splits.values() for r in records}
    missing = sorted(held - known) + [s for s in (params.src_spk, params.tgt_spk) if s and s not in known]
    if missing:
        raise StageError(f"speaker(s) {', '.join(map(str, missing))} are not in the data (its speakers: "
                         f"{', '.join(sorted(map(str, known)))})")
    seen = known - held
    chosen = {"train": P.pairs_in(splits["train"], "train", params.src_spk, params.tgt_spk, seen)}
    if splits.get("validation"):
        chosen["validation"] = P.pairs_in(splits["validation"], "validation", params.src_spk, params.tgt_spk, seen)
    else:
        chosen["train"], chosen["validation"] = P.split_off_validation(chosen["train"], params.val_ratio, params.seed)
    chosen["train"] = P.sample(chosen["train"], params.max_train_pairs, params.seed)
    test = splits.get("test") or []
    chosen["test"] = P.sample(P.pairs_in(test, "test", params.src_spk, params.tgt_spk, seen), params.max_eval_pairs,
                              params.seed)
    if held:
        unseen = [p for p in P.pairs_in(test, "test_unseen") if p.tgt_speaker in held]
        chosen["test_unseen"] = P.sample(unseen, params.max_eval_pairs, params.seed)
    every = [r for records in splits.values() for r in records]
    out = []
    for split, pairs in chosen.items():
        out += P.with_references(pairs, every, params.seed) if split.startswith("test") else pairs
    if not chosen["train"]:
        raise StageError("no training pairs: the data needs the same sentence from at least two speakers (a "
                         "pair_id field, or equal texts)" + (f" from {params.src_spk} to {params.tgt_spk}"
                                                             if params.src_spk or params.tgt_spk else ""))
    return out


SELECTION = ("src_spk", "tgt_spk", "holdout_speakers", "max_train_pairs", "max_eval_pairs", "val_ratio", "seed")


def read_splits(data: Path) -> tuple[dict[str, list[Utterance]], dict[str, Path]]:
    splits, manifests = {}, {}
    for split in ("train", "validation", "test"):
        splits[split], manifests[split] = load_split(data, split)
    return splits, manifests


def evaluation_pairs(data: Path, features: dict) -> dict[str, list[P.Pair]]:
    """The test pairs (and unseen-speaker test pairs) of a trained model, rebuilt from the data with the pair
    selection its ``features.json`` records: the same pairs the ``speakers`` stage chose."""
    splits, _ = read_splits(data)
    pairs = select_pairs(TokenizerParams(**features["pair_selection"]), splits)
    return {name: [p for p in pairs if p.split == name] for name in ("test", "test_unseen")}


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    from steps.models.speecht5.speakers import SpeakerEncoder
    from steps.models.speecht5.vocoder import Vocoder, check_vocoder_name

    check_vocoder_name(params.vocoder)
    splits, manifests = read_splits(data)
    pairs = select_pairs(params, splits)
    records = {r.id: (r, manifests[s]) for s, rs in splits.items() for r in rs}
    (out / "pairs.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pairs))

    encoder = SpeakerEncoder(params.speaker_encoder)
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for r in splits["train"] + splits["validation"]:
        by_speaker[str(r.speaker)].append(r.id)
    rng = random.Random(params.seed)
    wanted = {s: sorted(rng.sample(ids, min(params.clips_per_speaker, len(ids)))) for s, ids in sorted(by_speaker.items())}
    to_embed = {i for ids in wanted.values() for i in ids}
    if params.use_precomputed_xvectors and params.xvector_mode == "utterance":
        to_embed |= {p.tgt for p in pairs if p.split in ("train", "validation")}
    embeddings: dict[str, np.ndarray] = {}
    skipped = []
    for utt in progress(sorted(to_embed), desc=f"speaker embeddings ({params.speaker_encoder})", unit="clip"):
        record, manifest = records[utt]
        try:
            embeddings[utt] = encoder.embed(load_audio(resolve_audio(manifest, record.audio)))
        except (AudioError, ValueError) as exc:
            skipped.append({"id": utt, "reason": str(exc)})
    centroids = {}
    for speaker, ids in wanted.items():
        vectors = [embeddings[i] for i in ids if i in embeddings]
        if vectors:
            mean = np.mean(vectors, axis=0)
            centroids[speaker] = (mean / np.linalg.norm(mean)).astype(np.float32)
    np.savez(out / "speakers.npz", **{f"utt/{k}": v for k, v in embeddings.items()},
             **{f"spk/{k}": v for k, v in centroids.items()})

    vocoder = Vocoder(params.vocoder)
    targets = sorted({p.tgt for p in pairs if p.split == "train"})
    mels = []
    for utt in progress(random.Random(params.seed).sample(targets, min(STATS_CLIPS, len(targets))),
                        desc="mel statistics", unit="clip"):
        record, manifest = records[utt]
        try:
            mels.append(vocoder.features(load_audio(resolve_audio(manifest, record.audio))))
        except AudioError:
            continue
    frames = np.concatenate(mels)
    features = {"vocoder": params.vocoder, "speaker_encoder": params.speaker_encoder, "speaker_dim": encoder.dim,
                "xvector_mode": params.xvector_mode, "use_precomputed_xvectors": params.use_precomputed_xvectors,
                "frame_rate": vocoder.frame_rate, "mel_mean": frames.mean(0).round(5).tolist(),
                "mel_std": np.maximum(frames.std(0), 1e-3).round(5).tolist(), "pair_selection": params.model_dump(include=set(SELECTION))}
    (out / "features.json").write_text(json.dumps(features, indent=1))
    counts = {split: sum(p.split == split for p in pairs) for split in ("train", "validation", "test", "test_unseen")}
    log.info("pairs %s; %d speaker embeddings (%d skipped)", counts, len(embeddings), len(skipped))
    return {"pairs": counts, "speakers": sorted(centroids), "embedded_clips": len(embeddings), "skipped": skipped,
            "features": {k: v for k, v in features.items() if not k.startswith("mel_")},
            "metrics": {**{f"{k}_pairs": v for k, v in counts.items() if v}, "speakers": len(centroids),
                        "embedded": len(embeddings)}}
