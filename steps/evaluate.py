"""Stage ``evaluate``: metrics on the held-out split, in a report a quality gate can read."""

from __future__ import annotations

from steps.common.stage import StageSpec, run_stage
from steps.tasks import get_task

SPEC = StageSpec(
    name="evaluate",
    kind="processing",
    inputs=("data", "model"),
    outputs=("evaluation",),
    params=lambda task: get_task(task).params_for("evaluate"),
    run=lambda p, task, io: get_task(task).evaluate(p, io.inputs["data"], io.inputs["model"], io.outputs["evaluation"]),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
