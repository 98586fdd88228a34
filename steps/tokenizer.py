"""Stage ``tokenizer``: train the tokenizer the task needs, or package a pretrained one."""

from __future__ import annotations

from steps.common.stage import StageSpec, run_stage
from steps.tasks import get_task

SPEC = StageSpec(
    name="tokenizer",
    kind="processing",
    inputs=("data",),
    outputs=("tokenizer",),
    params=lambda task: get_task(task).params_for("tokenizer"),
    run=lambda p, task, io: get_task(task).build_tokenizer(p, io.inputs["data"], io.outputs["tokenizer"]),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
