"""The deploy stage with target=sagemaker, against moto: create, update with a new config, autoscale.

moto 5.2 implements endpoints, endpoint configs, model packages and Application Auto Scaling, but
not UpdateEndpoint; ``moto_update_endpoint`` adds that one call to moto's backend the way the
service behaves once an update is in service (the endpoint serves the new configuration).
"""

from __future__ import annotations

from pathlib import Path

import pytest

moto = pytest.importorskip("moto", reason="moto (pip install -e '.[aws]')")

import boto3  # noqa: E402
import soundfile as sf  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from steps.common.manifest import Utterance, split_path, write_manifest  # noqa: E402
from steps.common.sagemaker_endpoint import (  # noqa: E402
    SCALABLE_DIMENSION,
    SCALING_METRIC,
    EndpointError,
    EndpointSpec,
    resource_id,
)
from steps.deploy import DeployParams, deploy  # noqa: E402
from tests.conftest import tone  # noqa: E402

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/speechops-sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/speechops-serve:t1"
ENDPOINT = "speechops-whisper-intensity"


@pytest.fixture
def moto_update_endpoint(monkeypatch):
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    def update_endpoint(self):  # noqa: ANN001 - moto's response handler signature
        backend = self.sagemaker_backend
        name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        if name not in backend.endpoints:
            raise ValidationError(message=f'Could not find endpoint "{name}".')
        try:
            config = backend.describe_endpoint_config(config_name)
        except KeyError as exc:
            raise ValidationError(message=f"Could not find endpoint configuration {config_name!r}.") from exc
        endpoint = backend.endpoints[name]
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        return EmptyResult()

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)


@pytest.fixture
def aws(monkeypatch, moto_update_endpoint):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def data(tmp_path) -> Path:
    """A prepared data folder with one test clip (what the prepare stage writes)."""
    folder = tmp_path / "data"
    (folder / "audio").mkdir(parents=True)
    sf.write(folder / "audio" / "t0.wav", tone(1.0, dbfs=-20.0), 16000)
    write_manifest(split_path(folder, "test"), [Utterance(id="t0", audio="audio/t0.wav", duration=1.0,
                                                          text="hello there", split="test", intensity=-20.0)])
    return folder


def package(aws, status: str = "Approved") -> str:
    sagemaker = aws.client("sagemaker")
    try:
        sagemaker.create_model_package_group(ModelPackageGroupName=ENDPOINT)
    except ClientError:
        pass
    return sagemaker.create_model_package(
        ModelPackageGroupName=ENDPOINT, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/train/model.tar.gz"}],
                                "SupportedContentTypes": ["audio/wav"],
                                "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]


def params(**values) -> DeployParams:
    base = {"target": "sagemaker", "endpoint_name": ENDPOINT, "execution_role_arn": ROLE, "region": REGION,
            "instance_type": "ml.g4dn.xlarge", "endpoint_timeout_s": 30}
    return DeployParams.model_validate({**base, **values})


def scaling(aws) -> tuple[list[dict], list[dict]]:
    client = aws.client("application-autoscaling")
    targets = client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = client.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    return targets, policies


def test_create_then_update_with_a_new_config_and_autoscaling(aws, data, tmp_path):
    sagemaker = aws.client("sagemaker")
    arn = package(aws)
    first = deploy(params(model_package_arn=arn, min_capacity=1, max_capacity=3,
                          target_invocations_per_instance=70, scale_in_cooldown_s=600, scale_out_cooldown_s=30),
                   tmp_path / "model", data, None, "whisper_intensity")
    assert first["deployed"] and first["action"] == "created"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == first["endpoint_config_name"]
    model = sagemaker.describe_model(ModelName=first["model_name"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn and model["ExecutionRoleArn"] == ROLE
    config_name = first["endpoint_config_name"]
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["VariantName"] == "AllTraffic"
    assert first["response"] and first["request"].startswith("t0"), "the endpoint was asked a real question"

    (target,), (policy,) = scaling(aws)
    assert target["ResourceId"] == resource_id(ENDPOINT) == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    assert target["ScalableDimension"] == SCALABLE_DIMENSION
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == SCALING_METRIC
    assert config["TargetValue"] == 70.0 and config["ScaleInCooldown"] == 600 and config["ScaleOutCooldown"] == 30

    second = deploy(params(model_package_arn=package(aws), instance_type="ml.m5.xlarge", max_capacity=5),
                    tmp_path / "model", data, None, "whisper_intensity")
    assert second["action"] == "updated"
    assert second["endpoint_config_name"] != first["endpoint_config_name"], "a NEW config for every deployment"
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == second["endpoint_config_name"]
    assert second["previous_endpoint_config"] == first["endpoint_config_name"]
    configs = [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [second["endpoint_config_name"]], "the replaced configuration is cleaned up"
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == [second["model_name"]]
    (target,), (policy,) = scaling(aws)
    assert target["MaxCapacity"] == 5
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 1


def test_serverless_endpoint_has_no_scaling_target(aws, data, tmp_path):
    arn = package(aws)
    deploy(params(model_package_arn=arn), tmp_path / "model", data, None, "whisper_intensity")
    assert scaling(aws)[0], "instance-based first"
    result = deploy(params(model_package_arn=arn, serverless_memory_mb=2048, serverless_max_concurrency=4),
                    tmp_path / "model", data, None, "whisper_intensity")
    assert result["serverless"] and result["autoscaling"] is None
    (variant,) = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=result["endpoint_config_name"])["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
    assert scaling(aws) == ([], []), "serverless endpoints scale themselves"


def test_an_unapproved_package_is_not_deployed(aws, data, tmp_path):
    result = deploy(params(model_package_arn=package(aws, "PendingManualApproval")), tmp_path / "model", data, None, "whisper_intensity")
    assert result["deployed"] is False and "PendingManualApproval" in result["notes"][0]
    assert not aws.client("sagemaker").list_endpoints()["Endpoints"]


def test_image_and_model_data_without_a_package(aws, data, tmp_path):
    result = deploy(params(image_uri=IMAGE, model_data_url="s3://b/train/model.tar.gz"), tmp_path / "model", data, None, "whisper_intensity")
    model = aws.client("sagemaker").describe_model(ModelName=result["model_name"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://b/train/model.tar.gz"


def test_missing_settings_and_bad_capacities_are_refused():
    with pytest.raises(ValueError, match="--backend sagemaker"):
        deploy(DeployParams(target="sagemaker"), Path("/m"), Path("/d"), None)
    with pytest.raises(ValueError, match="max_capacity"):
        params(min_capacity=5, max_capacity=2)
    with pytest.raises(EndpointError, match="model_package_arn"):
        EndpointSpec(endpoint_name=ENDPOINT, execution_role_arn=ROLE)
    with pytest.raises(EndpointError, match="at most"):
        EndpointSpec(endpoint_name="x" * 60, execution_role_arn=ROLE, model_package_arn="arn")
