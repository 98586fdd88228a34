"""Training curves as a PNG: people would rather look than read a log."""

from __future__ import annotations

from pathlib import Path


SCORE_SKIP = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"}


def plot_training_curves(history: list[dict], path: Path, title: str = "training") -> Path:
    """The losses per step; beside them, when the task scores its evaluations (``eval_wer``,
    ``eval_emotion_accuracy``, ...), those validation scores per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    scores = sorted({k for h in history for k, v in h.items()
                     if k.startswith("eval_") and k not in SCORE_SKIP and isinstance(v, (int, float))})
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(12 if scores else 7, 4), dpi=110, squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss", color="tab:orange")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if scores:
        right = axes[0][1]
        for name in scores:
            points = [(h["step"], h[name]) for h in history if name in h and "step" in h]
            if points:
                right.plot(*zip(*points), "o-", label=name[len("eval_"):])
        right.set_xlabel("optimiser step")
        right.set_title("validation scores")
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_intensity(targets, predicted, baseline, path: Path, unit: str = "dB") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    lo, hi = float(min(targets.min(), predicted.min())) - 2, float(max(targets.max(), predicted.max())) + 2
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="ideal")
    ax.scatter(targets, baseline, s=10, alpha=0.5, label="baseline regressor", color="tab:green")
    ax.scatter(targets, predicted, s=10, alpha=0.7, label="model head", color="tab:blue")
    ax.set_xlabel(f"target intensity ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title("intensity on the test split")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_speaker_similarity(to_target, to_source, path: Path, title: str = "converted speech: whose voice?",
                            baseline: tuple | None = None) -> Path:
    """Each converted clip's similarity to the target speaker against its similarity to the source speaker:
    points above the diagonal sound more like the target. ``baseline``: the unconverted sources, likewise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    values = [*to_target, *to_source, *(baseline[0] if baseline else ()), *(baseline[1] if baseline else ())]
    lo, hi = min(values) - 0.05, max(values) + 0.05
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="equally close")
    if baseline:
        ax.scatter(baseline[1], baseline[0], s=12, alpha=0.5, color="tab:red", label="source recording (unconverted)")
    ax.scatter(to_source, to_target, s=14, alpha=0.8, color="tab:blue", label="converted")
    ax.set_xlabel("cosine similarity to the source speaker")
    ax.set_ylabel("cosine similarity to the target speaker")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
