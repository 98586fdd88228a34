"""Task ``whisper_asr`` (seed 002): fine-tune a multilingual Whisper to transcribe one language."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task
from steps.tasks.whisper_intensity import GUARD_ABOUT

TASK = Task("whisper_asr", gate=Gate(metrics=(
    # champion moves only for a WER at least 0.5 points lower; a model above 0.6 WER never does
    GateMetric(name="wer", direction="lower", limit=0.6, min_improvement=0.005),
    # no forgetting: the base model's English (the guard set, forced en) may not get more than 0.01 WER worse
    GateMetric(name="guard_wer_increase", direction="lower", limit=0.01, about=GUARD_ABOUT),
)))
