"""Task ``ctc_asr`` (seed 001): wav2vec2 CTC speech recognition with a character vocabulary."""

from steps.tasks.base import Task

TASK = Task("ctc_asr", gate_metrics=("wer",))
