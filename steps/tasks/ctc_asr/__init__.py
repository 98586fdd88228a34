"""Task ``ctc_asr`` (seed 001): wav2vec2 CTC speech recognition with a character vocabulary."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task

TASK = Task("ctc_asr", gate=Gate(metrics=(
    # champion moves only for a WER at least 0.5 points lower; a model worse than 0.9 WER never does
    GateMetric(name="wer", direction="lower", limit=0.9, min_improvement=0.005),
)))
