"""Stage ``export``: ONNX export with a parity check against PyTorch and a speed comparison."""

from __future__ import annotations

from steps.common.stage import StageSpec, run_stage
from steps.tasks import get_task

SPEC = StageSpec(
    name="export",
    kind="processing",
    inputs=("data", "model"),
    outputs=("onnx",),
    params=lambda task: get_task(task).params_for("export"),
    run=lambda p, task, io: get_task(task).export(p, io.inputs["data"], io.inputs["model"], io.outputs["onnx"]),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
