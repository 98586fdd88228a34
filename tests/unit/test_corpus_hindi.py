"""The bundled Hindi corpus (steps/corpus/hindi): a valid manifest, decodable audio, splits by
sentence, Devanagari transcripts, enough vocabulary, within its size budget, and what the generator
plans for its seed. Fast: it decodes a sample of 20 clips, and plans without synthesising."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

import pytest

from steps.common.audio import load_audio
from steps.corpus import generate_corpus as base
from steps.corpus import generate_corpus_hindi as hindi

ROOT = Path(__file__).resolve().parents[2] / "steps" / "corpus" / "hindi"
ENGLISH_MANIFEST = ROOT.parent / "sample" / "manifest.jsonl"
SPLITS = ("train", "validation", "test")
# Devanagari letters, signs and the danda; a space between words; '?' may end a question
TEXT = re.compile(r"[\u0900-\u0963\u0966-\u097F]+(?: [\u0900-\u0963\u0966-\u097F]+)*[।?]")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows(ROOT / "manifest.jsonl")


def test_manifest_has_the_english_fields_and_sane_values(rows):
    english_keys = list(json.loads(ENGLISH_MANIFEST.read_text(encoding="utf-8").splitlines()[0]))
    assert 800 <= len(rows) <= 1500
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    english_speakers = {r["speaker"] for r in _rows(ENGLISH_MANIFEST)}
    for r in rows:
        assert list(r) == english_keys
        assert r["id"] == f"{r['pair_id']}_{r['speaker']}" and r["audio"] == f"audio/{r['id']}.opus"
        assert r["sample_rate"] == 16000 and 1.0 <= r["duration"] <= 6.0
        assert r["split"] in SPLITS and r["style"] == r["emotion"]
        assert r["speaker"].startswith("hi") and r["speaker"] not in english_speakers
        assert r["voice"].startswith("hi+") and r["gender"] in ("male", "female")
        assert len(r["emphasis"]) == len(r["words"]) and set(r["emphasis"]) <= {0, 1}


def test_every_audio_file_exists_and_a_sample_decodes(rows):
    files = {p.name for p in (ROOT / "audio").iterdir()}
    assert files == {Path(r["audio"]).name for r in rows}
    for r in random.Random(0).sample(rows, 20):
        audio = load_audio(ROOT / r["audio"])
        assert audio.ndim == 1 and abs(len(audio) / 16000 - r["duration"]) < 0.05, r["id"]
        assert 0.0 < float(abs(audio).max()) <= 0.99


def test_text_is_devanagari_and_words_follow_it(rows):
    for r in rows:
        text = r["text"]
        assert TEXT.fullmatch(text), text
        assert unicodedata.normalize("NFKC", text) == text  # clean_transcript leaves it as it is
        assert r["words"] == [w.strip("।?") for w in text.split()]


def test_splits_are_disjoint_by_sentence(rows):
    texts = defaultdict(set)  # split -> sentence texts
    pairs = defaultdict(set)  # pair_id -> (text, split)
    for r in rows:
        texts[r["split"]].add(r["text"])
        pairs[r["pair_id"]].add((r["text"], r["split"]))
    assert all(len(v) == 1 for v in pairs.values())  # a sentence has one text and one split
    assert len({next(iter(v))[0] for v in pairs.values()}) == len(pairs)  # sentences are unique
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not texts[a] & texts[b]
    n = len(pairs)
    assert abs(len(texts["train"]) / n - 0.8) < 0.02
    assert abs(len(texts["test"]) / n - 0.1) < 0.02
    assert all(len(v) >= 2 for v in _speakers_per_pair(rows).values())  # parallel data


def _speakers_per_pair(rows: list[dict]) -> dict[str, set[str]]:
    out = defaultdict(set)
    for r in rows:
        out[r["pair_id"]].add(r["speaker"])
    return out


def test_vocabulary_and_size(rows):
    assert len({w for r in rows for w in r["words"]}) >= 300
    size = ROOT.stat().st_size + sum(p.stat().st_size for p in ROOT.rglob("*"))  # as du -sb
    assert size < 6_000_000


def test_the_manifest_is_what_the_generator_plans_for_its_seed(rows, tmp_path):
    lang = hindi.HINDI
    jobs = base.plan(lang.num_sentences, lang.seed, tmp_path, 12000, lang)
    keys = ("id", "text", "words", "emphasis", "speaker", "style", "pair_id", "split", "voice", "pitch")
    assert sorted(tuple(str(j[k]) for k in keys) for j in jobs) == [tuple(str(r[k]) for k in keys) for r in rows]


@pytest.mark.parametrize(("got", "want"), [
    (hindi.plural("कुर्सी", "f"), "कुर्सियाँ"), (hindi.plural("किताब", "f"), "किताबें"),
    (hindi.plural("गुड़िया", "f"), "गुड़ियाँ"), (hindi.plural("माला", "f"), "मालाएँ"),
    (hindi.plural("कमरा", "m"), "कमरे"), (hindi.plural("घर", "m"), "घर"),
    (hindi.obl("तकिया", "m"), "तकिए"), (hindi.obl("कछुआ", "m"), "कछुए"),
    (hindi.agree("नया", "f"), "नई"), (hindi.agree("बड़ा", "m", True), "बड़े"),
    (hindi.agree("लाल", "f"), "लाल"),
    (hindi.past("जा", "f", True), "गईं"), (hindi.past("बंद कर", "f"), "बंद की"),
    (hindi.past("ख़रीद", "m", True), "ख़रीदे"), (hindi.past("आ", "m"), "आया"),
    (hindi.fut("आ", "m"), "आएगा"), (hindi.fut("पी", "m", True), "पिएँगे"),
    (hindi.fut("देख", "f"), "देखेगी"), (hindi.fut("रख दे", "m", True), "रख देंगे"),
    (hindi.imperative("रख"), "रखिए"), (hindi.imperative("ले जा"), "ले जाइए"),
    (hindi.imperative("साफ़ कर"), "साफ़ कीजिए"), (hindi.conjunctive("ठीक कर"), "ठीक करके"),
    (hindi.was("f", True), "थीं"),
])
def test_hindi_agreement(got, want):
    assert got == want
