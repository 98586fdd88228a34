"""Stage ``train``: fine-tune (or train from config) the task's model; resumable from checkpoints.

With the tune stage switched on, its best values (input ``tune``) override the profile's."""

from __future__ import annotations

from steps.common import contract
from steps.common.stage import StageSpec, run_stage
from steps.common.tune_space import apply_tuned
from steps.tasks import get_task


def _run(params, task, io):
    params, tuned = apply_tuned(params, io.inputs.get("tune"))
    report = get_task(task).train(params, io.inputs["data"], io.inputs["tokenizer"], io.outputs["model"],
                                  contract.output_dir("training", "checkpoints"), io.outputs["artifacts"])
    if tuned:  # the summary and MLflow show what was trained, and that the tune stage chose it
        report = {"params": params.model_dump(mode="json"), "tuned": tuned, **report,
                  "notes": [*report.get("notes", []), tuned["note"]]}
    return report


SPEC = StageSpec(
    name="train",
    kind="training",
    inputs=("data", "tokenizer", "tune"),
    optional_inputs=("tune",),  # wired when stages.tune.enabled: its best values override the profile's
    outputs=("model", "artifacts"),
    params=lambda task: get_task(task).params_for("train"),
    run=_run,
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
