"""Task ``voice_conversion`` (seed 004): SpeechT5 speech-to-speech conversion into a reference speaker's voice."""

from steps.common.gate import Gate, GateMetric
from steps.tasks.base import Task

TASK = Task(
    "voice_conversion",
    gate=Gate(metrics=(
        # cosine similarity of converted speech to the target speaker, by an encoder the model was not
        # conditioned on (higher is better)
        GateMetric(name="speaker_similarity", direction="higher", limit=0.3, max_regression=0.02),
        # mel-cepstral distortion against the target recording, dB (lower is better)
        GateMetric(name="mcd", direction="lower", limit=12.0, max_regression=0.2),
    )),
    tune_objective={"mcd": 1.0},
)
