"""Tasks: a model family plus its tokenizer, training, metrics, export and serving predictor.

Stages are generic; they look the task up here by name. Adding a task adds a package under
``steps/tasks/`` and one line to ``TASKS``.
"""

from __future__ import annotations

import importlib

from steps.tasks.base import Task

TASKS: dict[str, str] = {
    "whisper_intensity": "steps.tasks.whisper_intensity",
    "ctc_asr": "steps.tasks.ctc_asr",
    "whisper_asr": "steps.tasks.whisper_asr",
    "voice_conversion": "steps.tasks.voice_conversion",
    "prosody_ser": "steps.tasks.prosody_ser",
}


class UnknownTaskError(KeyError):
    pass


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module = importlib.import_module(TASKS[name])
    return module.TASK
