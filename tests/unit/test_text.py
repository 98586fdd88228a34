"""Scoring text: one normaliser for every language; marks stay inside words."""

from steps.common.text import normalize_for_scoring


def test_english_punctuation_goes_and_apostrophes_inside_words_stay():
    assert normalize_for_scoring("We're meeting Carl, at the \"restaurant\" soon!") == "we're meeting carl at the restaurant soon"
    assert normalize_for_scoring("'quoted'  a_b") == "quoted a b"


def test_devanagari_vowel_signs_virama_and_nukta_stay_inside_words():
    assert normalize_for_scoring("राम कल बाज़ार जाएगा।") == "राम कल बाज़ार जाएगा"
    assert normalize_for_scoring("क्या तुम आओगे?") == "क्या तुम आओगे"
    assert len(normalize_for_scoring("बाज़ार जाएगा").split()) == 2
