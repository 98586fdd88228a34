"""Stage ``tune``: hyper-parameter search (or an ablation grid) around the task's training, with Optuna.

Off unless ``stages.tune.enabled``; between tokenizer and train, whose optional ``tune`` input takes
the best values. The study lives in the checkpoints folder, so a killed stage resumes with its
finished trials, and is copied to the ``trials`` output with the table and plots.
"""

from __future__ import annotations

from steps.common import contract
from steps.common.stage import StageSpec, run_stage
from steps.common.tune_space import tune_params_for


def _run(params, task, io):
    from steps.common.tuning import tune  # optuna and the training code: only when the stage runs

    return tune(params, task, io.inputs["data"], io.inputs["tokenizer"], io.outputs["best"], io.outputs["trials"],
                contract.output_dir("training", "checkpoints"))


SPEC = StageSpec(
    name="tune",
    kind="training",
    inputs=("data", "tokenizer"),
    outputs=("best", "trials"),
    params=tune_params_for,
    run=_run,
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
