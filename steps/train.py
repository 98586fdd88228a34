"""Stage ``train``: fine-tune (or train from config) the task's model; resumable from checkpoints."""

from __future__ import annotations

from steps.common import contract
from steps.common.stage import StageSpec, run_stage
from steps.tasks import get_task

SPEC = StageSpec(
    name="train",
    kind="training",
    inputs=("data", "tokenizer"),
    outputs=("model", "artifacts"),
    params=lambda task: get_task(task).params_for("train"),
    run=lambda p, task, io: get_task(task).train(
        p, io.inputs["data"], io.inputs["tokenizer"], io.outputs["model"],
        contract.output_dir("training", "checkpoints"), io.outputs["artifacts"]),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
