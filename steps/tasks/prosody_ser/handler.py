"""The I/O of ``prosody_ser``: one clip in (``audio/*`` or base64 JSON), out
``{"emotion", "probabilities", "transcript", "emphasis": [{"word", "emphasised", "probability"}], "duration_s"}``
(and ``no_speech`` with the reason for a silent or too short clip). The emphasis is judged on the transcript's
words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steps.common.clips import clip_facts, no_speech, windowed
from steps.tasks.io import Answer, ClipHandler, Panel


class ProsodySERHandler(ClipHandler):
    demo_panels = (Panel("label", "probabilities", "Emotion"), Panel("text", "transcript", "Transcript"),
                   Panel("highlight", "emphasis", "Emphasised words"))
    def load(self, model_dir: Path) -> None:
        from steps.tasks.prosody_ser.inference import Predictor

        self.predictor = Predictor.from_dir(model_dir)
        window = getattr(self.predictor.features.extractor, "chunk_length", None)
        self.window_s = float(window) if self.predictor.features.whisper and window else None

    def predict(self, inputs: np.ndarray) -> dict[str, Any]:
        return self.predict_batch([inputs])[0]

    def predict_batch(self, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Clips longer than the window in windows cut at pauses: the emotion from the length-weighted mean of
        the windows' probabilities, transcripts and emphasised words joined in order."""
        answers = []
        for clip, parts in zip(inputs, windowed(inputs, self.window_s, self._pieces)):
            answer = {**merge(parts), **clip_facts(clip)}
            if "no_speech" in answer:
                answer.update(transcript="", emphasis=[])
            answers.append(answer)
        return answers

    def _pieces(self, pieces: list[np.ndarray]) -> list[tuple[dict[str, Any], int]]:
        answers = [p.answer() for p in self.predictor(pieces)]
        for answer, piece in zip(answers, pieces):
            if no_speech(piece):
                answer.update(transcript="", emphasis=[])
        return [(answer, piece.shape[0]) for answer, piece in zip(answers, pieces)]

    def demo_view(self, answer: Answer) -> dict[str, Any]:
        fields = answer.json()
        return {**fields, "emphasis": [(w["word"], "emphasised" if w["emphasised"] else None)
                                       for w in fields.get("emphasis", [])]}

    @classmethod
    def describe(cls, answer: Answer, record: Any) -> dict[str, Any]:
        return {"response": answer.shown(),
                "reference": {"text": record.text, "emotion": record.extra.get("emotion"),
                              "emphasis": record.extra.get("emphasis")}}


def merge(parts: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0][0]
    total = sum(n for _, n in parts)
    labels = list(parts[0][0]["probabilities"])
    probabilities = {label: round(sum(a["probabilities"][label] * n for a, n in parts) / total, 4) for label in labels}
    transcripts = [a["transcript"] for a, _ in parts if a["transcript"]]
    return {"emotion": max(probabilities, key=probabilities.get) if probabilities else None,
            "probabilities": probabilities,
            "transcript": " ".join(transcripts) if transcripts else parts[0][0]["transcript"],
            "emphasis": [word for a, _ in parts for word in a["emphasis"]]}


HANDLER = ProsodySERHandler
