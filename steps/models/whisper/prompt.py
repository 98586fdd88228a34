"""Whisper's decoder prompt: the tokens forced before every transcript, and the labels built from it.

The prompt is ``<|startoftranscript|> [<|language|>] [<|task|>] <|notimestamps|>``:

* English-only checkpoints (tiny.en, the models built from config here) use
  ``DecoderPrompt()``: ``<|startoftranscript|><|notimestamps|>``.
* A multilingual checkpoint fine-tuned on one language forces its language and task, so the model
  neither guesses the language nor translates: ``DecoderPrompt(language="hi", task="transcribe")``
  gives ``<|startoftranscript|><|hi|><|transcribe|><|notimestamps|>``.

Training labels are the prompt without its start token (the model prepends
``decoder_start_token_id``), the transcript, then ``<|endoftext|>``; decoding forces the whole
prompt. Transcripts are decoded without timestamps (``<|notimestamps|>`` is always forced).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from steps.models.whisper.decoding import DecodingSpec

EOT = "<|endoftext|>"
SOT = "<|startoftranscript|>"
NO_TIMESTAMPS = "<|notimestamps|>"
PREV_SOT = "<|startofprev|>"
TRANSCRIBE = "<|transcribe|>"
TRANSLATE = "<|translate|>"

WhisperTask = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class DecoderPrompt:
    """``language``: a Whisper language code (``"hi"``, ``"en"``; ``"<|hi|>"`` is accepted too) or
    None for no language token; ``task``: ``"transcribe"``, ``"translate"`` or None for no task token."""

    language: str | None = None
    task: WhisperTask | None = None

    def __post_init__(self) -> None:
        if self.language is not None:
            code = self.language.strip().removeprefix("<|").removesuffix("|>")
            if not code or any(c in code for c in "<|> "):
                raise ValueError(f"not a Whisper language code: {self.language!r} (expected e.g. 'hi' or 'en')")
            object.__setattr__(self, "language", code)
        if self.task not in (None, "transcribe", "translate"):
            raise ValueError(f"Whisper's task token is 'transcribe' or 'translate', not {self.task!r}")

    @property
    def tokens(self) -> tuple[str, ...]:
        language = (f"<|{self.language}|>",) if self.language else ()
        task = (f"<|{self.task}|>",) if self.task else ()
        return (SOT, *language, *task, NO_TIMESTAMPS)

    def ids(self, tokenizer) -> tuple[int, ...]:
        return token_ids(tokenizer, self.tokens)


ENGLISH_ONLY = DecoderPrompt()


def token_ids(tokenizer, tokens: Iterable[str]) -> tuple[int, ...]:
    """Ids of special tokens, failing (rather than mapping to the unknown token) when one is missing."""
    tokens = tuple(tokens)
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise ValueError(
            f"the tokenizer has no {', '.join(missing)}: a multilingual checkpoint (e.g. openai/whisper-small) "
            "has every language and task token; an English-only or scratch tokenizer has only those it was "
            "packaged with (package_tokenizer adds the prompt's tokens to a scratch tokenizer)")
    return tuple(vocab[t] for t in tokens)


def decoding_spec(tokenizer, prompt: DecoderPrompt = ENGLISH_ONLY, max_new_tokens: int = 64) -> DecodingSpec:
    """Greedy decoding that forces ``prompt``, stops at ``<|endoftext|>`` and never emits another
    special or added token (timestamps, languages, tasks)."""
    (eos,) = token_ids(tokenizer, (EOT,))
    special = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    return DecodingSpec(prefix=prompt.ids(tokenizer), eos=eos, suppress=tuple(sorted(special - {eos})),
                        max_new_tokens=max_new_tokens)


def force_prompt_in_generation(model, tokenizer, prompt: DecoderPrompt) -> None:
    """Make ``model.generate()`` force ``prompt`` the way transformers wants it now: ``language`` and
    ``task`` in the generation config, ``forced_decoder_ids`` unset (the legacy way of forcing them).

    The token maps ``generate`` looks the language and task up in (``lang_to_id``, ``task_to_id``) are
    filled from the tokenizer where the checkpoint has none (a model built from config). Saved with the
    model (``generation_config.json``), so ``generate`` on the fine-tuned folder never detects a language."""
    config = model.generation_config
    ids = dict(zip(prompt.tokens, prompt.ids(tokenizer)))
    config.decoder_start_token_id = ids[SOT]
    config.no_timestamps_token_id = ids[NO_TIMESTAMPS]
    config.language = prompt.language
    config.task = prompt.task
    if prompt.language:
        token = f"<|{prompt.language}|>"
        config.lang_to_id = {**(getattr(config, "lang_to_id", None) or {}), token: ids[token]}
        config.is_multilingual = True
    if prompt.task:
        config.task_to_id = {**(getattr(config, "task_to_id", None) or {}), prompt.task: ids[f"<|{prompt.task}|>"]}
    config.forced_decoder_ids = None
    if hasattr(model.config, "forced_decoder_ids"):
        model.config.forced_decoder_ids = None


class TranscriptLabels:
    """Transcript -> decoder labels: the prompt's forced tokens after the start token, the text, EOS.

    For ``ENGLISH_ONLY`` that is ``<|notimestamps|> text <|endoftext|>``."""

    def __init__(self, tokenizer, prompt: DecoderPrompt = ENGLISH_ONLY):
        self.tokenizer = tokenizer
        self.forced = list(prompt.ids(tokenizer)[1:])
        (self.eos,) = token_ids(tokenizer, (EOT,))

    def __call__(self, text: str) -> list[int]:
        return [*self.forced, *self.tokenizer(" " + text.strip(), add_special_tokens=False).input_ids, self.eos]
