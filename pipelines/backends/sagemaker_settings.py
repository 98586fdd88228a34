"""Settings of the SageMaker backend: where the compiled pipeline runs, never what it runs.

They come from the profile's reserved ``sagemaker:`` section (so ``--set sagemaker.bucket=...`` works
like any override) and from the ``--sagemaker-*`` options of ``run.py``, which win. The region falls
back to the AWS configuration of the machine (``AWS_REGION``, ``~/.aws/config``). Everything is
validated before anything is compiled, and every problem is reported at once.

A dry run needs none of them: missing account-specific values become visible placeholders
(``PLACEHOLDER_ACCOUNT``) and the plan lists them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import images
from pipelines.definition import PipelineError

PLACEHOLDER_ACCOUNT = "000000000000"
PLACEHOLDER_ROLE = f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/speechops-sagemaker-execution"
PLACEHOLDER_BUCKET = "speechops-artifacts-placeholder"
DEFAULT_ENDPOINT_ROLE_NAME = "speechops-sagemaker-endpoint"  # created by infra/iam.yaml
NO_COMMIT_TAG = "no-git-commit"  # a dry run outside a git checkout; a real run asks for --sagemaker-image-tag
DEFAULT_DRY_RUN_REGION = "us-east-1"

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")


class SageMakerSettings(BaseModel):
    """The ``sagemaker:`` section of a profile (all optional for a dry run)."""

    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(None, description="execution role ARN of the pipeline and its jobs (deploy included)")
    endpoint_role: str | None = Field(
        None, description="role the endpoint's model runs as (default: the role account's "
                          f"{DEFAULT_ENDPOINT_ROLE_NAME} role of infra/iam.yaml)")
    bucket: str | None = Field(None, description="S3 bucket for every step's outputs, checkpoints and reports")
    region: str | None = Field(None, description="AWS region (default: the machine's AWS configuration)")
    prefix: str = Field("speechops", description="S3 key prefix under the bucket")
    pipeline_name: str | None = Field(None, description="SageMaker pipeline name (default: speechops-<pipeline>)")
    image_registry: str | None = Field(None, description="ECR registry host (default: the role's account, region)")
    image_tag: str | None = Field(None, description="tag of every stage image (default: the checkout's git commit, "
                                                    "the tag infra/push_images.sh pushes)")
    allow_mutable_tag: bool = Field(False, description=f"allow a moving tag ({', '.join(images.MUTABLE_TAGS)}): the "
                                                       "image a step runs may then change under it")
    image_digests: dict[str, str] = Field(default_factory=dict,
                                          description="image (prepare, train, serve, ...) -> sha256:... digest to run "
                                                      "instead of the tag; recorded in the registered model's lineage")
    images: dict[str, str] = Field(default_factory=dict, description="stage (or 'serve') -> full image URI override")
    instance_types: dict[str, str] = Field(default_factory=dict, description="stage -> instance type override")
    volume_size_gb: int = Field(50, ge=1, le=16384, description="EBS volume of each job")
    spot: bool = Field(True, description="managed spot training for train/tune (resumes from checkpoints)")
    spot_max_wait_factor: float = Field(2.0, ge=1.0, description="spot: wait at most factor x max runtime in all")
    cache: bool = Field(True, description="step caching (CacheConfig) for stages the pipeline marks cacheable")
    cache_expire_after: str = Field("P30D", description="ISO 8601 duration a cached step result stays valid")
    retry_attempts: int = Field(3, ge=1, le=20, description="retries of a step on capacity/throttling errors")
    parameters: list[str] = Field(default_factory=lambda: ["train.epochs", "train.lr"],
                                  description="stage parameters that become pipeline parameters (stage.param)")
    inputs: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="stage -> input -> S3 URI, for inputs no stage produces (e.g. prepare: raw:)")
    model_package_group: str | None = Field(None, description="Model Registry group (default: the pipeline name)")
    approval_status: Literal["Approved", "PendingManualApproval"] = Field(
        "Approved", description="status of a registered model that passed the quality gate")
    serve_instance_types: list[str] = Field(default_factory=lambda: ["ml.m5.xlarge", "ml.g4dn.xlarge"],
                                            description="instance types the registered model supports")
    mlflow_tracking_uri: str | None = Field(None, description="MLflow server the register stage logs to")
    schedule_role: str | None = Field(None, description="role EventBridge Scheduler assumes to start the pipeline")
    tags: dict[str, str] = Field(default_factory=dict, description="tags of the pipeline")

    @field_validator("role", "schedule_role", "endpoint_role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.removeprefix("s3://").rstrip("/")
            if not _BUCKET.match(value):
                raise ValueError("must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError("must be an AWS region such as eu-west-1")
        return value

    @field_validator("instance_types")
    @classmethod
    def _instances(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}={v}" for k, v in value.items() if not _INSTANCE.match(v)]
        if bad:
            raise ValueError(f"instance types look like ml.m5.xlarge; got {', '.join(bad)}")
        return value

    @field_validator("pipeline_name")
    @classmethod
    def _pipeline_name(cls, value: str | None) -> str | None:
        if value is not None and not _PIPELINE_NAME.match(value):
            raise ValueError("letters, digits and single '-' only (SageMaker pipeline names)")
        return value

    @field_validator("cache_expire_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError("must be an ISO 8601 duration such as P30D or PT12H")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", v)]
        if bad:
            raise ValueError(f"name stage parameters as stage.param (e.g. train.epochs); got {bad}")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        bad = [f"{stage}.{name}={uri}" for stage, items in value.items() for name, uri in items.items()
               if not uri.startswith("s3://")]
        if bad:
            raise ValueError(f"inputs are S3 URIs (s3://bucket/prefix/); got {', '.join(bad)}")
        return value

    @field_validator("image_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is not None:
            images.image_uri("prepare", "registry.example", value)  # raises ValueError with the rule
        return value

    @field_validator("image_digests")
    @classmethod
    def _digests(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for image, digest in value.items():
            try:
                images.image_digest_uri(image, "registry.example", digest)
            except (KeyError, ValueError) as exc:
                problems.append(f"{image}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _immutable(self) -> SageMakerSettings:
        if self.image_tag in images.MUTABLE_TAGS and not self.allow_mutable_tag:
            raise ValueError(f"image tag {self.image_tag!r} moves with every push, so a step (or a cached step) could "
                             "run another image than the one its lineage names; use the git-commit tag "
                             "infra/push_images.sh pushes, or pass --sagemaker-allow-mutable-tag to accept it")
        return self

    # -- derived values ---------------------------------------------------------------------------
    @property
    def account(self) -> str:
        match = _ROLE_ARN.match(self.role or "")
        return match.group(1) if match else PLACEHOLDER_ACCOUNT

    def registry(self) -> str:
        return self.image_registry or images.ecr_registry(self.account, self.region or DEFAULT_DRY_RUN_REGION)

    def tag(self) -> str:
        """The tag images run by: the explicit one, else the checkout's git commit."""
        return self.image_tag or images.commit_tag() or NO_COMMIT_TAG

    def image(self, stage: str) -> str:
        """The image a stage (step name, or 'serve') runs: an explicit override, else by digest when one is
        known for its image, else by the (immutable) tag."""
        if stage in self.images:
            return self.images[stage]
        digest = self.image_digests.get(images.image_for(stage))
        if digest:
            return images.image_digest_uri(stage, self.registry(), digest)
        return images.image_uri(stage, self.registry(), self.tag())

    def endpoint_role_arn(self) -> str:
        """The endpoint model's role: explicit, else infra/iam.yaml's endpoint role in the execution role's account."""
        if self.endpoint_role:
            return self.endpoint_role
        return re.sub(r":role/.*$", f":role/{DEFAULT_ENDPOINT_ROLE_NAME}", self.role or PLACEHOLDER_ROLE)

    def sagemaker_pipeline_name(self, pipeline: str) -> str:
        return self.pipeline_name or "speechops-" + re.sub(r"[^a-zA-Z0-9]+", "-", pipeline).strip("-")

    def placeholders(self) -> list[str]:
        """Settings a real run needs that are still missing, with how to set each."""
        missing = []
        if not self.role:
            missing.append("role: --sagemaker-role arn:aws:iam::ACCOUNT:role/NAME (or sagemaker.role in the profile)")
        if not self.bucket:
            missing.append("bucket: --sagemaker-bucket NAME (or sagemaker.bucket)")
        if not self.region:
            missing.append("region: --sagemaker-region REGION, AWS_REGION or ~/.aws/config")
        if self.tag() == NO_COMMIT_TAG:
            missing.append("image tag: no git commit here; --sagemaker-image-tag TAG (the tag you pushed)")
        return missing


# CLI option (dest) -> settings field
CLI_FIELDS = {
    "sagemaker_role": "role",
    "sagemaker_bucket": "bucket",
    "sagemaker_region": "region",
    "sagemaker_image_registry": "image_registry",
    "sagemaker_image_tag": "image_tag",
    "sagemaker_allow_mutable_tag": "allow_mutable_tag",
    "sagemaker_endpoint_role": "endpoint_role",
    "sagemaker_pipeline_name": "pipeline_name",
    "sagemaker_mlflow_uri": "mlflow_tracking_uri",
    "schedule_role": "schedule_role",
}


def resolve_settings(section: dict[str, Any] | None, cli: dict[str, Any], default_region: str | None = None,
                     instance_types: list[str] | None = None) -> SageMakerSettings:
    """Profile section + CLI options (which win) -> validated settings; one error lists every problem."""
    values: dict[str, Any] = dict(section or {})
    problems: list[str] = []
    for dest, name in CLI_FIELDS.items():
        if cli.get(dest) is not None:
            values[name] = cli[dest]
    if instance_types:
        merged = dict(values.get("instance_types") or {})
        for item in instance_types:
            stage, sep, kind = item.partition("=")
            if not sep or not stage or not kind:
                problems.append(f"--sagemaker-instance-type expects STAGE=TYPE (e.g. train=ml.g5.2xlarge), "
                                f"got {item!r}")
            else:
                merged[stage.strip()] = kind.strip()
        values["instance_types"] = merged
    if not values.get("region") and default_region:
        values["region"] = default_region
    try:
        settings = SageMakerSettings.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "image_tag"
            message = err["msg"].removeprefix("Value error, ")
            got = err.get("input") if err["loc"] else values.get("image_tag")
            problems.append(f"sagemaker.{loc}: {message} (got {got!r})")
        settings = None
    if problems or settings is None:
        raise PipelineError("SageMaker settings are not valid:", problems)
    return settings
