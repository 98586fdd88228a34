"""Text normalisation: one place for cleaning transcripts and for scoring them."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
# Anything that is not a letter, a digit, an apostrophe inside a word, or a space.
_PUNCT = re.compile(r"[^\w\s']|_")
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def clean_transcript(text: str) -> str:
    """Unicode NFKC, typographic quotes made plain, whitespace collapsed. Keeps case and punctuation."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return _SPACES.sub(" ", text).strip()


def normalize_for_scoring(text: str) -> str:
    """Lower-case, punctuation removed (apostrophes inside words kept), single spaces.

    WER and CER are computed on this form for references and hypotheses alike.
    """
    text = clean_transcript(text).lower()
    text = _PUNCT.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
