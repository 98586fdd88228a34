"""Turn an /invocations request body into 16 kHz mono audio (``audio/wav`` bytes or JSON base64)."""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from serving.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from steps.common.audio import TARGET_SAMPLE_RATE, AudioError, load_audio, resample

MAX_BODY_BYTES = 25 * 1024 * 1024
MAX_SECONDS = 60.0
AUDIO_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/ogg", "application/octet-stream"}


def parse_request(body: bytes, content_type: str | None) -> np.ndarray:
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if not body:
        raise BadRequest("empty request body: send audio/wav bytes or JSON {\"base64\": ..., \"sample_rate\": ...}")
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        audio = _from_json(body)
    elif media in AUDIO_TYPES or media.startswith("audio/"):
        audio = _decode(body)
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {content_type!r}; use audio/wav (raw bytes) or application/json")
    if audio.shape[0] / TARGET_SAMPLE_RATE > MAX_SECONDS:
        raise PayloadTooLarge(f"audio is longer than {MAX_SECONDS:.0f} s; split it first")
    return audio


def _decode(data: bytes) -> np.ndarray:
    try:
        return load_audio(data)
    except AudioError as exc:
        raise BadRequest(f"could not read the audio: {exc}") from exc


def _from_json(body: bytes) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequest("JSON body must be an object like {\"base64\": \"...\", \"sample_rate\": 16000}")
    encoded = payload.get("base64", payload.get("audio_base64"))
    if not isinstance(encoded, str) or not encoded:
        raise BadRequest("JSON body needs a non-empty string field 'base64' (the audio file or raw PCM16)")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"field 'base64' is not valid base64: {exc}") from exc
    rate = payload.get("sample_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or not 1000 <= rate <= 192000):
        raise BadRequest(f"sample_rate must be an integer between 1000 and 192000, got {rate!r}")
    try:
        return load_audio(raw)  # an encoded file (wav, flac, ogg): its header wins
    except AudioError:
        if rate is None:
            raise BadRequest("base64 payload is not an audio file; for raw PCM16 give 'sample_rate'") from None
    if len(raw) % 2:
        raise BadRequest("raw PCM16 payload has an odd number of bytes")
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if pcm.size == 0:
        raise BadRequest("raw PCM16 payload is empty")
    return resample(pcm, rate)
