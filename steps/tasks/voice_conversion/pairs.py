"""Parallel pairs: two recordings of the same sentence by different speakers, source -> target.

Clips pair up by ``pair_id`` (the bundled corpus; CMU ARCTIC's utterance ids) or, when a record has
none, by their normalised text. Every ordered pair of distinct speakers inside a group is one pair
(any-to-any), unless ``src_spk`` / ``tgt_spk`` select one direction as the seed does (awb -> clb).
Prepare already splits by ``pair_id`` (or text), so a sentence never spans splits.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict, dataclass

from steps.common.manifest import Utterance
from steps.common.text import normalize_for_scoring


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str
    src_speaker: str
    tgt_speaker: str
    text: str
    split: str
    ref: str = ""  # another clip of the target speaker: the reference an any-to-any request would send

    def to_dict(self) -> dict:
        return asdict(self)


def group_key(record: Utterance) -> str:
    pair_id = record.extra.get("pair_id")
    return f"pair:{pair_id}" if pair_id not in (None, "") else f"text:{normalize_for_scoring(record.text)}"


def pairs_in(records: list[Utterance], split: str, src_spk: str | None = None, tgt_spk: str | None = None,
             speakers: set[str] | None = None) -> list[Pair]:
    """Ordered pairs among ``records`` (speakers limited to ``speakers`` when given)."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for record in records:
        if record.speaker and (speakers is None or record.speaker in speakers):
            groups[group_key(record)].append(record)
    found = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: (r.speaker, r.id))
        for a in members:
            for b in members:
                if a.speaker == b.speaker:
                    continue
                if (src_spk and a.speaker != src_spk) or (tgt_spk and b.speaker != tgt_spk):
                    continue
                found.append(Pair(a.id, b.id, str(a.speaker), str(b.speaker), b.text, split))
    return found


def with_references(pairs: list[Pair], records: list[Utterance], seed: int) -> list[Pair]:
    """Each pair gets a reference clip: another recording of its target speaker (never the target itself,
    never a clip of the same sentence), so evaluation conditions the model the way a user would."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for record in records:
        by_speaker[str(record.speaker)].append(record)
    rng = random.Random(seed)
    out = []
    for pair in pairs:
        candidates = [r.id for r in by_speaker[pair.tgt_speaker]
                      if r.id != pair.tgt and normalize_for_scoring(r.text) != normalize_for_scoring(pair.text)]
        out.append(Pair(**{**pair.to_dict(), "ref": rng.choice(candidates) if candidates else pair.tgt}))
    return out


def sample(pairs: list[Pair], limit: int | None, seed: int) -> list[Pair]:
    if limit is None or len(pairs) <= limit:
        return pairs
    return sorted(random.Random(seed).sample(pairs, limit), key=lambda p: (p.src, p.tgt))


def split_off_validation(pairs: list[Pair], ratio: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """When the data has no validation split: whole sentence groups (never half a group) go to validation."""
    texts = sorted({normalize_for_scoring(p.text) for p in pairs})
    rng = random.Random(seed)
    held = set(rng.sample(texts, max(1, round(len(texts) * ratio)))) if texts and ratio > 0 else set()
    train = [p for p in pairs if normalize_for_scoring(p.text) not in held]
    validation = [Pair(**{**p.to_dict(), "split": "validation"}) for p in pairs if normalize_for_scoring(p.text) in held]
    return train, validation
