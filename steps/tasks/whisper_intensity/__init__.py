"""Task ``whisper_intensity`` (seed 000): Whisper ASR plus an intensity regression head."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task

GUARD_ABOUT = ("the fine-tuned model's WER on the general-speech guard set minus the base model's at its full "
               "window: it forgot general speech")

TASK = Task("whisper_intensity", gate=Gate(metrics=(
    # champion moves only for a WER at least 0.5 points lower; never above 0.5 WER
    GateMetric(name="wer", direction="lower", limit=0.5, min_improvement=0.005),
    # intensity may get at most 0.2 dB worse on the way; never above 3 dB RMSE
    GateMetric(name="intensity_rmse", direction="lower", limit=3.0, max_regression=0.2),
    # no forgetting: WER on the general-speech guard set at most 0.01 above the base model's at its full
    # window (steps/models/whisper/guard.py); a profile without a guard sets gate.guard_wer_increase.limit: null
    GateMetric(name="guard_wer_increase", direction="lower", limit=0.01, about=GUARD_ABOUT),
)), tune_objective={
    # the tune stage's combined objective (lower is better): WER + 0.05 x intensity RMSE in dB,
    # so 1 dB of intensity error weighs as much as 5 WER points
    "wer": 1.0, "intensity_rmse": 0.05,
})
