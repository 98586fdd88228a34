"""What a task's model takes and gives: its handler, in the style of the SageMaker inference toolkit.

Each task has ``steps/tasks/<task>/handler.py`` with ``HANDLER``, a ``Handler`` subclass:

* ``decode(body, content_type, limits)`` -> model inputs (``input_fn``): one clip, several named clips,
  JSON fields; bad input raises ``steps.common.payload.RequestError`` (a 4xx);
* ``predict(inputs)`` -> outputs (``predict_fn``);
* ``encode(outputs, accept)`` -> ``Answer`` (``output_fn``): JSON, or audio with its content type;
* ``sample_request(manifest, record)`` -> a real ``Request`` built from a test-split record, which the
  deploy stage sends to the endpoint, and ``describe(answer, record)`` -> what deploy reports of it;
* for the demo app (``serving/demo.py``): ``demo_inputs`` (the clips a user gives), ``demo_request(clips)``
  (the request they make), ``demo_panels`` and ``demo_view(answer)`` (how the answer is shown), and
  ``demo_examples(manifest)`` (test-split clips to click).

The class attributes ``request_types`` and ``response_types`` are what the SageMaker model package
declares. Serving, the MLflow model, deploy, the demo and the cloud backends all go through the
handler; none of them knows a task's shape. A handler module imports its model code lazily (in
``load``), so reading its content types is cheap.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steps.common.payload import AUDIO_TYPES, JSON, Limits, RequestError, media_type, one_clip


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str
    accept: str = JSON


@dataclass(frozen=True)
class Panel:
    """One part of the demo's answer view. ``kind``: ``text``, ``meter`` (a level in dB: ``{"value",
    "unit"}``), ``label`` (class probabilities), ``highlight`` (``[(word, tag or None)]``) or ``audio`` (WAV
    bytes); ``key``: the field of ``Handler.demo_view`` it shows."""

    kind: str
    key: str
    label: str


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)

    def shown(self) -> Any:
        """For reports: the JSON answer, or what the body is when it is not JSON."""
        try:
            return self.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{len(self.body)} bytes of {self.content_type or 'an unnamed type'}"


class Handler(ABC):
    request_types: ClassVar[tuple[str, ...]] = (JSON,)
    response_types: ClassVar[tuple[str, ...]] = (JSON,)

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        self.load(self.model_dir)

    @abstractmethod
    def load(self, model_dir: Path) -> None:
        """Load the model (import torch and the model code here, not at module level)."""

    @abstractmethod
    def decode(self, body: bytes, content_type: str | None, limits: Limits) -> Any: ...

    @abstractmethod
    def predict(self, inputs: Any) -> Any: ...

    def predict_batch(self, inputs: list[Any]) -> list[Any]:
        """Several requests' inputs at once (the server's dynamic batching); a handler whose model batches
        overrides this. Default: one by one."""
        return [self.predict(x) for x in inputs]

    def encode(self, outputs: Any, accept: str | None = None) -> Answer:
        """JSON by default; a handler answering audio overrides this."""
        self.check_accept(accept)
        return Answer(json.dumps(outputs).encode(), JSON)

    @classmethod
    def check_accept(cls, accept: str | None) -> str:
        """The response type to use for an ``Accept`` header (406 when none of ours is acceptable)."""
        wanted = [media_type(part) for part in (accept or "").split(",") if part.strip()]
        if not wanted or any(w in ("*/*", "") for w in wanted):
            return cls.response_types[0]
        for w in wanted:
            for ours in cls.response_types:
                if w == ours or (w.endswith("/*") and ours.startswith(w[:-1])):
                    return ours
        raise RequestError(f"cannot answer with {accept!r}; this model answers {', '.join(cls.response_types)}", 406)

    def __call__(self, request: Request, limits: Limits | None = None) -> Answer:
        inputs = self.decode(request.body, request.content_type, limits or Limits())
        return self.encode(self.predict(inputs), request.accept)

    @classmethod
    @abstractmethod
    def sample_request(cls, manifest: Path, record: Any, content_type: str | None = None) -> Request:
        """A real request from a manifest record (the deploy stage sends it), in ``content_type`` when given
        (one of ``request_types``; the SageMaker deploy asks for JSON, which every client can send)."""

    @classmethod
    def describe(cls, answer: Answer, record: Any) -> dict[str, Any]:
        """What the deploy stage reports of the answer to ``sample_request``: the answer and the reference."""
        return {"response": answer.shown(), "reference": {"text": record.text}}

    @classmethod
    def malformed_request(cls) -> Request:
        """A request every handler must refuse with a 4xx (deploy checks it)."""
        return Request(b"\x00 this is not a valid request", cls.request_types[0])

    # -- the demo app ---------------------------------------------------------------------------
    demo_inputs: ClassVar[tuple[str, ...]] = ("clip",)  # the clips a user uploads or records, by name
    demo_panels: ClassVar[tuple[Panel, ...]] = ()

    @classmethod
    def demo_request(cls, clips: dict[str, bytes]) -> Request:
        """The request the demo sends for the user's clips (file bytes, one per ``demo_inputs`` name)."""
        raise NotImplementedError(f"{cls.__name__} has no demo request")

    def demo_view(self, answer: Answer) -> dict[str, Any]:
        """The values of ``demo_panels``, by key, from an answer. Default: the JSON answer's fields."""
        return answer.json()

    @classmethod
    def demo_examples(cls, manifest: Path, count: int = 4) -> list[list[Path]]:
        """Clips to click in the demo, one list per example (one path per ``demo_inputs`` name): records of
        ``manifest`` from as many speakers as possible."""
        from steps.common.manifest import read_manifest, resolve_audio

        records = read_manifest(manifest)
        chosen, speakers = [], set()
        for record in records:  # one per speaker first
            if record.speaker not in speakers:
                chosen.append(record)
                speakers.add(record.speaker)
        chosen += [r for r in records if r not in chosen]
        return [[resolve_audio(manifest, r.audio)] for r in chosen[:count]]


class ClipHandler(Handler):
    """One clip in (``audio/*`` bytes or JSON ``{"base64", "sample_rate"}``), JSON out: the ASR-shaped tasks."""

    request_types: ClassVar[tuple[str, ...]] = (*AUDIO_TYPES[:4], JSON)

    demo_panels: ClassVar[tuple[Panel, ...]] = (Panel("text", "text", "Transcript"),)

    def decode(self, body: bytes, content_type: str | None, limits: Limits) -> Any:
        return one_clip(body, content_type, limits)

    @classmethod
    def demo_request(cls, clips: dict[str, bytes]) -> Request:
        """The file as it was uploaded or recorded: its container is recognised from its first bytes."""
        return Request(clips["clip"], "application/octet-stream")

    @classmethod
    def sample_request(cls, manifest: Path, record: Any, content_type: str | None = None) -> Request:
        from steps.common.audio import load_audio, to_wav_bytes
        from steps.common.manifest import resolve_audio
        from steps.common.payload import b64

        wav = to_wav_bytes(load_audio(resolve_audio(manifest, record.audio)))
        if content_type == JSON:
            return Request(json.dumps({"base64": b64(wav)}).encode(), JSON)
        return Request(wav, "audio/wav")
