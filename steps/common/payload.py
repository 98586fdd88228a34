"""Request bodies into model inputs: the pieces every task's handler decodes with.

A task's handler (``steps/tasks/<task>/handler.py``) decides what a request holds (one clip, several
named clips, JSON fields) and builds it from these functions. The limits (body size, clip duration)
are values serving owns (``serving/limits.py``) and passes in; the checks live here once, so a
clip is refused the same way whichever task decodes it. Errors are ``RequestError`` with the HTTP
status serving answers with and one sentence that says what to send instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from steps.common.audio import TARGET_SAMPLE_RATE, AudioError, load_audio, resample

JSON = "application/json"
AUDIO_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/ogg", "application/octet-stream")


class RequestError(ValueError):
    """A request the model cannot take; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may hold (serving sets the values: ``serving/limits.py``)."""

    max_body_bytes: int = 25 * 1024 * 1024
    max_seconds: float = 60.0


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_audio(content_type: str | None) -> bool:
    media = media_type(content_type)
    return media in AUDIO_TYPES or media.startswith("audio/")


# Container signatures an audio payload must start with: nothing else is treated as an audio file, so raw
# PCM (whose first bytes can look like an MPEG frame sync) is never decoded as something it is not.
SIGNATURES = ((b"RIFF", 8, b"WAVE"), (b"RF64", 8, b"WAVE"), (b"fLaC", None, None), (b"OggS", None, None),
              (b"ID3", None, None), (b"FORM", 8, b"AIF"))
CONTAINERS = "WAV, FLAC, OGG (Vorbis/Opus), MP3 with an ID3 tag, AIFF"
MAX_RATE = 384_000
URL_SAFE = str.maketrans("-_", "+/")
MAX_CHANNELS = 16


def json_object(body: bytes, example: str) -> dict[str, Any]:
    """The JSON object of a request body; ``example`` shows the expected shape in the error. Nesting beyond
    Python's recursion limit and integers beyond its digit limit are refused like any malformed JSON."""
    if not body:
        raise RequestError(f"empty request body: send {example}")
    try:  # JSON on the wire is UTF-8 (RFC 8259); json.loads would guess UTF-16/32 from the first bytes
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"body is not valid JSON: it is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           f"send {example}") from None
    try:
        payload = json.loads(text)
    except RecursionError:
        raise RequestError(f"JSON nested too deeply: send a flat object like {example}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and a number too long to convert
        raise RequestError(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise RequestError(f"JSON body must be an object like {example}")
    return payload


def is_audio_file(data: bytes) -> bool:
    """Whether ``data`` starts with the signature of an audio container (``SIGNATURES``)."""
    for magic, offset, tag in SIGNATURES:
        if data.startswith(magic) and (offset is None or data[offset:offset + len(tag)] == tag):
            return True
    return False


def check_header(data: bytes, limits: Limits, name: str) -> None:
    """Read the container's header (rate, channels, frames) and refuse what would break the limits, before
    anything is decoded: a 1-hour file is refused without decoding an hour of audio."""
    import io

    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise RequestError(f"{name}: could not read the audio header ({str(exc)[:120]}); send one of {CONTAINERS}") \
            from None
    if not 1000 <= info.samplerate <= MAX_RATE:
        raise RequestError(f"{name}: a sample rate of {info.samplerate} Hz is not audio we take (1000 to {MAX_RATE})")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise RequestError(f"{name}: {info.channels} channels (at most {MAX_CHANNELS}); send mono or stereo")
    if info.frames > 0 and info.frames / info.samplerate > limits.max_seconds:
        raise RequestError(f"{name}: audio is {info.frames / info.samplerate:.0f} s long, longer than "
                           f"{limits.max_seconds:.0f} s; split it first", 413)


def clip_from_bytes(data: bytes, limits: Limits, name: str = "audio") -> np.ndarray:
    """An encoded audio file (``CONTAINERS``) -> 16 kHz mono float32, within the duration limit, checked by
    its header before decoding."""
    if not data:
        raise RequestError(f"{name}: empty audio")
    if not is_audio_file(data):
        raise RequestError(f"{name}: not an audio file ({CONTAINERS}); for raw PCM16 send JSON "
                           '{"base64": ..., "sample_rate": ...}')
    check_header(data, limits, name)
    try:
        audio = load_audio(data)
    except AudioError as exc:
        raise RequestError(f"{name}: could not read the audio: {exc}") from exc
    return _within(audio, limits, name)


def decode_base64(encoded: str, field: str) -> bytes:
    """Standard or URL-safe base64, with or without padding and line breaks (what ``base64`` prints)."""
    compact = "".join(encoded.split()).translate(URL_SAFE).rstrip("=")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"field {field!r} is not valid base64: {exc}") from None


def clip_from_base64(payload: dict[str, Any], field: str, limits: Limits, rate_field: str | None = "sample_rate",
                     required: bool = True) -> np.ndarray | None:
    """``payload[field]``: base64 of an audio file, or of raw little-endian PCM16 when ``rate_field`` is given.

    A payload with a container signature is a file (its header wins); anything else is raw PCM16 at
    ``payload[rate_field]``, or an error when no rate is given."""
    encoded = payload.get(field)
    if encoded is None and not required:
        return None
    if not isinstance(encoded, str) or not encoded:
        raise RequestError(f"JSON body needs a non-empty string field {field!r} (base64 of an audio file"
                           + (f", or raw PCM16 with {rate_field!r})" if rate_field else ")"))
    if len(encoded) > limits.max_body_bytes:
        raise RequestError(f"field {field!r} is larger than the {limits.max_body_bytes} byte limit", 413)
    raw = decode_base64(encoded, field)
    rate = payload.get(rate_field) if rate_field else None
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 192000):
        raise RequestError(f"{rate_field} must be an integer between 1000 and 192000, got {str(rate)[:40]!r}")
    if is_audio_file(raw):
        return clip_from_bytes(raw, limits, field)
    if rate is None:
        hint = f"; for raw PCM16 give {rate_field!r}" if rate_field else ""
        raise RequestError(f"field {field!r} is not an audio file ({CONTAINERS}){hint}")
    if len(raw) % 2:
        raise RequestError(f"field {field!r}: raw PCM16 has an odd number of bytes")
    if len(raw) / 2 / rate > limits.max_seconds:
        raise RequestError(f"{field}: audio is longer than {limits.max_seconds:.0f} s; split it first", 413)
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if pcm.size == 0:
        raise RequestError(f"field {field!r}: raw PCM16 is empty")
    return _within(resample(pcm, rate), limits, field)


def one_clip(body: bytes, content_type: str | None, limits: Limits) -> np.ndarray:
    """The request of single-clip tasks: ``audio/*`` bytes, or JSON ``{"base64": ..., "sample_rate": ...}``."""
    media = media_type(content_type)
    if media == JSON:
        payload = json_object(body, '{"base64": "...", "sample_rate": 16000}')
        if "base64" not in payload and "audio_base64" in payload:
            payload = {**payload, "base64": payload["audio_base64"]}
        return clip_from_base64(payload, "base64", limits)
    if is_audio(media):
        if not body:
            raise RequestError('empty request body: send audio/wav bytes or JSON {"base64": ..., "sample_rate": ...}')
        return clip_from_bytes(body, limits)
    raise RequestError(f"unsupported Content-Type {content_type!r}; use audio/wav (raw bytes) or application/json", 415)


def _within(audio: np.ndarray, limits: Limits, name: str) -> np.ndarray:
    if audio.shape[0] / TARGET_SAMPLE_RATE > limits.max_seconds:
        raise RequestError(f"{name}: audio is longer than {limits.max_seconds:.0f} s; split it first", 413)
    return audio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
