"""Upsert, start, describe and schedule a SageMaker pipeline through the CLI, against moto."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sagemaker.core.workflow.parameters", reason="the SageMaker SDK (pip install -e '.[aws]')")
moto = pytest.importorskip("moto", reason="moto (pip install -e '.[aws]')")

import boto3  # noqa: E402

from pipelines.backends.sagemaker_aws import status_changes  # noqa: E402
from pipelines.cli import main  # noqa: E402

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/speechops-sagemaker-execution"
SCHEDULER_ROLE = "arn:aws:iam::123456789012:role/speechops-scheduler"
NAME = "speechops-whisper-intensity"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       # moto has no iam:SimulatePrincipalPolicy; the SDK's optional role check is off
                       "SAGEMAKER_VALIDATE_ROLE": "false"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        yield boto3.Session(region_name=REGION)


def cli(tmp_path, *extra: str) -> int:
    return main(["--pipeline", "whisper_intensity", "--backend", "sagemaker", "--runs-dir", str(tmp_path / "runs"),
                 "--sagemaker-role", ROLE, "--sagemaker-bucket", "speechops-unit", "--sagemaker-region", REGION,
                 "--sagemaker-image-tag", "abc1234def56", "--definition-out", str(tmp_path / "definition.json"),
                 *extra])


def test_upsert_start_and_describe(aws, tmp_path, capsys):
    sagemaker = aws.client("sagemaker")
    assert cli(tmp_path, "--param", "TrainEpochs=2", "--run-id", "first") == 0
    out = capsys.readouterr().out
    assert "upserted" in out and "started" in out

    pipeline = sagemaker.describe_pipeline(PipelineName=NAME)
    assert pipeline["RoleArn"] == ROLE
    assert json.loads(pipeline["PipelineDefinition"]) == json.loads((tmp_path / "definition.json").read_text())
    assert "profile tiny" in pipeline["PipelineDescription"]
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=pipeline["PipelineArn"])["Tags"]}
    assert tags["speechops:pipeline"] == "whisper_intensity"
    group = sagemaker.describe_model_package_group(ModelPackageGroupName=NAME)
    assert group["ModelPackageGroupName"] == NAME, "the Model Registry group the RegisterModel step writes to"

    (execution,) = sagemaker.list_pipeline_executions(PipelineName=NAME)["PipelineExecutionSummaries"]
    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution["PipelineExecutionArn"])
    assert described["PipelineExecutionDisplayName"] == "first"
    parameters = sagemaker.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution["PipelineExecutionArn"])["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in parameters} == {"TrainEpochs": "2.0"}

    # a second run updates the same pipeline (new definition) and starts another execution
    assert cli(tmp_path, "--set", "train.epochs=3") == 0
    pipeline = sagemaker.describe_pipeline(PipelineName=NAME)
    defaults = {p["Name"]: p["DefaultValue"] for p in json.loads(pipeline["PipelineDefinition"])["Parameters"]}
    assert defaults["TrainEpochs"] == 3.0
    assert len(sagemaker.list_pipeline_executions(PipelineName=NAME)["PipelineExecutionSummaries"]) == 2
    assert len(sagemaker.list_pipelines()["PipelineSummaries"]) == 1


def test_schedule_create_update_list_and_delete(aws, tmp_path, capsys):
    scheduler = aws.client("scheduler")
    assert cli(tmp_path, "--schedule", "cron(0 3 ? * SUN *)", "--set", "train.epochs=3",
               "--schedule-role", SCHEDULER_ROLE) == 0
    assert "created schedule" in capsys.readouterr().out
    schedule = scheduler.get_schedule(Name=f"{NAME}-retrain")
    arn = aws.client("sagemaker").describe_pipeline(PipelineName=NAME)["PipelineArn"]
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    assert schedule["Target"]["Arn"] == arn and schedule["Target"]["RoleArn"] == SCHEDULER_ROLE
    target = schedule["Target"]
    overrides = {p["Name"]: p["Value"] for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]}
    assert overrides["TrainEpochs"] == "3.0", "values set on the command line are pinned"
    assert overrides["DataSnapshot"] == "<aws.scheduler.scheduled-time>", "each scheduled run re-reads the data"
    assert len(overrides) == 2
    assert not aws.client("sagemaker").list_pipeline_executions(PipelineName=NAME)["PipelineExecutionSummaries"], \
        "scheduling does not start an execution"

    # the same name again: updated in place, with this run's overrides
    assert cli(tmp_path, "--schedule", "rate(7 days)", "--param", "MaxWer=0.2", "--schedule-role", SCHEDULER_ROLE) == 0
    assert "updated schedule" in capsys.readouterr().out
    schedule = scheduler.get_schedule(Name=f"{NAME}-retrain")
    assert schedule["ScheduleExpression"] == "rate(7 days)"
    assert schedule["Target"]["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": "DataSnapshot", "Value": "<aws.scheduler.scheduled-time>"}, {"Name": "MaxWer", "Value": "0.2"}]

    scheduler.create_schedule(Name="someone-else", ScheduleExpression="rate(1 day)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn.replace(NAME, "other-pipeline"), "RoleArn": SCHEDULER_ROLE})
    assert cli(tmp_path, "--list-schedules") == 0
    out = capsys.readouterr().out
    assert f"{NAME}-retrain" in out and "rate(7 days)" in out and "MaxWer=0.2" in out
    assert "someone-else" not in out, "only the schedules that start this pipeline"

    assert cli(tmp_path, "--delete-schedule", "someone-else") == 2, "another pipeline's schedule is not deleted"
    assert cli(tmp_path, "--delete-schedule", f"{NAME}-retrain") == 0
    names = [s["Name"] for s in scheduler.list_schedules()["Schedules"]]
    assert names == ["someone-else"]
    assert cli(tmp_path, "--delete-schedule", f"{NAME}-retrain") == 1
    assert "no schedule named" in capsys.readouterr().out


def test_schedule_expression_and_option_mistakes_are_refused(aws, tmp_path, capsys):
    assert cli(tmp_path, "--schedule", "every sunday") == 2
    assert "cron(0 3 ? * SUN *)" in capsys.readouterr().out
    assert cli(tmp_path, "--schedule", "rate(1 day)", "--wait") == 2
    assert cli(tmp_path, "--list-schedules", "--delete-schedule", "x") == 2
    assert not aws.client("scheduler").list_schedules()["Schedules"]


def test_wait_reports_each_step_status_change_once():
    seen: dict[str, str] = {}
    first = status_changes(seen, [{"StepName": "prepare", "StepStatus": "Executing"}])
    again = status_changes(seen, [{"StepName": "prepare", "StepStatus": "Executing"},
                                  {"StepName": "tokenizer", "StepStatus": "Starting"}])
    done = status_changes(seen, [{"StepName": "prepare", "StepStatus": "Succeeded", "CacheHitResult": {"a": 1}},
                                 {"StepName": "tokenizer", "StepStatus": "Failed", "FailureReason": "OOM"}])
    assert first == ["prepare: Executing"]
    assert again == ["tokenizer: Starting"]
    assert done == ["prepare: Succeeded (cached)", "tokenizer: Failed: OOM"]
