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


def json_object(body: bytes, example: str) -> dict[str, Any]:
    """The JSON object of a request body; ``example`` shows the expected shape in the error."""
    if not body:
        raise RequestError(f"empty request body: send {example}")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise RequestError(f"JSON body must be an object like {example}")
    return payload


def clip_from_bytes(data: bytes, limits: Limits, name: str = "audio") -> np.ndarray:
    """An encoded audio file (wav, flac, ogg, ...) -> 16 kHz mono float32, within the duration limit."""
    if not data:
        raise RequestError(f"{name}: empty audio")
    try:
        audio = load_audio(data)
    except AudioError as exc:
        raise RequestError(f"{name}: could not read the audio: {exc}") from exc
    return _within(audio, limits, name)


def clip_from_base64(payload: dict[str, Any], field: str, limits: Limits, rate_field: str | None = "sample_rate",
                     required: bool = True) -> np.ndarray | None:
    """``payload[field]``: base64 of an audio file, or of raw little-endian PCM16 when ``rate_field`` is given."""
    encoded = payload.get(field)
    if encoded is None and not required:
        return None
    if not isinstance(encoded, str) or not encoded:
        raise RequestError(f"JSON body needs a non-empty string field {field!r} (base64 of an audio file"
                           + (f", or raw PCM16 with {rate_field!r})" if rate_field else ")"))
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"field {field!r} is not valid base64: {exc}") from exc
    rate = payload.get(rate_field) if rate_field else None
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 192000):
        raise RequestError(f"{rate_field} must be an integer between 1000 and 192000, got {str(rate)[:40]!r}")
    try:
        return _within(load_audio(raw), limits, field)  # an encoded file (wav, flac, ogg): its header wins
    except AudioError:
        if rate is None:
            hint = f"; for raw PCM16 give {rate_field!r}" if rate_field else ""
            raise RequestError(f"field {field!r} is not an audio file{hint}") from None
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
