#!/usr/bin/env python3
"""Generate the bundled sample speech corpus with espeak-ng.

The corpus is fully synthetic: sentences are produced from templates and word
lists defined in this file (so the text is ours and released CC0), then spoken
by several espeak-ng English voices ("speakers") in four speaking styles that
map to emotion classes (neutral, happy, sad, angry). Every sentence is spoken
by two or three different speakers (parallel pairs for voice conversion),
about half of the utterances carry SSML word emphasis, and every clip is scaled
to a random loudness between about -45 and -10 dBFS.

Output (``--out``, default ``steps/corpus/sample``)::

    manifest.jsonl          one JSON object per utterance, sorted by id
    audio/<id>.opus         16 kHz mono Ogg/Opus, one file per utterance

All random choices are drawn in the parent process from ``--seed``, so the
same seed always yields the same manifest text (audio bytes may differ
between encoder versions). Requires ``espeak-ng`` on PATH
(``apt-get install espeak-ng``) plus numpy, scipy and soundfile.

Usage::

    python steps/corpus/generate_corpus.py --seed 13 --jobs 2

The machinery (synthesis, levelling, Opus encoding, splits, manifest) is shared with
other languages: a sibling module describes its text and voices in a ``Language``
and calls ``main(argv, language)``, as ``generate_corpus_hindi.py`` does.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

LOG = logging.getLogger("generate_corpus")

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
MIN_DUR, MAX_DUR = 1.0, 6.0
DBFS_RANGE = (-45.0, -10.0)
PEAK_LIMIT = 0.8  # pre-encode peak ceiling (-1.9 dBFS): Opus overshoots peaks by up to ~1.6 dB
DECODED_PEAK_MAX = 0.97  # ceiling for the decoded audio (requirement: <= 0.99)
MAX_LIMIT_DB = 10.0  # most peak reduction the limiter may apply to reach a loud target
MAX_BYTES = 10_000_000  # size budget of the committed sample folder
SPLIT_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
DEFAULT_OUT = Path(__file__).resolve().parent / "sample"

# (speaker id, espeak voice, gender, base pitch 0-99, base rate in wpm)
SPEAKERS: list[tuple[str, str, str, int, int]] = [
    ("spk01", "en-us+m1", "male", 42, 170),
    ("spk02", "en-us+f2", "female", 58, 165),
    ("spk03", "en-gb+m3", "male", 36, 160),
    ("spk04", "en-gb+f3", "female", 62, 175),
    ("spk05", "en-us+m7", "male", 48, 180),
    ("spk06", "en-gb-x-rp+f1", "female", 55, 168),
    ("spk07", "en-us+f4", "female", 66, 158),
    ("spk08", "en-gb-x-rp+m2", "male", 44, 172),
]

# style -> (rate factor, pitch offset, SSML pitch range, espeak amplitude -a)
STYLES: dict[str, tuple[float, int, str, int]] = {
    "neutral": (1.00, 0, "medium", 100),
    "happy": (1.12, 12, "high", 120),
    "sad": (0.80, -14, "x-low", 70),
    "angry": (1.22, 4, "x-high", 170),
}

# --------------------------------------------------------------------------- text
# Word lists written for this corpus (CC0). Nouns here take regular plurals.
NAMES = """Anna Peter Maria David Sarah James Laura Thomas Emma Daniel Olivia Michael
    Grace Robert Alice Henry Julia Samuel Rachel Oliver Helen George Claire Edward Lucy
    Martin Sophie Andrew Nora Simon Hannah Victor Irene Oscar Diana Felix Ruth Walter Clara
    Frank Emily Lewis Paula Arthur Megan Brian Susan Kevin Linda Harold Rosa Patrick Eva
    Vincent Molly Carl Jane Leo Fiona Ian""".split()
PLACES = """London Paris Boston Chicago Dublin Madrid Berlin Vienna Toronto Denver Seattle
    Houston Glasgow Oxford Sydney Tokyo Rome Lisbon Prague Oslo Canada Mexico Spain Italy
    France Japan Brazil Egypt Norway Ireland Scotland Texas Florida Chile Peru Kenya Greece
    Portugal Sweden Iceland Africa Europe Asia Australia India China""".split()
THINGS = """book letter bottle basket bag box cup plate lamp chair table window door key phone
    camera radio clock watch jacket coat shirt hat shoe glove umbrella blanket pillow mirror
    picture map ticket notebook pencil bucket ladder hammer candle bicycle guitar piano drum
    kettle pan spoon fork bowl jar envelope package parcel wallet suitcase helmet toy ball
    kite computer printer screen keyboard battery engine wheel tool rope towel bench fence
    gate boat car truck bus train sofa desk drawer cabinet vase plant flower carpet curtain
    oven heater fan sandwich cake pie apple orange lemon carrot onion cookie egg banana melon
    peach pear brush comb bell coin ring necklace button scarf sweater boot sock tent
    backpack cushion tray sink jug""".split()
PEOPLE = """doctor teacher farmer driver neighbor student nurse pilot baker lawyer painter
    singer writer soldier sailor engineer manager waiter cousin uncle aunt brother sister
    friend guest visitor customer officer captain artist scientist dancer player coach
    clerk guard chef mechanic librarian plumber gardener tailor banker reporter""".split()
ANIMALS = """dog cat horse rabbit bird duck goat cow pig fox tiger lion bear monkey squirrel
    owl frog snake turtle whale dolphin parrot donkey camel zebra puppy kitten pony chicken
    eagle spider bee hamster lizard penguin""".split()
LOCATIONS = """kitchen garden garage library station market museum hospital office bakery
    school park river bridge beach forest harbor airport hotel church castle village farm
    mountain lake island valley street corner cafe restaurant theater stadium factory bank
    shop hall basement attic bedroom bathroom hallway classroom playground square tower
    cottage barn field meadow desert cave shore pier tunnel""".split()
ADJ_THING = """red blue green yellow black white brown purple gray pink golden silver big small
    tiny huge large little long short tall heavy light old new ancient modern broken clean
    dirty empty full bright dark warm cold wet dry soft hard smooth rough strange famous
    cheap expensive simple beautiful ugly pretty lovely wooden plastic metal paper leather
    cotton fresh round square flat narrow wide thick thin sharp shiny dusty rusty sticky
    fancy plain useful favorite special strong fragile enormous elegant tidy""".split()
ADJ_PERSON = """happy sad tired hungry busy lazy clever brave careful gentle polite honest
    lucky curious nervous calm angry cheerful quiet friendly patient proud shy serious
    sleepy worried excited grumpy generous kind rude funny lonely bored thirsty""".split()
ADJ_PLACE = """crowded quiet beautiful empty busy noisy peaceful small huge cold warm dark
    bright clean dirty famous lovely pleasant windy dusty modern ancient""".split()
WEATHER = "cold warm sunny rainy windy cloudy foggy snowy hot humid stormy dry".split()
FOOD = """tea coffee soup bread rice cheese milk juice water butter honey pasta salad
    chocolate sugar pepper salt jam cereal yogurt lemonade""".split()
RELATIVES = "mother father sister brother cousin uncle aunt grandmother grandfather son daughter wife husband".split()
ADVERBS = """quickly slowly carefully quietly gently suddenly easily badly politely secretly
    patiently proudly nervously eagerly calmly safely neatly loudly happily firmly softly
    angrily sadly silently""".split()
DEGREE = "very really quite rather extremely too so fairly".split()
NUMBERS = """two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen eighteen twenty thirty forty fifty sixty seventy eighty ninety""".split()
DURATIONS = ["minutes", "hours"]
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
PREPS = ["in", "near", "behind", "under", "next to", "beside", "outside", "inside"]
MEALS = "breakfast lunch dinner".split()
BEFORE = MEALS + "school work noon midnight".split()
FOOD_ADJ = "hot fresh sweet cold warm".split()
CURRENCY = ["dollars", "pounds"]
T_PAST = (["yesterday", "last night", "last week", "last summer", "this morning", "two days ago",
           "last winter", "an hour ago"] + [f"on {d}" for d in DAYS] + [f"in {m}" for m in MONTHS])
T_FUT = (["tomorrow", "next week", "next month", "tonight", "later today", "next year", "soon",
          "this weekend", "next spring"] + [f"on {d}" for d in DAYS])
# (base, past) verb forms
V_THING = [tuple(v.split("/")) for v in """open/opened close/closed clean/cleaned paint/painted
    carry/carried find/found buy/bought sell/sold bring/brought fix/fixed move/moved wash/washed
    check/checked borrow/borrowed lend/lent hide/hid drop/dropped lift/lifted pack/packed
    order/ordered return/returned deliver/delivered measure/measured repair/repaired keep/kept
    take/took leave/left catch/caught hold/held choose/chose forget/forgot share/shared
    replace/replaced wrap/wrapped push/pushed pull/pulled throw/threw break/broke steal/stole
    lose/lost examine/examined polish/polished fill/filled need/needed want/wanted like/liked
    notice/noticed describe/described draw/drew test/tested weigh/weighed collect/collected
    drag/dragged shake/shook touch/touched count/counted build/built design/designed
    print/printed unlock/unlocked lock/locked rent/rented""".split()]
V_PERSON = [tuple(v.split("/")) for v in """meet/met call/called help/helped visit/visited
    invite/invited thank/thanked follow/followed greet/greeted warn/warned remember/remembered
    teach/taught hire/hired ask/asked tell/told join/joined trust/trusted forgive/forgave
    interview/interviewed phone/phoned miss/missed admire/admired recognize/recognized
    blame/blamed""".split()]
V_MOVE = [tuple(v.split("/")) for v in """walk/walked drive/drove travel/traveled run/ran
    go/went fly/flew swim/swam hurry/hurried cycle/cycled move/moved return/returned
    sail/sailed ride/rode wander/wandered race/raced jog/jogged rush/rushed""".split()]
V_INTRANS = [tuple(v.split("/")) for v in """sleep/slept laugh/laughed sing/sang dance/danced
    wait/waited work/worked study/studied cook/cooked rest/rested smile/smiled cry/cried
    shout/shouted whisper/whispered play/played read/read write/wrote listen/listened
    relax/relaxed practice/practiced sit/sat stand/stood eat/ate argue/argued
    complain/complained hide/hid""".split()]


def plural(noun: str) -> str:
    """Regular English plural: 'box' -> 'boxes', 'battery' -> 'batteries'."""
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third(verb: str) -> str:
    """Third person singular present: 'go' -> 'goes', 'carry' -> 'carries'."""
    return plural(verb) if not verb.endswith("o") else verb + "es"


def a(word: str) -> str:
    """Indefinite article + word."""
    vowel = word[0] in "aeiou" and not word.startswith(("use", "uni"))
    return ("an " if vowel or word.startswith("hon") else "a ") + word


TEMPLATES = [
    lambda c: f"{c(NAMES)} {c(V_THING)[1]} the {c(ADJ_THING)} {c(THINGS)} {c(T_PAST)}.",
    lambda c: f"The {c(ADJ_PERSON)} {c(PEOPLE)} {c(V_THING)[1]} {a(c(ADJ_THING))} {c(THINGS)}.",
    lambda c: f"Please {c(V_THING)[0]} the {c(THINGS)} {c(PREPS)} the {c(LOCATIONS)}.",
    lambda c: f"Can you {c(V_THING)[0]} the {c(ADJ_THING)} {c(THINGS)} {c(T_FUT)}?",
    lambda c: f"We will {c(V_MOVE)[0]} to {c(PLACES)} {c(T_FUT)}.",
    lambda c: f"There are {c(NUMBERS)} {plural(c(THINGS))} in the {c(LOCATIONS)}.",
    lambda c: f"My {c(RELATIVES)} {c(V_MOVE)[1]} to {c(PLACES)} {c(T_PAST)}.",
    lambda c: f"Did you {c(V_PERSON)[0]} the {c(PEOPLE)} at the {c(LOCATIONS)}?",
    lambda c: f"I think the {c(THINGS)} is {c(DEGREE)} {c(ADJ_THING)}.",
    lambda c: f"Don't forget to {c(V_THING)[0]} the {c(THINGS)}!",
    lambda c: f"Where did you put the {c(ADJ_THING)} {c(THINGS)}?",
    lambda c: f"The {c(ANIMALS)} {c(V_INTRANS)[1]} {c(PREPS)} the {c(LOCATIONS)}.",
    lambda c: f"{c(NAMES)} and {c(NAMES)} {c(V_INTRANS)[1]} {c(T_PAST)}.",
    lambda c: f"Would you like some {c(FOOD_ADJ)} {c(FOOD)}?",
    lambda c: f"The {c(THINGS)} {c(PREPS)} the {c(LOCATIONS)} was {c(ADJ_THING)}.",
    lambda c: f"{c(NAMES)} always {third(c(V_INTRANS)[0])} {c(ADVERBS)}.",
    lambda c: f"It takes {c(NUMBERS)} {c(DURATIONS)} to {c(V_MOVE)[0]} to the {c(LOCATIONS)}.",
    lambda c: f"Why is the {c(PEOPLE)} so {c(ADJ_PERSON)}?",
    lambda c: f"{c(NAMES)} {c(V_PERSON)[1]} the {c(PEOPLE)} {c(ADVERBS)} {c(T_PAST)}.",
    lambda c: f"Our {c(ADJ_PERSON)} {c(PEOPLE)} {third(c(V_THING)[0])} {plural(c(THINGS))} every {c(DAYS)}.",
    lambda c: f"I have never seen such {a(c(ADJ_THING))} {c(ANIMALS)}!",
    lambda c: f"How many {plural(c(THINGS))} did {c(NAMES)} {c(V_THING)[0]}?",
    lambda c: f"She said the {c(LOCATIONS)} was {c(DEGREE)} {c(ADJ_PLACE)}.",
    lambda c: f"{c(NAMES)} is going to {c(V_THING)[0]} the {c(THINGS)} {c(T_FUT)}.",
    lambda c: f"Is it {c(WEATHER)} in {c(PLACES)} today?",
    lambda c: f"The {c(PEOPLE)} from {c(PLACES)} {c(V_INTRANS)[1]} {c(ADVERBS)}.",
    lambda c: f"They {c(V_THING)[1]} {c(NUMBERS)} {plural(c(THINGS))} at the {c(LOCATIONS)}.",
    lambda c: f"You should {c(V_THING)[0]} your {c(THINGS)} before {c(BEFORE)}.",
    lambda c: f"Let's {c(V_MOVE)[0]} to the {c(LOCATIONS)} {c(T_FUT)}.",
    lambda c: f"I can't find my {c(ADJ_THING)} {c(THINGS)} anywhere.",
    lambda c: f"The {c(PEOPLE)} isn't {c(ADJ_PERSON)} today.",
    lambda c: f"We're meeting {c(NAMES)} at the {c(LOCATIONS)} {c(T_FUT)}.",
    lambda c: f"The {c(ANIMALS)} was {c(DEGREE)} {c(ADJ_PERSON)} {c(T_PAST)}.",
    lambda c: f"It costs {c(NUMBERS)} {c(CURRENCY)}, said the {c(PEOPLE)}.",
    lambda c: f"{c(NAMES)} wants to {c(V_MOVE)[0]} to {c(PLACES)} with {c(NAMES)}.",
    lambda c: f"When will the {c(PEOPLE)} {c(V_PERSON)[0]} your {c(RELATIVES)}?",
    lambda c: f"After {c(MEALS)}, {c(NAMES)} {c(V_INTRANS)[1]} in the {c(LOCATIONS)}.",
    lambda c: f"The {c(THINGS)} is {c(DEGREE)} {c(ADJ_THING)} for the {c(ANIMALS)}.",
    lambda c: f"My {c(RELATIVES)} lives {c(NUMBERS)} miles from {c(PLACES)}.",
    lambda c: f"Nobody {c(V_THING)[1]} the {c(THINGS)} {c(T_PAST)}.",
    lambda c: f"{c(NAMES)} {c(V_THING)[1]} the {c(ADJ_THING)} {c(THINGS)} and took it to the {c(LOCATIONS)}.",
    lambda c: f"If it is {c(WEATHER)} {c(T_FUT)}, we will {c(V_MOVE)[0]} to the {c(LOCATIONS)}.",
    lambda c: f"The {c(ADJ_PERSON)} {c(PEOPLE)} told me that the {c(LOCATIONS)} was {c(ADJ_PLACE)}.",
    lambda c: f"My {c(RELATIVES)} and I {c(V_MOVE)[1]} to {c(PLACES)} to {c(V_PERSON)[0]} the {c(PEOPLE)}.",
]


class Deck:
    """Draw from word lists like dealing cards, so every word is used about equally often."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.piles: dict[int, list[Any]] = {}

    def __call__(self, items: list[Any]) -> Any:
        pile = self.piles.get(id(items))  # word lists are module constants: ids are stable
        if not pile:
            pile = self.piles[id(items)] = self.rng.sample(items, len(items))
        return pile.pop()


def make_sentence(deck: Deck) -> str:
    """One sentence from a randomly dealt template, first letter capitalised."""
    text = deck(TEMPLATES)(deck)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Language:
    """What one corpus brings: its text, voices, ids and defaults. The rest is shared."""

    name: str
    make_sentence: Callable[[Deck], str]  # one sentence from the dealt word lists
    speakers: list[tuple[str, str, str, int, int]]  # like SPEAKERS
    default_out: Path
    num_sentences: int  # default --num-sentences
    seed: int  # default --seed
    max_bytes: int  # size budget of the output folder
    description: str  # --help headline
    pair_prefix: str = "s"  # pair_id = f"{pair_prefix}{i:04d}"
    punctuation: str = ".,?!"  # stripped from words (the `words` field, SSML emphasis)
    speakers_per_sentence: tuple[int, ...] = (2, 3)  # drawn per sentence
    split_fractions: tuple[tuple[str, float], ...] = SPLIT_FRACTIONS  # by sentence
    parallel: bool = True  # drop a sentence left with fewer than two voices
    dbfs_range: tuple[float, float] = DBFS_RANGE  # clip levels, drawn uniformly
    engine: str = "espeak"  # the synthesiser, a key of ENGINES


ENGLISH = Language(name="English", make_sentence=make_sentence, speakers=SPEAKERS,
                   default_out=DEFAULT_OUT, num_sentences=940, seed=13, max_bytes=MAX_BYTES,
                   description=__doc__.split("\n\n")[0])


def ssml_for(words: list[str], emphasis: list[int], pitch_range: str,
             punctuation: str = ".,?!") -> str:
    """Build the SSML document; emphasised words keep their punctuation outside the tag."""
    parts = []
    for word, emph in zip(words, emphasis):
        if emph:
            core = word.rstrip(punctuation)
            parts.append(f'<emphasis level="strong">{core}</emphasis>{word[len(core):]}')
        else:
            parts.append(word)
    return f'<speak><prosody range="{pitch_range}">{" ".join(parts)}</prosody></speak>'


def trim_silence(x: np.ndarray, sr: int, margin_s: float = 0.08) -> np.ndarray:
    """Cut leading/trailing samples quieter than -50 dB below the peak, keeping a margin."""
    loud = np.flatnonzero(np.abs(x) > np.max(np.abs(x)) * 10 ** (-50 / 20))
    if loud.size == 0:
        return x
    margin = int(margin_s * sr)
    return x[max(0, loud[0] - margin): loud[-1] + margin + 1]


def rms(x: np.ndarray) -> float:
    """Root mean square of the whole clip (never exactly zero)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def dbfs(x: np.ndarray) -> float:
    """RMS level of the whole clip in dBFS: 20*log10(sqrt(mean(x**2)))."""
    return 20 * float(np.log10(rms(x)))


def espeak(text: str, voice: str, rate: int, pitch: int, amplitude: int) -> np.ndarray:
    """Run espeak-ng on SSML text and return 16 kHz float audio."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "out.wav")
        cmd = ["espeak-ng", "-m", "-z", "-v", voice, "-s", str(rate), "-p", str(pitch),
               "-a", str(amplitude), "-w", wav, text]
        subprocess.run(cmd, check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    if sr != ESPEAK_RATE:
        raise RuntimeError(f"unexpected espeak sample rate {sr}")
    x = trim_silence(x, sr)
    return resample_poly(x, 320, 441).astype(np.float32)  # 22050 -> 16000 Hz


def limit_peaks(x: np.ndarray, threshold: float, smooth: int = 160) -> np.ndarray:
    """Smooth look-ahead peak limiter: |output| <= threshold, gain changes over ~10 ms."""
    env = maximum_filter1d(np.abs(x), size=2 * smooth + 1)
    need = np.minimum(1.0, threshold / np.maximum(env, 1e-9))
    # a moving average of a moving minimum never exceeds the pointwise minimum
    gain = uniform_filter1d(minimum_filter1d(need, size=smooth), size=smooth)
    return (x * np.minimum(gain, need)).astype(np.float32)


def level(x: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale x to the target RMS with peak <= PEAK_LIMIT, limiting up to MAX_LIMIT_DB if needed."""
    peak, target = float(np.max(np.abs(x))), 10 ** (target_dbfs / 20)
    if peak / rms(x) <= PEAK_LIMIT / target:  # plain gain is enough
        return (x * target / rms(x)).astype(np.float32)
    lo, hi = peak * 10 ** (-MAX_LIMIT_DB / 20), peak  # bisect the highest threshold that works
    for _ in range(14):
        mid = (lo * hi) ** 0.5
        if rms(limit_peaks(x, mid)) / mid >= target / PEAK_LIMIT:
            lo = mid
        else:
            hi = mid
    y = limit_peaks(x, lo)
    # the target, or as loud as MAX_LIMIT_DB of limiting allows without exceeding PEAK_LIMIT
    return (y * min(target / rms(y), PEAK_LIMIT / float(np.max(np.abs(y))))).astype(np.float32)


def ogg_crc(data: bytes) -> int:
    """CRC-32 as used by Ogg pages (poly 0x04C11DB7, no reflection, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def strip_opus_tags_padding(data: bytes) -> bytes:
    """Drop the ~800 zero bytes libsndfile pads the OpusTags header with (RFC 7845 allows it)."""
    first_len = 27 + data[26] + sum(data[27:27 + data[26]])
    page = data[first_len:]
    nseg = page[26]
    body = 27 + nseg
    tags = page[body:body + sum(page[27:body])]
    if page[:4] != b"OggS" or tags[:8] != b"OpusTags" or nseg >= 255:
        return data
    pos = 12 + int.from_bytes(tags[8:12], "little")  # after vendor string
    count = int.from_bytes(tags[pos:pos + 4], "little")
    pos += 4
    for _ in range(count):
        pos += 4 + int.from_bytes(tags[pos:pos + 4], "little")
    tags = tags[:pos]
    lacing = bytes([255] * (len(tags) // 255) + [len(tags) % 255])
    header = bytearray(page[:26] + bytes([len(lacing)]) + lacing)
    header[22:26] = b"\0\0\0\0"
    new_page = bytes(header) + tags
    crc = ogg_crc(new_page).to_bytes(4, "little")
    new_page = new_page[:22] + crc + new_page[26:]
    return data[:first_len] + new_page + page[body + sum(page[27:body]):]


def encode(x: np.ndarray, path: Path, bitrate: int) -> np.ndarray:
    """Write 16 kHz mono Ogg/Opus at ~bitrate bit/s and return the decoded audio."""
    buf = io.BytesIO()
    # libsndfile maps compression_level linearly onto 256..6 kbit/s for Opus
    sf.write(buf, x, SAMPLE_RATE, format="OGG", subtype="OPUS",
             compression_level=1.0 - (bitrate - 6000) / 250000)
    path.write_bytes(strip_opus_tags_padding(buf.getvalue()))
    y, sr = sf.read(path, dtype="float32")
    if sr != SAMPLE_RATE or y.ndim != 1:
        raise RuntimeError(f"{path}: decoded as {sr} Hz, shape {y.shape}")
    return y


def espeak_job(job: dict[str, Any], rate: int) -> np.ndarray:
    return espeak(job["ssml"], job["voice"], rate, job["pitch"], job["amplitude"])


# engine name -> (job, speaking rate in wpm) -> 16 kHz float audio; a sibling module may add one
# (generate_corpus_guard.py adds "piper"); worker processes are forked, so they inherit the additions
ENGINES: dict[str, Callable[[dict[str, Any], int], np.ndarray]] = {"espeak": espeak_job}


def synthesise(job: dict[str, Any]) -> dict[str, Any] | None:
    """Synthesise, level and encode one utterance; return measured fields or None if dropped."""
    rate = job["rate"]
    for _ in range(4):  # too long -> speak faster (deterministic retries)
        x = ENGINES[job.get("engine", "espeak")](job, rate)
        if len(x) <= MAX_DUR * SAMPLE_RATE * 0.99:
            break
        rate = int(round(rate * 1.15))
    else:
        return None
    if len(x) < MIN_DUR * SAMPLE_RATE * 1.01:  # too short -> pad with silence
        pad = int(MIN_DUR * SAMPLE_RATE * 1.05) - len(x)
        x = np.pad(x, (pad // 2, pad - pad // 2))
    x = level(x, job["target_dbfs"])
    path = Path(job["path"])
    y = encode(x, path, job["bitrate"])
    codec_change = dbfs(y) - dbfs(x)
    for _ in range(3):  # rare: the codec overshot a peak, so re-encode a little quieter
        peak = float(np.max(np.abs(y)))
        if peak <= DECODED_PEAK_MAX:
            break
        x = (x * DECODED_PEAK_MAX / peak * (0.9 if peak >= 0.999 else 1.0)).astype(np.float32)
        y = encode(x, path, job["bitrate"])
    return {"id": job["id"], "rate": rate, "duration": round(len(y) / SAMPLE_RATE, 3),
            "rms_dbfs": round(dbfs(y), 2), "peak": float(np.max(np.abs(y))),
            "codec_change": codec_change}


def assign_splits(n: int, rng: random.Random,
                  fractions: tuple[tuple[str, float], ...] = SPLIT_FRACTIONS) -> list[str]:
    """Split sentence indices ~80/10/10 (by sentence, so texts never cross splits)."""
    order = list(range(n))
    rng.shuffle(order)
    splits = [""] * n
    start = 0
    for k, (name, frac) in enumerate(fractions):
        end = n if k == len(fractions) - 1 else start + round(frac * n)
        for i in order[start:end]:
            splits[i] = name
        start = end
    return splits


def plan(num_sentences: int, seed: int, audio_dir: Path, bitrate: int,
         lang: Language = ENGLISH) -> list[dict[str, Any]]:
    """Draw every random choice (text, speakers, style, emphasis, level) up front."""
    rng = random.Random(seed)
    deck = Deck(rng)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < num_sentences:
        text = lang.make_sentence(deck)
        if text.lower() not in seen and 4 <= len(text.split()) <= 12:
            seen.add(text.lower())
            texts.append(text)
    splits = assign_splits(len(texts), rng, lang.split_fractions)
    jobs = []
    for i, (text, split) in enumerate(zip(texts, splits), start=1):
        pair_id = f"{lang.pair_prefix}{i:04d}"
        words = [w.strip(lang.punctuation) for w in text.split()]
        n_speakers = rng.choice(lang.speakers_per_sentence)
        for spk, voice, gender, base_pitch, base_rate in rng.sample(lang.speakers, n_speakers):
            style = rng.choice(list(STYLES))
            rate_f, pitch_off, prange, amp = STYLES[style]
            rate = int(round(base_rate * rate_f * rng.uniform(0.94, 1.06)))
            pitch = int(np.clip(base_pitch + pitch_off + rng.randint(-5, 5), 0, 99))
            emphasis = [0] * len(words)
            if rng.random() < 0.5 and lang.engine == "espeak":  # SSML emphasis: espeak-ng only
                content = [k for k, w in enumerate(words) if len(w) > 3]
                for k in rng.sample(content, min(len(content), rng.choice((1, 2)))):
                    emphasis[k] = 1
            uid = f"{pair_id}_{spk}"
            jobs.append({
                "id": uid, "audio": f"audio/{uid}.opus", "path": str(audio_dir / f"{uid}.opus"),
                "text": text, "words": words, "emphasis": emphasis, "speaker": spk,
                "gender": gender, "style": style, "pair_id": pair_id, "split": split,
                "voice": voice, "rate": rate, "pitch": pitch, "amplitude": amp,
                "target_dbfs": round(rng.uniform(*lang.dbfs_range), 2),
                "ssml": ssml_for(text.split(), emphasis, prange, lang.punctuation),
                "bitrate": bitrate, "engine": lang.engine,
            })
    return jobs


def main(argv: list[str] | None = None, lang: Language = ENGLISH) -> int:
    """Generate the corpus of ``lang``: parse ``argv``, plan, synthesise, write the manifest."""
    parser = argparse.ArgumentParser(description=lang.description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=lang.default_out, help="output folder")
    per = "-".join(str(n) for n in lang.speakers_per_sentence)
    parser.add_argument("--num-sentences", type=int, default=lang.num_sentences,
                        help=f"distinct sentences (each spoken by {per} speakers)")
    parser.add_argument("--bitrate", type=float, default=12.0,
                        help="Opus target bitrate in kbit/s (libsndfile accepts 6-256)")
    parser.add_argument("--seed", type=int, default=lang.seed, help="random seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="parallel espeak-ng workers")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if lang.engine == "espeak" and shutil.which("espeak-ng") is None:
        LOG.error("espeak-ng not found; install it with: apt-get install espeak-ng")
        return 1

    audio_dir = args.out / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    jobs = plan(args.num_sentences, args.seed, audio_dir, int(args.bitrate * 1000), lang)
    LOG.info("synthesising %d %s utterances of %d sentences with %d workers",
             len(jobs), lang.name, args.num_sentences, args.jobs)

    t0 = time.time()
    results: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for n, res in enumerate(pool.map(synthesise, jobs, chunksize=16), start=1):
            if res is not None:
                results[res["id"]] = res
            if n % 200 == 0:
                LOG.info("%d/%d done (%.0f s)", n, len(jobs), time.time() - t0)

    losses = np.array([r["codec_change"] for r in results.values()])
    LOG.info("level change through Opus: median %+.2f dB, 5-95%% %+.2f..%+.2f dB",
             np.median(losses), *np.percentile(losses, [5, 95]))
    keys = ("id", "audio", "duration", "sample_rate", "text", "words", "emphasis", "speaker",
            "gender", "style", "emotion", "pair_id", "split", "rms_dbfs", "voice", "rate",
            "pitch")
    records = []
    for job in jobs:
        res = results.get(job["id"])
        if res is None or not MIN_DUR <= res["duration"] <= MAX_DUR or res["peak"] > 0.99:
            LOG.warning("dropping %s (%s)", job["id"], res)
            Path(job["path"]).unlink(missing_ok=True)
            continue
        rec = {**job, **res, "sample_rate": SAMPLE_RATE, "emotion": job["style"]}
        records.append({k: rec[k] for k in keys})
    per_pair = Counter(r["pair_id"] for r in records)  # keep every sentence parallel (>= 2 voices)
    for rec in [r for r in records if lang.parallel and per_pair[r["pair_id"]] < 2]:
        LOG.warning("dropping %s: its sentence has no other speaker left", rec["id"])
        (args.out / rec["audio"]).unlink()
        records.remove(rec)
    records.sort(key=lambda r: r["id"])
    with open(args.out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    # apparent size of files and folders, as `du -sb` counts it
    size = args.out.stat().st_size + sum(p.stat().st_size for p in args.out.rglob("*"))
    minutes = sum(r["duration"] for r in records) / 60
    if size > lang.max_bytes:
        LOG.warning("corpus is %d bytes, over the %d byte budget: lower --num-sentences",
                    size, lang.max_bytes)
    print(f"wrote {len(records)} utterances ({minutes:.1f} min, {size / 1e6:.2f} MB) "
          f"to {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
