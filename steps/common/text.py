"""Text normalisation: one place for cleaning transcripts and for scoring them."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def clean_transcript(text: str) -> str:
    """Unicode NFKC, typographic quotes made plain, whitespace collapsed. Keeps case and punctuation."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return _SPACES.sub(" ", text).strip()


def _punctuation_or_symbol(char: str) -> bool:
    return char != "'" and unicodedata.category(char)[0] in "PS"


def normalize_for_scoring(text: str) -> str:
    """Lower-case, punctuation and symbols removed (apostrophes inside words kept), single spaces.

    WER and CER are computed on this form for references and hypotheses alike, in every language.
    Combining marks are kept: Devanagari vowel signs, virama and nukta are part of a word. (Whisper's
    ``BasicTextNormalizer`` replaces every mark with a space, so "राम बाज़ार जाएगा" would be scored as
    "र म ब ज र ज एग": fragments, not words. This is its rule for punctuation and symbols, without that.)
    """
    text = clean_transcript(text).lower()
    text = "".join(" " if _punctuation_or_symbol(c) else c for c in text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
