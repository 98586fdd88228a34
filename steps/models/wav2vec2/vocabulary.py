"""Character vocabulary for CTC: case-aware normalisation and whitelist filtering.

Transcripts are normalised to the vocabulary's case, punctuation is dropped, spaces become the
word delimiter ``|``, and any character the vocabulary does not know is filtered out (and counted),
so no out-of-vocabulary character ever reaches the CTC loss.
"""

from __future__ import annotations

import re
from collections import Counter

from steps.common.text import clean_transcript

WORD_DELIMITER = "|"
PAD = "[PAD]"  # also the CTC blank
UNK = "[UNK]"
_SPACES = re.compile(r"\s+")
_DROP = re.compile(r"[^\w\s']|_")


def vocabulary_case(vocab: dict[str, int]) -> str:
    letters = [c for c in vocab if len(c) == 1 and c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    return "upper" if upper > len(letters) / 2 else "lower"


def normalize(text: str, case: str) -> str:
    text = clean_transcript(text)
    text = text.upper() if case == "upper" else text.lower()
    text = _DROP.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def filter_to_vocab(text: str, vocab: dict[str, int], dropped: Counter | None = None) -> str:
    """Normalised text with characters outside the vocabulary removed (counted in ``dropped``)."""
    kept = []
    for char in text:
        if char == " " or char in vocab:
            kept.append(char)
        elif dropped is not None:
            dropped[char] += 1
    return _SPACES.sub(" ", "".join(kept)).strip()


def build_vocab(texts: list[str], min_count: int = 1) -> dict[str, int]:
    counts = Counter(c for t in texts for c in t if c != " ")
    chars = sorted(c for c, n in counts.items() if n >= min_count)
    vocab = {PAD: 0, UNK: 1, WORD_DELIMITER: 2}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    return vocab


class TargetText:
    """Transcript -> the text CTC is trained and scored on (vocabulary case, whitelist-filtered)."""

    def __init__(self, tokenizer):
        self.vocab = tokenizer.get_vocab()
        self.case = vocabulary_case(self.vocab)

    def __call__(self, text: str) -> str:
        return filter_to_vocab(normalize(text, self.case), self.vocab)
