"""Task ``whisper_asr`` (seed 002): fine-tune a multilingual Whisper to transcribe one language."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task

TASK = Task("whisper_asr", gate=Gate(metrics=(
    # champion moves only for a WER at least 0.5 points lower; a model above 0.6 WER never does
    GateMetric(name="wer", direction="lower", limit=0.6, min_improvement=0.005),
)))
