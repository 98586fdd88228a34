"""Task ``whisper_intensity`` (seed 000): Whisper ASR plus an intensity regression head."""

from steps.tasks.base import Task

TASK = Task("whisper_intensity", gate_metrics=("wer", "intensity_rmse"))
