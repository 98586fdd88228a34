"""Task ``prosody_ser`` (seed 003): speech emotion recognition with CTC ASR and word emphasis as auxiliary heads."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task

TASK = Task(
    "prosody_ser",
    gate=Gate(metrics=(
        # emotion accuracy on speakers never heard in training (higher is better)
        GateMetric(name="emotion_accuracy", direction="higher", limit=0.5, min_improvement=0.005),
        # the same, class-balanced: a model that gives up one emotion cannot hide behind the others
        GateMetric(name="emotion_uar", direction="higher", limit=0.4, max_regression=0.02),
    )),
    # words, their emphasis marks (the seed's prosody_annotations) and the emotion label travel with each record
    manifest_fields=("emotion", "words", "emphasis"),
    field_aliases={"emphasis": "prosody_annotations"},
    tune_objective={"emotion_accuracy": 1.0},
)
