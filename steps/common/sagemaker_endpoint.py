"""SageMaker endpoints with boto3: deploy without downtime, autoscale, ask.

``deploy_endpoint`` always creates a NEW model and a NEW endpoint configuration (names carry a UTC
timestamp), then creates the endpoint or updates it to the new configuration. An update is
SageMaker's blue/green swap: the old fleet keeps serving until the new one is in service, so
there is no downtime. Then the variant is registered with Application Auto Scaling with a
target-tracking policy on ``SageMakerVariantInvocationsPerInstance`` (invocations per instance
per minute), bounded by min/max capacity, with scale-in and scale-out cooldowns. Serverless
endpoints (memory size + max concurrency) scale by themselves and get no scaling target.

Previous configurations and models that this module created for the endpoint are deleted once
the update is in service. The clients are passed in, so the deploy stage and the tests share
this code; nothing is created at import time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
NAME_LIMIT = 63
STAMP_LENGTH = len("-20260101-120000123")
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")


class EndpointError(RuntimeError):
    """A deployment that cannot go on, with what to do about it."""


@dataclass(frozen=True)
class Autoscaling:
    min_capacity: int = 1
    max_capacity: int = 4
    target_invocations_per_instance: float = 100.0
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.min_capacity <= self.max_capacity:
            raise EndpointError(f"autoscaling needs 1 <= min_capacity ({self.min_capacity}) <= max_capacity "
                                f"({self.max_capacity})")


@dataclass(frozen=True)
class EndpointSpec:
    """What to serve and how. Give ``model_package_arn`` (a Model Registry version) or ``image_uri``
    plus ``model_data_url`` (a model.tar.gz)."""

    endpoint_name: str
    execution_role_arn: str
    model_package_arn: str | None = None
    image_uri: str | None = None
    model_data_url: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    instance_type: str = "ml.m5.xlarge"
    initial_instance_count: int = 1
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int = 5
    autoscaling: Autoscaling | None = field(default_factory=Autoscaling)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not self.model_package_arn and not (self.image_uri and self.model_data_url):
            problems.append("give model_package_arn, or image_uri and model_data_url")
        if len(self.endpoint_name) > NAME_LIMIT - STAMP_LENGTH:
            problems.append(f"endpoint_name must have at most {NAME_LIMIT - STAMP_LENGTH} characters "
                            "(models and configurations add a timestamp)")
        if problems:
            raise EndpointError(f"cannot deploy endpoint {self.endpoint_name!r}: " + "; ".join(problems))

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None


def resource_id(endpoint_name: str, variant: str = VARIANT) -> str:
    """The Application Auto Scaling id of an endpoint variant."""
    return f"endpoint/{endpoint_name}/variant/{variant}"


def deploy_endpoint(sagemaker: Any, autoscaling: Any, spec: EndpointSpec, *, timeout_s: float = 3600,
                    poll_s: float = 15, now: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Create or update the endpoint with a new configuration, wait until it serves, autoscale it."""
    moment = (now or (lambda: datetime.now(timezone.utc)))()
    name = f"{spec.endpoint_name}-{moment:%Y%m%d-%H%M%S}{moment.microsecond // 1000:03d}"
    previous = describe_endpoint(sagemaker, spec.endpoint_name)
    if previous and previous["EndpointStatus"] in IN_PROGRESS:
        log.info("endpoint %s is %s; waiting before changing it", spec.endpoint_name, previous["EndpointStatus"])
        previous = wait_in_service(sagemaker, spec.endpoint_name, timeout_s, poll_s)
    tags = [{"Key": k, "Value": v} for k, v in {"speechops:endpoint": spec.endpoint_name, **spec.tags}.items()]

    container: dict[str, Any] = ({"ModelPackageName": spec.model_package_arn} if spec.model_package_arn else
                                 {"Image": spec.image_uri, "ModelDataUrl": spec.model_data_url})
    if spec.environment:
        container["Environment"] = dict(spec.environment)
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=spec.execution_role_arn, PrimaryContainer=container,
                           Tags=tags)
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": name}
    if spec.serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": spec.serverless_memory_mb,
                                       "MaxConcurrency": spec.serverless_max_concurrency}
    else:
        variant.update(InstanceType=spec.instance_type, InitialInstanceCount=spec.initial_instance_count,
                       InitialVariantWeight=1.0)
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], Tags=tags)
    log.info("created model and endpoint configuration %s", name)

    if previous is None:
        sagemaker.create_endpoint(EndpointName=spec.endpoint_name, EndpointConfigName=name, Tags=tags)
        action = "created"
    else:
        old_variant = _variant(sagemaker, previous["EndpointConfigName"])
        if _registered(autoscaling, spec.endpoint_name) and (spec.serverless or old_variant.get("InstanceType") !=
                                                              spec.instance_type):
            # SageMaker rejects an update that changes the instance type of an autoscaled variant.
            deregister_autoscaling(autoscaling, spec.endpoint_name)
        sagemaker.update_endpoint(EndpointName=spec.endpoint_name, EndpointConfigName=name)
        action = "updated"
    log.info("%s endpoint %s with configuration %s", action, spec.endpoint_name, name)
    described = wait_in_service(sagemaker, spec.endpoint_name, timeout_s, poll_s)
    if described["EndpointConfigName"] != name:
        raise EndpointError(f"endpoint {spec.endpoint_name} is in service with {described['EndpointConfigName']}, "
                            f"not the new configuration {name}; see its events in the SageMaker console")

    scaling: dict[str, Any] | None = None
    if spec.serverless:
        if _registered(autoscaling, spec.endpoint_name):
            deregister_autoscaling(autoscaling, spec.endpoint_name)
    elif spec.autoscaling is not None:
        scaling = configure_autoscaling(autoscaling, spec.endpoint_name, spec.autoscaling)
    removed = _remove_previous(sagemaker, spec.endpoint_name, keep=name) if previous is not None else []
    return {
        "endpoint_name": spec.endpoint_name,
        "endpoint_arn": described.get("EndpointArn"),
        "action": action,
        "endpoint_config_name": name,
        "model_name": name,
        "previous_endpoint_config": previous["EndpointConfigName"] if previous else None,
        "removed": removed,
        "status": described["EndpointStatus"],
        "serverless": spec.serverless,
        "autoscaling": scaling,
    }


def describe_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if _code(exc) == "ValidationException" and "Could not find" in str(exc):
            return None
        raise


def wait_in_service(sagemaker: Any, name: str, timeout_s: float, poll_s: float) -> dict[str, Any]:
    """Poll until the endpoint is InService; a failure raises with SageMaker's reason."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sagemaker.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status == "InService":
            return described
        if status in ("Failed", "OutOfService"):
            raise EndpointError(f"endpoint {name} is {status}: {described.get('FailureReason', 'no reason given')}; "
                                "check the serving image answers GET /ping and POST /invocations on port 8080")
        if time.monotonic() > deadline:
            raise EndpointError(f"endpoint {name} still {status} after {timeout_s:.0f}s; it keeps going in the "
                                "background: check it in the SageMaker console")
        time.sleep(poll_s)


def configure_autoscaling(autoscaling: Any, endpoint_name: str, settings: Autoscaling) -> dict[str, Any]:
    """Register the variant as a scalable target and put a target-tracking policy on it."""
    rid = resource_id(endpoint_name)
    autoscaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid,
                                         ScalableDimension=SCALABLE_DIMENSION, MinCapacity=settings.min_capacity,
                                         MaxCapacity=settings.max_capacity)
    policy = f"{endpoint_name}-invocations-per-instance"
    response = autoscaling.put_scaling_policy(
        PolicyName=policy, ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(settings.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": settings.scale_in_cooldown_s,
            "ScaleOutCooldown": settings.scale_out_cooldown_s,
        })
    log.info("autoscaling %s: %d..%d instances, target %.0f invocations/instance/min", rid, settings.min_capacity,
             settings.max_capacity, settings.target_invocations_per_instance)
    return {"resource_id": rid, "policy_name": policy, "policy_arn": response.get("PolicyARN"), **asdict(settings)}


def deregister_autoscaling(autoscaling: Any, endpoint_name: str) -> None:
    rid = resource_id(endpoint_name)
    for policy in autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid,
                                                        ScalableDimension=SCALABLE_DIMENSION)["ScalingPolicies"]:
        autoscaling.delete_scaling_policy(PolicyName=policy["PolicyName"], ServiceNamespace="sagemaker",
                                          ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION)
    autoscaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid,
                                           ScalableDimension=SCALABLE_DIMENSION)
    log.info("deregistered %s from autoscaling", rid)


def invoke(runtime: Any, endpoint_name: str, body: bytes, content_type: str = "audio/wav",
           accept: str = "application/json") -> dict[str, Any]:
    """One request to the endpoint: the answer's bytes and content type, its JSON when it is JSON, the latency."""
    started = time.perf_counter()
    response = runtime.invoke_endpoint(EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept=accept)
    data = response["Body"].read()
    try:
        answer: Any = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        answer = None
    return {"response": answer, "body": data, "content_type": response.get("ContentType"),
            "latency_s": round(time.perf_counter() - started, 3)}


def _registered(autoscaling: Any, endpoint_name: str) -> bool:
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker",
                                                    ResourceIds=[resource_id(endpoint_name)],
                                                    ScalableDimension=SCALABLE_DIMENSION)["ScalableTargets"]
    return bool(targets)


def _variant(sagemaker: Any, config_name: str) -> dict[str, Any]:
    try:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    except ClientError:
        return {}
    return next((v for v in variants if v.get("VariantName") == VARIANT), variants[0] if variants else {})


def _remove_previous(sagemaker: Any, endpoint_name: str, keep: str) -> list[str]:
    """Delete the configurations (and their models) this module made for the endpoint, except ``keep``."""
    removed = []
    prefix = f"{endpoint_name}-"
    paginator = sagemaker.get_paginator("list_endpoint_configs")
    for page in paginator.paginate(NameContains=prefix):
        for summary in page["EndpointConfigs"]:
            config = summary["EndpointConfigName"]
            if config == keep or not config.startswith(prefix) or not config[len(prefix):][:8].isdigit():
                continue
            models = [v["ModelName"] for v in sagemaker.describe_endpoint_config(
                EndpointConfigName=config)["ProductionVariants"]]
            sagemaker.delete_endpoint_config(EndpointConfigName=config)
            for model in models:
                if model.startswith(prefix) and model != keep:
                    try:
                        sagemaker.delete_model(ModelName=model)
                    except ClientError as exc:
                        log.warning("could not delete model %s: %s", model, exc)
            removed.append(config)
    if removed:
        log.info("removed previous configurations %s", ", ".join(removed))
    return removed


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
