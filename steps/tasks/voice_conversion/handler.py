"""The I/O of ``voice_conversion`` (seed 004): two clips in, one clip out.

Request: JSON ``{"src_wav_b64": "<base64 WAV>", "ref_wav_b64": "<base64 WAV>"}``: the speech to convert
and a short clip of the target voice (any rate or channel count; decoded to 16 kHz mono).
Answer: JSON ``{"wav_b64": "<base64 of a 16 kHz mono PCM16 WAV>"}``, as the seed's endpoint, or the WAV
bytes themselves when the request's ``Accept`` is ``audio/wav``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from steps.common.payload import JSON, Limits, RequestError, b64, clip_from_base64, json_object, media_type
from steps.tasks.io import Answer, Handler, Panel, Request

EXAMPLE = '{"src_wav_b64": "<base64 WAV>", "ref_wav_b64": "<base64 WAV>"}'
MIN_REFERENCE_SECONDS = 0.5


class VoiceConversionHandler(Handler):
    request_types: ClassVar[tuple[str, ...]] = (JSON,)
    response_types: ClassVar[tuple[str, ...]] = (JSON, "audio/wav")
    demo_inputs = ("source", "reference")
    demo_panels = (Panel("audio", "converted", "Converted voice"),)

    def load(self, model_dir: Path) -> None:
        from steps.models.speecht5.convert import VoiceConverter

        self.converter = VoiceConverter(model_dir)

    def decode(self, body: bytes, content_type: str | None, limits: Limits) -> dict[str, np.ndarray]:
        if media_type(content_type) != JSON:
            raise RequestError(f"unsupported Content-Type {content_type!r}; send application/json {EXAMPLE}", 415)
        payload = json_object(body, EXAMPLE)
        missing = [name for name in ("src_wav_b64", "ref_wav_b64") if name not in payload]
        if missing:
            raise RequestError(f"missing field(s) {', '.join(map(repr, missing))}; send {EXAMPLE}")
        unknown = sorted(set(payload) - {"src_wav_b64", "ref_wav_b64"})
        if unknown:
            raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; send {EXAMPLE}")
        source = clip_from_base64(payload, "src_wav_b64", limits, rate_field=None)
        reference = clip_from_base64(payload, "ref_wav_b64", limits, rate_field=None)
        for name, clip, least in (("src_wav_b64", source, 0.1), ("ref_wav_b64", reference, MIN_REFERENCE_SECONDS)):
            if clip.size < least * 16000:
                raise RequestError(f"{name}: {clip.size / 16000:.2f} s of audio is too short (at least {least} s)")
            if float(np.max(np.abs(clip))) < 1e-4:
                raise RequestError(f"{name}: the clip is silent")
        return {"source": source, "reference": reference}

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.converter(inputs["source"], reference=inputs["reference"])

    def encode(self, outputs: np.ndarray, accept: str | None = None) -> Answer:
        from steps.common.audio import to_wav_bytes

        wav = to_wav_bytes(np.asarray(outputs, dtype=np.float32))
        if self.check_accept(accept) == "audio/wav":
            return Answer(wav, "audio/wav")
        return Answer(json.dumps({"wav_b64": b64(wav)}).encode(), JSON)

    @classmethod
    def sample_request(cls, manifest: Path, record: Any, content_type: str | None = None) -> Request:
        """``record`` is the source; the reference is a clip of another speaker from the same manifest."""
        from steps.common.audio import load_audio, to_wav_bytes
        from steps.common.manifest import read_manifest, resolve_audio

        others = [r for r in read_manifest(manifest) if r.speaker != record.speaker and r.text != record.text]
        if not others:
            raise ValueError(f"{manifest} has no clip of a speaker other than {record.speaker}")
        reference = others[0]
        body = {"src_wav_b64": b64(to_wav_bytes(load_audio(resolve_audio(manifest, record.audio)))),
                "ref_wav_b64": b64(to_wav_bytes(load_audio(resolve_audio(manifest, reference.audio))))}
        return Request(json.dumps(body).encode(), JSON)

    @classmethod
    def demo_request(cls, clips: dict[str, bytes]) -> Request:
        body = {"src_wav_b64": b64(clips["source"]), "ref_wav_b64": b64(clips["reference"])}
        return Request(json.dumps(body).encode(), JSON, accept="audio/wav")

    def demo_view(self, answer: Answer) -> dict[str, Any]:
        return {"converted": answer.body}

    @classmethod
    def demo_examples(cls, manifest: Path, count: int = 4) -> list[list[Path]]:
        """Pairs: a source clip and a reference clip of another speaker saying something else."""
        from steps.common.manifest import read_manifest, resolve_audio

        records = read_manifest(manifest)
        pairs: list[list[Path]] = []
        speakers: set[str | None] = set()
        for source in records:  # one source per speaker
            reference = next((r for r in records if r.speaker != source.speaker and r.text != source.text), None)
            if source.speaker in speakers or reference is None:
                continue
            speakers.add(source.speaker)
            pairs.append([resolve_audio(manifest, source.audio), resolve_audio(manifest, reference.audio)])
            if len(pairs) >= count:
                break
        return pairs

    @classmethod
    def describe(cls, answer: Answer, record: Any) -> dict[str, Any]:
        """Whether the answer is a WAV that decodes, its length against the source's, and its level."""
        import base64

        from steps.common.audio import AudioError, load_audio

        try:
            body = answer.json()
            audio = load_audio(base64.b64decode(body["wav_b64"]))
        except (ValueError, KeyError, TypeError, AudioError) as exc:
            return {"response": answer.shown(), "decodes": False, "error": str(exc)}
        rms = float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
        return {"response": {"wav_b64": f"{len(body['wav_b64'])} base64 characters"}, "decodes": True,
                "seconds": round(audio.size / 16000, 3), "source_seconds": record.duration,
                "rms_dbfs": round(20 * np.log10(max(rms, 1e-9)), 1), "silent": rms < 1e-3,
                "reference": {"text": record.text, "speaker": record.speaker}}


HANDLER = VoiceConversionHandler
