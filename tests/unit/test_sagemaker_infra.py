"""infra/: cfn-lint on every template, names that match the code, IAM that covers what the code calls,
and the stacks deployed to moto driving a real (emulated) run with their outputs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipelines import images

cfnlint_api = pytest.importorskip("cfnlint.api", reason="cfn-lint (pip install -e '.[test]')")
from cfnlint.decode import decode  # noqa: E402

INFRA = Path(__file__).resolve().parents[2] / "infra"
TEMPLATES = sorted(INFRA.glob("*.yaml"))


def template(name: str) -> dict:
    data, errors = decode(str(INFRA / name))
    assert not errors, errors
    return data


def statements(role: dict) -> list[dict]:
    found = []
    for policy in role["Properties"]["Policies"]:
        found += policy["PolicyDocument"]["Statement"]
    return found


def actions(stmts: list[dict], wildcard_only: bool = False) -> set[str]:
    found: set[str] = set()
    for stmt in stmts:
        if stmt["Effect"] != "Allow" or (wildcard_only and stmt["Resource"] != "*"):
            continue
        found |= {stmt["Action"]} if isinstance(stmt["Action"], str) else set(stmt["Action"])
    return found


def test_there_are_templates_for_bucket_repositories_and_roles():
    assert {t.name for t in TEMPLATES} >= {"storage.yaml", "ecr.yaml", "iam.yaml"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(path):
    matches = cfnlint_api.lint_file(path, config=cfnlint_api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_one_ecr_repository_per_stage_image_named_by_pipelines_images():
    repos = [r["Properties"]["RepositoryName"] for r in template("ecr.yaml")["Resources"].values()
             if r["Type"] == "AWS::ECR::Repository"]
    assert sorted(repos) == sorted(images.repositories())
    assert images.repository("tune") == "speechops-train", "tuning jobs run the train image"


def test_execution_role_allows_what_the_steps_and_the_deploy_stage_call_and_nothing_unused():
    role = template("iam.yaml")["Resources"]["ExecutionRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    allowed = actions(statements(role))
    # the step types the compiler emits, as the pipeline (this role) creates their jobs
    for job in ("ProcessingJob", "TrainingJob", "HyperParameterTuningJob"):
        assert {f"sagemaker:Create{job}", f"sagemaker:Describe{job}", f"sagemaker:Stop{job}"} <= allowed, job
    assert {"sagemaker:CreateModelPackage", "iam:PassRole", "s3:GetObject", "s3:PutObject"} <= allowed
    # every boto3 call of the endpoint module, as an IAM action
    source = (Path(__file__).resolve().parents[2] / "steps/common/sagemaker_endpoint.py").read_text()
    calls = {("sagemaker", m) for m in re.findall(r"\bsagemaker\.(\w+)\(", source)}
    calls |= {("sagemaker", m) for m in re.findall(r'get_paginator\("(\w+)"\)', source)}
    calls |= {("application-autoscaling", m) for m in re.findall(r"\bautoscaling\.(\w+)\(", source)}
    calls |= {("sagemaker", "invoke_endpoint"), ("sagemaker", "describe_model_package")}  # steps/deploy.py
    needed = {f"{service}:{''.join(w.capitalize() for w in method.split('_'))}" for service, method in calls
              if method != "get_paginator"}
    assert not needed - allowed, needed - allowed
    unused = {"sagemaker:CreateTransformJob", "s3:DeleteObject", "sagemaker:UpdateModelPackage"}
    assert not unused & allowed, unused & allowed
    assert not [a for a in allowed if a.startswith("ec2:")], "no job runs in a VPC: no network-interface actions"
    wildcard = [s for s in statements(role) if s["Resource"] == "*"]
    assert all(not any(a.startswith(("s3:", "sagemaker:Create", "iam:")) for a in actions([s])) for s in wildcard), \
        "data, job creation and IAM stay scoped"
    for stmt in wildcard:
        if "cloudwatch:PutMetricData" in actions([stmt]):
            assert stmt["Condition"]["StringLike"]["cloudwatch:namespace"].startswith("/aws/sagemaker/")
    for stmt in statements(role):
        if "iam:PassRole" in actions([stmt]):
            assert stmt["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
    assert "sagemaker-mlflow:*" not in str(template("iam.yaml")["Resources"]["MlflowAccess"])


def test_the_sdk_role_check_is_off_while_compiling_since_the_roles_grant_no_vpc_actions(monkeypatch):
    """The SDK would refuse the job role for lacking ec2 network-interface actions on '*'."""
    from pipelines.backends.sagemaker_compile import sdk_environment

    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    with sdk_environment("eu-west-1", dry_run=False):
        import os

        assert os.environ["SAGEMAKER_VALIDATE_ROLE"] == "false"
    assert "SAGEMAKER_VALIDATE_ROLE" not in __import__("os").environ, "restored: the upsert validates its role"


def test_endpoint_role_reads_the_model_pulls_the_serving_image_and_logs_nothing_else():
    resources = template("iam.yaml")["Resources"]
    role = resources["EndpointRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert actions(statements(role)) == {
        "s3:GetObject", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
        "ecr:GetAuthorizationToken", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
        "cloudwatch:PutMetricData"}
    text = str(statements(role))
    assert "repository/speechops-serve" in text and "${Prefix}/*" in text
    for stmt in statements(role):
        if stmt["Resource"] == "*":
            assert actions([stmt]) <= {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
            if "cloudwatch:PutMetricData" in actions([stmt]):
                assert "cloudwatch:namespace" in stmt["Condition"]["StringLike"]
    # the execution role may pass the endpoint role (to SageMaker) but the endpoint role passes nothing
    passes = [s for s in statements(resources["ExecutionRole"]) if "iam:PassRole" in actions([s])]
    assert {"Fn::GetAtt": ["EndpointRole", "Arn"]} in [s["Resource"] for s in passes]


def test_ecr_tags_are_immutable():
    for resource in template("ecr.yaml")["Resources"].values():
        if resource["Type"] == "AWS::ECR::Repository":
            assert resource["Properties"]["ImageTagMutability"] == "IMMUTABLE"


def test_scheduler_role_can_only_start_speechops_pipelines():
    role = template("iam.yaml")["Resources"]["SchedulerRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    (stmt,) = statements(role)
    assert stmt["Action"] == "sagemaker:StartPipelineExecution"
    assert "pipeline/${NamePrefix}-*" in str(stmt["Resource"])


def test_push_script_tags_images_with_the_backend_names():
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    out = subprocess.run(["bash", str(INFRA / "push_images.sh"), "--registry", registry, "--tag", "t9", "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    for image in images.IMAGES:
        uri = images.image_uri(image, registry, "t9")
        assert f"-t {uri} " in out and f"push {uri}" in out, image
    assert ":latest" not in out, "immutable repositories: no moving tag is pushed"


def test_stacks_deploy_and_their_outputs_drive_a_run(monkeypatch, tmp_path, capsys):
    moto = pytest.importorskip("moto")
    pytest.importorskip("sagemaker.core.workflow.parameters")
    import boto3

    from pipelines.cli import main

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1", "SAGEMAKER_VALIDATE_ROLE": "false"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="eu-west-1")
        outputs = {}
        for name in ("storage", "ecr", "iam"):
            parameters = [] if name == "ecr" else [{"ParameterKey": "BucketName", "ParameterValue": "speechops-unit"}]
            cloudformation.create_stack(StackName=f"speechops-{name}", Parameters=parameters,
                                        TemplateBody=(INFRA / f"{name}.yaml").read_text(),
                                        Capabilities=["CAPABILITY_NAMED_IAM"])
            stack = cloudformation.describe_stacks(StackName=f"speechops-{name}")["Stacks"][0]
            assert stack["StackStatus"] == "CREATE_COMPLETE"
            outputs |= {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["Registry"] == images.ecr_registry("123456789012", "eu-west-1")
        code = main(["--pipeline", "whisper_intensity", "--backend", "sagemaker", "--runs-dir", str(tmp_path),
                     "--sagemaker-role", outputs["ExecutionRoleArn"], "--sagemaker-bucket", outputs["BucketName"],
                     "--sagemaker-region", "eu-west-1", "--sagemaker-image-tag", "abc1234def56",
                     "--schedule", "rate(7 days)"])
        assert code == 0, capsys.readouterr().out
        (schedule,) = boto3.client("scheduler", region_name="eu-west-1").list_schedules()["Schedules"]
        detail = boto3.client("scheduler", region_name="eu-west-1").get_schedule(Name=schedule["Name"])
        assert detail["Target"]["RoleArn"] == outputs["SchedulerRoleArn"], "the default scheduler role is the stack's"


def test_image_uri_is_the_one_naming_rule():
    registry = images.ecr_registry("123456789012", "eu-west-1")
    assert images.image_uri("train", registry, "abc1234") == \
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/speechops-train:abc1234"
    assert images.image_uri("tune", registry) == f"{registry}/speechops-train:latest"
    assert images.image_uri("serve", registry + "/") == f"{registry}/speechops-serve:latest"
    for bad in (lambda: images.image_uri("train", "https://example.com", "t"),
                lambda: images.image_uri("train", registry, "bad tag"),
                lambda: images.ecr_registry("12345", "eu-west-1")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(KeyError):
        images.image_uri("nonexistent", registry)
