"""The AWS side of the SageMaker backend (boto3 and the SDK): upsert, start, follow, schedule.

* ``ensure_model_package_group`` creates the Model Registry group the RegisterModel step writes to.
* ``upsert_pipeline`` / ``start_execution`` go through the SDK's ``Pipeline.upsert`` / ``start``.
* ``follow_execution`` polls an execution and reports each step's status when it changes.
* Schedules are EventBridge Scheduler schedules whose target is the pipeline (the templated
  SageMaker ``StartPipelineExecution`` target) with the run's parameter overrides; the SDK's own
  ``put_triggers`` cannot pass overrides, hence boto3. ``list_schedules`` finds every schedule whose
  target is the pipeline, whatever its name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed", "Stopped")
SCHEDULE_GROUP = "default"


def ensure_model_package_group(sagemaker: Any, name: str, description: str) -> bool:
    """Create the model package group unless it exists; True when created."""
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=name)
        return False
    except ClientError as exc:
        if _code(exc) not in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException"):
            raise
    sagemaker.create_model_package_group(ModelPackageGroupName=name, ModelPackageGroupDescription=description[:1024])
    log.info("created model package group %s", name)
    return True


def upsert_pipeline(sdk_pipeline: Any, role_arn: str, description: str, tags: dict[str, str]) -> str:
    """Create or update the pipeline; returns its ARN."""
    response = sdk_pipeline.upsert(role_arn=role_arn, description=description[:3072],
                                   tags=[{"Key": k, "Value": v} for k, v in tags.items()] or None)
    return response["PipelineArn"]


def start_execution(sdk_pipeline: Any, parameters: dict[str, Any], display_name: str | None,
                    description: str | None = None) -> str:
    """Start an execution with parameter overrides; returns its ARN."""
    execution = sdk_pipeline.start(parameters=parameters or None, execution_display_name=display_name,
                                   execution_description=description)
    return execution.arn


def describe_execution(sagemaker: Any, arn: str) -> dict[str, Any]:
    return sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)


def execution_steps(sagemaker: Any, arn: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
        if token:
            kwargs["NextToken"] = token
        page = sagemaker.list_pipeline_execution_steps(**kwargs)
        steps += page.get("PipelineExecutionSteps", [])
        token = page.get("NextToken")
        if not token:
            return steps


def status_changes(seen: dict[str, str], steps: list[dict[str, Any]]) -> list[str]:
    """Lines for the steps whose status changed since ``seen`` (which is updated)."""
    lines = []
    for step in steps:
        name, status = step.get("StepName", "?"), step.get("StepStatus", "?")
        if seen.get(name) == status:
            continue
        seen[name] = status
        reason = f": {step['FailureReason']}" if step.get("FailureReason") else ""
        cached = " (cached)" if step.get("CacheHitResult") else ""
        lines.append(f"{name}: {status}{cached}{reason}")
    return lines


def follow_execution(sagemaker: Any, arn: str, emit: Callable[[str], None], poll_s: float = 30,
                     timeout_s: float | None = None) -> str:
    """Poll until the execution ends, emitting each step status change; returns the final status."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        status = describe_execution(sagemaker, arn)["PipelineExecutionStatus"]
        for line in status_changes(seen, execution_steps(sagemaker, arn)):
            emit(line)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


# -- schedules ------------------------------------------------------------------------------------

def schedule_request(name: str, expression: str, pipeline_arn: str, role_arn: str, parameters: dict[str, Any],
                     description: str = "", timezone: str = "UTC", enabled: bool = True) -> dict[str, Any]:
    """The CreateSchedule/UpdateSchedule request that starts the pipeline with ``parameters``."""
    return {
        "Name": name,
        "GroupName": SCHEDULE_GROUP,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Description": description[:512],
        "State": "ENABLED" if enabled else "DISABLED",
        "Target": {
            "Arn": pipeline_arn,
            "RoleArn": role_arn,
            "SageMakerPipelineParameters": {
                "PipelineParameterList": [{"Name": k, "Value": str(v)} for k, v in sorted(parameters.items())]},
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        },
    }


def upsert_schedule(scheduler: Any, request: dict[str, Any]) -> tuple[str, bool]:
    """Update the schedule, or create it when it does not exist; (ARN, created)."""
    try:
        return scheduler.update_schedule(**request)["ScheduleArn"], False
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    return scheduler.create_schedule(**request)["ScheduleArn"], True


def _schedule_summaries(scheduler: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"GroupName": SCHEDULE_GROUP}
        if token:
            kwargs["NextToken"] = token
        page = scheduler.list_schedules(**kwargs)
        yield from page.get("Schedules", [])
        token = page.get("NextToken")
        if not token:
            return


def targets_pipeline(target_arn: str | None, pipeline: str) -> bool:
    """Whether a schedule target is the SageMaker pipeline named ``pipeline`` (ARNs are lower-case)."""
    return bool(target_arn) and target_arn.lower().endswith(f":pipeline/{pipeline.lower()}")


def list_schedules(scheduler: Any, pipeline: str) -> list[dict[str, Any]]:
    """Every schedule (of the default group) that starts the pipeline named ``pipeline``, with details."""
    found = []
    for summary in _schedule_summaries(scheduler):
        if not targets_pipeline(summary.get("Target", {}).get("Arn"), pipeline):
            continue
        found.append(scheduler.get_schedule(Name=summary["Name"], GroupName=summary.get("GroupName", SCHEDULE_GROUP)))
    return found


def delete_schedule(scheduler: Any, name: str, pipeline: str) -> bool:
    """Delete a schedule of this pipeline; False when there is none by that name."""
    try:
        schedule = scheduler.get_schedule(Name=name, GroupName=SCHEDULE_GROUP)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise
    target = schedule.get("Target", {}).get("Arn")
    if not targets_pipeline(target, pipeline):
        raise ValueError(f"schedule {name} starts {target}, not the pipeline {pipeline}; not deleted")
    scheduler.delete_schedule(Name=name, GroupName=SCHEDULE_GROUP)
    return True


def console_url(region: str, pipeline: str, execution_arn: str | None = None) -> str:
    url = f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/pipelines/{pipeline}"
    if execution_arn:
        url += f"/executions/{execution_arn.rsplit('/', 1)[-1]}"
    return url


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
