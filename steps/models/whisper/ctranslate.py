"""Whisper on CTranslate2 (faster-whisper's engine): the inference runtime ``ctranslate2``.

A trained model folder (Hugging Face layout; a subclass with extra heads on the encoder is fine: the heads
stay in PyTorch and read the encoder states CTranslate2 computes) is converted once with CTranslate2's own
``TransformersConverter`` into ``~/.cache/speechops/ct2-runtime/<digest>``, keyed by the sha256 of the
folder's config and weights, written aside and renamed into place. The shortened encoder window of a
fine-tuned model (``window.py``) is kept: CTranslate2 reads the positional table's size from the weights.

Decoding is greedy with the same prompt, suppressed tokens and token budget as ``decoding.greedy_decode``,
so ``float32`` gives the PyTorch transcripts (the parity test checks it on the test split); ``int8`` (and
``int8_float32``, ``int16``) quantise the weights at load time for speed and may differ in a few words.

The runtime is a configuration value: ``SPEECHOPS_RUNTIME`` = ``torch`` (default) | ``ctranslate2``, and
``SPEECHOPS_CT2_COMPUTE_TYPE`` (default ``float32``); ``serve``/``demo`` take ``--runtime`` and
``--compute-type`` and set them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steps.models.whisper.decoding import DecodingSpec
from steps.models.whisper.prompt import EOT

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "ctranslate2")
COMPUTE_TYPES = ("float32", "int8", "int8_float32", "int16")
RUNTIME_ENV, COMPUTE_TYPE_ENV = "SPEECHOPS_RUNTIME", "SPEECHOPS_CT2_COMPUTE_TYPE"
CACHE = Path("~/.cache/speechops/ct2-runtime")
_HASHED = ("config.json", "model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Runtime:
    name: str = "torch"
    compute_type: str = "float32"

    def __post_init__(self) -> None:
        if self.name not in RUNTIMES:
            raise ValueError(f"unknown inference runtime {self.name!r}; choose one of {', '.join(RUNTIMES)}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"unknown CTranslate2 compute type {self.compute_type!r}; "
                             f"choose one of {', '.join(COMPUTE_TYPES)}")

    @property
    def label(self) -> str:
        return self.name if self.name == "torch" else f"{self.name} ({self.compute_type})"


def runtime_from_environment() -> Runtime:
    """The runtime that ``SPEECHOPS_RUNTIME`` / ``SPEECHOPS_CT2_COMPUTE_TYPE`` ask for (torch by default)."""
    try:
        return Runtime(os.environ.get(RUNTIME_ENV) or "torch", os.environ.get(COMPUTE_TYPE_ENV) or "float32")
    except ValueError as exc:
        raise SystemExit(f"{exc} (set by {RUNTIME_ENV} / {COMPUTE_TYPE_ENV})") from None


def model_digest(model_dir: Path) -> str:
    """sha256 over the folder's config and weights (what the conversion depends on)."""
    digest = hashlib.sha256()
    for name in _HASHED:
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _plain_whisper_source(model_dir: Path, staging: Path) -> Path:
    """A view of ``model_dir`` that CTranslate2's converter accepts: every file linked, and the config's
    architecture set to ``WhisperForConditionalGeneration`` (the converter knows no subclass; extra head
    weights are left out of the conversion, as ``from_pretrained`` leaves unexpected keys out)."""
    source = staging / "source"
    source.mkdir(parents=True)
    for item in Path(model_dir).iterdir():
        if item.is_file() and item.name != "config.json":
            (source / item.name).symlink_to(item.resolve())
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config["architectures"] = ["WhisperForConditionalGeneration"]
    (source / "config.json").write_text(json.dumps(config))
    return source


def converted(model_dir: Path, cache: Path | None = None) -> Path:
    """The CTranslate2 copy of ``model_dir`` (converted on first use, then reused while the weights match)."""
    from ctranslate2.converters import TransformersConverter

    root = Path(cache if cache is not None else CACHE).expanduser()
    dst = root / model_digest(model_dir)
    if (dst / "model.bin").is_file():
        return dst
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{uuid.uuid4().hex[:8]}-{os.getpid()}"
    try:
        source = _plain_whisper_source(model_dir, staging)
        TransformersConverter(str(source)).convert(str(staging / "model"), quantization=None, force=True)
        try:
            (staging / "model").rename(dst)
        except OSError:  # another process converted it meanwhile
            if not (dst / "model.bin").is_file():
                raise
        log.info("converted %s to CTranslate2 in %s", model_dir, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dst


def _storage(array: torch.Tensor | np.ndarray):
    import ctranslate2

    data = array if isinstance(array, np.ndarray) else array.numpy()
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(data, dtype=np.float32))


def check_token_layout(tokenizer) -> None:
    """CTranslate2's Whisper assumes OpenAI's vocabulary: text tokens first, then ``<|endoftext|>`` and the
    other special tokens, timestamps after ``<|notimestamps|>``. A trained BPE (the ``scratch`` profile) puts
    the special tokens first, and CTranslate2 would read text tokens as timestamps: refuse it."""
    added = set(tokenizer.get_added_vocab().values())
    text_ids = [i for i in tokenizer.get_vocab().values() if i not in added]
    eot = tokenizer.convert_tokens_to_ids(EOT)
    if text_ids and eot is not None and max(text_ids) > eot:
        raise ValueError("the ctranslate2 runtime needs OpenAI's token layout (text tokens before <|endoftext|>); "
                         "this model's tokenizer puts its special tokens first (a BPE trained from scratch): "
                         "serve it with --runtime torch")


class CT2Whisper:
    """Encoder and greedy decoder of a Whisper model folder, run by CTranslate2 on the CPU."""

    def __init__(self, model_dir: Path, compute_type: str = "float32", threads: int = 0):
        import ctranslate2

        self.compute_type = compute_type
        self.model = ctranslate2.models.Whisper(str(converted(model_dir)), device="cpu",
                                                compute_type=compute_type, intra_threads=threads)

    def encode(self, input_features: torch.Tensor) -> torch.Tensor:
        """Encoder states [B, T, D] of log-mel features [B, n_mels, frames]."""
        import torch

        return torch.from_numpy(np.array(self.model.encode(_storage(input_features), to_cpu=True)))

    def generate(self, hidden: torch.Tensor, spec: DecodingSpec) -> list[list[int]]:
        """Greedy token ids (prompt and end of text removed), as ``greedy_decode`` gives them."""
        # CTranslate2 counts the forced tokens after the start token in max_length, and returns them
        forced = list(spec.prefix[1:])
        prompts = [list(spec.prefix)] * hidden.shape[0]
        results = self.model.generate(_storage(hidden), prompts, beam_size=1,
                                      max_length=len(forced) + spec.max_new_tokens,
                                      suppress_blank=False, suppress_tokens=list(spec.suppress))
        out = []
        for result in results:
            tokens = list(result.sequences_ids[0])
            tokens = tokens[len(forced):] if tokens[:len(forced)] == forced else tokens
            out.append(tokens[: tokens.index(spec.eos)] if spec.eos in tokens else tokens)
        return out


def compare_runtimes(load: Callable[[Runtime], Callable], batches: list, reference: list[str], reference_s: float,
                     repeats: int, ids: list[str], compute_types: tuple[str, ...] = ("float32", "int8")) -> dict:
    """CTranslate2 next to PyTorch with its key/value cache (serving's default), on the same batches.

    ``load(runtime)`` gives the task's batch function (batch -> (transcripts, values)); ``reference`` are
    PyTorch's transcripts, timed at ``reference_s``. Per compute type: transcripts identical to PyTorch's,
    the ids of those that differ (first 5), the best wall time and the speed-up over PyTorch.
    """
    from steps.common.batching import best_time

    report = {}
    for compute_type in compute_types:
        try:
            fn = load(Runtime("ctranslate2", compute_type))
        except ValueError as exc:  # a model CTranslate2 cannot run (a scratch vocabulary): said, not fatal
            log.info("CTranslate2 comparison skipped: %s", exc)
            return {"skipped": str(exc)}
        texts, _, seconds = best_time(fn, batches, repeats)
        differ = [i for i, a, b in zip(ids, texts, reference) if a != b]
        report[compute_type] = {"identical_transcripts": len(reference) - len(differ), "of": len(reference),
                                "differing_ids": differ[:5], "seconds": round(seconds, 3),
                                "speedup_vs_torch": round(reference_s / seconds, 2) if seconds > 0 else None}
    return report


def comparison_metrics(report: dict) -> dict:
    """The export report's headline figures of ``compare_runtimes`` (none when it was skipped)."""
    if "float32" not in report:
        return {}
    f32 = report["float32"]
    return {"ct2_identical": f"{f32['identical_transcripts']}/{f32['of']}",
            **({"ct2_int8_speedup": report["int8"]["speedup_vs_torch"]} if "int8" in report else {})}
