"""Compile a speechops ``Pipeline`` into a SageMaker Pipelines definition with the SageMaker SDK v3.

The input is the very object the local backend runs (``pipelines.registry.get_pipeline``); nothing
here knows about a task. One rule per concept:

* **processing stage** -> ``ProcessingStep`` running the stage image with the stage's entrypoint,
  ``python -m steps.<step> --task T --params-json DOC`` (the local backend's ``params_args``); every
  input is a ``ProcessingInput`` at ``contract.container_input_path``, every output (the report
  included) a ``ProcessingOutput`` at ``contract.container_output_path``.
* **training stage** -> ``TrainingStep`` on the stage's instance type, managed spot training, a
  ``CheckpointConfig`` at ``/opt/ml/checkpoints``, hyper-parameters = the stage's parameters (the
  JSON document as ``params_json``) and the same entrypoint. A **tune** stage -> ``TuningStep``
  launching the train image on the stage's declared space (``TuningConfig.from_tune``: the same
  ``stages.tune`` the local Optuna search reads); the train stage after it gets the best job's
  ``TunedHyperParameters``.
* Training outputs reach later steps the way SageMaker stores them: ``model`` as the job's
  ``model.tar.gz``, the other outputs inside ``output.tar.gz``. A step that reads one unpacks it
  before its entrypoint runs (``unpacking_command``) and is pointed at the right folder through
  the contract's ``SPEECHOPS_INPUT_<NAME>`` variables.
* The **evaluate** report is a ``PropertyFile``. One ``ConditionStep`` compares every metric of the
  pipeline's gate that has an absolute limit, in the metric's direction, with a ``Max<Metric>``
  (lower is better, ``<=``) or ``Min<Metric>`` (higher is better, ``>=``) parameter; the register and
  deploy stages (and what follows them) run only if all hold, else a ``FailStep`` names the
  thresholds. (Condition steps do not nest in SageMaker Pipelines, hence one step with every
  condition.)
* **register** -> a ``RegisterModel`` step into a Model Registry group (the serving image plus the
  trained model, the evaluation report as model metrics), then the register stage itself, which
  logs to MLflow, when an MLflow tracking server is configured. **deploy** runs with
  ``target=sagemaker``: the registered package goes to an autoscaled endpoint.
* Caching and retries: ``CacheConfig`` on every step of a cacheable stage (register and deploy,
  which change the world, never), ``RetryPolicies`` on every job and registration step. Step
  outputs live under ``s3://<bucket>/<prefix>/<pipeline>/<execution-id>/<stage>/<output>/``;
  SageMaker's cache key ignores output locations, so a cached step hands later steps the outputs
  of the run that made them. Checkpoints go to
  ``s3://<bucket>/<prefix>/checkpoints/<pipeline>/<stage>/<key>/``. ``SPEECHOPS_CODE_VERSION`` (the
  local cache's per-stage code hash) is in each step's environment, which is part of the key:
  changing a stage's code invalidates it, as locally.
* Values that change per run are typed pipeline parameters: instance types, the gate thresholds,
  the approval status, the stage parameters listed in ``sagemaker.parameters`` (default
  ``train.epochs``, ``train.lr``), the S3 URIs of external inputs and ``DataSnapshot``. The rest is
  compiled in.
* Source stages (no upstream stage, e.g. prepare) read data SageMaker's cache cannot see, so their
  environment carries the ``DataSnapshot`` parameter: the same value reuses the cached result, a new
  one (a schedule passes its scheduled time) re-reads the data and re-runs what depends on it.

Compiling makes no AWS call: the session gets an explicit bucket, and ``sdk_environment``
supplies a region (the SDK builds a client when it is imported) and, for dry runs, dummy
credentials, no IAM role validation and no SDK telemetry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shlex
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines import images
from pipelines.backends.cache import code_version
from pipelines.backends.sagemaker_settings import (
    DEFAULT_DRY_RUN_REGION,
    PLACEHOLDER_BUCKET,
    PLACEHOLDER_ROLE,
    SageMakerSettings,
)
from pipelines.definition import NEVER_CACHED_STEPS, Pipeline, PipelineError, Stage
from steps.common import contract
from steps.common.gate import GateMetric
from steps.common.stage import (
    MAX_CONTAINER_ARGUMENT,
    PARAMS_JSON,
    PARAMS_JSON_OPTION,
    Params,
    params_args,
    params_document,
)
from steps.common.tune_space import REPLICATE
from steps.tasks import get_task

log = logging.getLogger(__name__)

DRY_RUN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "DRYRUNNOTAKEY", "AWS_SECRET_ACCESS_KEY": "dry-run-not-a-secret"}
_ENV_KEYS = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_PROFILE", "SAGEMAKER_VALIDATE_ROLE")
GATE_SOURCE_STEP = "evaluate"
GATED_STEPS = ("register", "deploy")
LOCAL_TRACKING_PREFIXES = ("sqlite:", "file:", "./", "/", "mlruns")
DATA_SNAPSHOT = "DataSnapshot"
DATA_SNAPSHOT_ENV = "SPEECHOPS_DATA_SNAPSHOT"
MODEL_ARCHIVE = "model.tar.gz"
CHECKPOINT_DIR = contract.container_output_path("training", "checkpoints")
UNPACKED_ROOT = "/opt/ml/processing/unpacked"  # on the job's volume, beside input/ and output/
OUTPUT_ARCHIVE = "output.tar.gz"
MAX_HYPERPARAMETER = 2500  # characters of one hyper-parameter value (CreateTrainingJob)


@contextmanager
def sdk_environment(region: str, *, dry_run: bool) -> Iterator[None]:
    """A region for the SDK (it creates a client at import time); for dry runs, dummy credentials
    and no IAM role validation, so nothing can reach (or be charged to) an AWS account."""
    saved = {key: os.environ.get(key) for key in _ENV_KEYS}
    os.environ["AWS_DEFAULT_REGION"] = region
    # Building a job's request, the SDK simulates the job role for VPC network-interface actions on '*'
    # (RoleValidationError without them). These jobs run in no VPC, so infra/iam.yaml grants none of
    # them; the roles are checked by tests/unit/test_sagemaker_infra.py instead. Upserting the pipeline
    # (outside this block) still validates its role.
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    telemetry, sender = None, None
    if dry_run:
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.update(DRY_RUN_CREDENTIALS)
        # The SDK's telemetry calls STS and S3 from a background thread. Opting out through the SDK
        # config would make each of its ~90 config lookups re-check a large JSON schema (30 s), so a
        # dry run silences the sender itself.
        from sagemaker.core.telemetry import telemetry_logging as telemetry

        sender = telemetry._send_telemetry_request
        telemetry._send_telemetry_request = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if telemetry is not None:
            telemetry._send_telemetry_request = sender
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def camel(*parts: str) -> str:
    """``camel("train", "lr") == "TrainLr"``: pipeline parameter names."""
    return "".join(word.capitalize() for part in parts for word in part.replace("-", "_").split("_") if word)


def step_name(*parts: str) -> str:
    """SageMaker step names allow letters, digits, '-' and '_'."""
    return "-".join(p.replace("_", "-") for p in parts)


class TuningConfig(BaseModel):
    """What a ``tune`` stage compiles to: the tuning job's settings, derived from the stage's declared
    space (``steps/common/tune_space.py``) by ``from_tune``; no tuning setting lives in this compiler.

    ``ranges``: ``{"lr": {"min": 1e-5, "max": 1e-3, "scaling": "Logarithmic"}, "batch_size":
    {"values": [8, 16]}}``. The objective is the task's validation metric as the Trainer logs it at each
    evaluation (``eval_<metric>``), read with ``regex()``; its direction is the task's gate direction.
    ``static``: every training job's parameters (the train stage's values plus the trial budget).
    """

    model_config = ConfigDict(extra="forbid")

    objective_metric: str = "eval_loss"
    objective_type: Literal["Minimize", "Maximize"] = "Minimize"
    metric_regex: str | None = None
    ranges: dict[str, dict[str, Any]] = Field(default_factory=dict)
    static: dict[str, Any] = Field(default_factory=dict)
    max_jobs: int = Field(8, ge=1)
    max_parallel_jobs: int = Field(2, ge=1)
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    early_stopping: Literal["Off", "Auto"] = "Off"

    def regex(self) -> str:
        return self.metric_regex or rf"['\"]?{self.objective_metric}['\"]?\s*[:=]\s*['\"]?([-+0-9.eE]+)"

    @classmethod
    def from_tune(cls, params: Any, task: str, stage: str = "tune") -> TuningConfig:
        """The tuning job for a validated ``TuneParams``: TPE -> Bayesian, random -> Random, grid -> Grid
        (every dimension categorical), median pruning -> automatic early stopping."""
        from steps.common.tune_space import objective_name, objective_of

        weights, direction = objective_of(task)
        if len(weights) != 1 or next(iter(weights.values())) != 1.0:
            raise PipelineError(f"stage {stage} cannot be compiled to a TuningStep:", [
                f"task {task} tunes on the combined objective {objective_name(weights)}; a SageMaker tuning "
                "job reads one metric from the logs (tune on the local backend)"])
        ranges: dict[str, dict[str, Any]] = {}
        for name, r in params.space.items():
            if params.sampler == "grid" or r.type == "categorical":
                ranges[name] = {"values": list(r.grid() or [])}
            else:
                ranges[name] = {"min": r.low, "max": r.high, "scaling": "Logarithmic" if r.log else "Linear"}
        static = {k: v for k, v in {**params.train, **params.budget}.items() if k not in params.space}
        return cls(objective_metric=f"eval_{next(iter(weights))}",
                   objective_type="Minimize" if direction == "lower" else "Maximize",
                   ranges=ranges, static=static, max_jobs=params.trials_to_run(),
                   max_parallel_jobs=params.parallelism,
                   strategy={"tpe": "Bayesian", "random": "Random", "grid": "Grid"}[params.sampler],
                   early_stopping="Auto" if params.pruner == "median" and params.sampler != "grid" else "Off")


@dataclass
class PlannedStep:
    """One step of the compiled pipeline, for the readable plan."""

    name: str
    type: str
    stage: str | None = None
    image: str | None = None
    instance_parameter: str | None = None
    command: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    cache: str = "-"
    retry: str = "-"
    branch: str = ""
    note: str = ""


@dataclass
class ParameterInfo:
    name: str
    type: str
    default: Any
    source: str


@dataclass
class CompiledPipeline:
    """The SDK pipeline plus what the plan and the submit path need to know about it."""

    name: str
    region: str
    sdk_pipeline: Any
    settings: SageMakerSettings
    steps: list[PlannedStep]
    parameters: list[ParameterInfo]
    parameter_sources: dict[str, str]  # config key (stages.train.epochs, gate.wer.limit) -> parameter
    gates: list[tuple[str, str, float]]  # (metric, parameter, default)
    notes: list[str]
    model_package_group: str | None = None

    def definition(self) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return json.loads(self.sdk_pipeline.definition())

    def parameter(self, name: str) -> ParameterInfo:
        for info in self.parameters:
            if info.name == name:
                return info
        raise KeyError(name)


@dataclass
class _Output:
    """Where a stage output lives once its step ran: a URI, and how to open it."""

    uri: Any  # a pipeline variable
    archive: str | None = None  # a tarball to unpack before the stage reads it
    subdir: str | None = None  # the folder of this output inside the unpacked archive
    job_name: Any = None  # the producing job's name (identifies the data for checkpoint keys)


def compile_pipeline(pipeline: Pipeline, settings: SageMakerSettings, *, dry_run: bool,
                     boto_session: Any = None) -> CompiledPipeline:
    """Build the SDK pipeline for ``pipeline``. Placeholders stand in for missing settings on dry runs."""
    region = settings.region or DEFAULT_DRY_RUN_REGION
    with sdk_environment(region, dry_run=dry_run), warnings.catch_warnings(), _quiet_sdk():
        warnings.simplefilter("ignore")
        import boto3
        from sagemaker.core.workflow.pipeline_context import PipelineSession

        if boto_session is None:
            boto_session = _dry_run_session(region) if dry_run else boto3.Session(region_name=region)
        session = PipelineSession(boto_session=boto_session, default_bucket=settings.bucket or PLACEHOLDER_BUCKET)
        return _Compiler(pipeline, settings, session, region).compile()


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK logs every popped job name and defaulted setting at INFO/WARNING while compiling."""
    loggers = [logging.getLogger(n) for n in ("sagemaker", "sagemaker.core.workflow.utilities", "sagemaker.config")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@functools.lru_cache(maxsize=4)
def _dry_run_session(region: str) -> Any:
    """A boto3 session with dummy credentials (loading botocore's models once per process)."""
    import boto3

    return boto3.Session(region_name=region, aws_access_key_id=DRY_RUN_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=DRY_RUN_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


class _Compiler:
    def __init__(self, pipeline: Pipeline, settings: SageMakerSettings, session: Any, region: str):
        self.pipeline = pipeline
        self.settings = settings
        self.session = session
        self.region = region
        self.name = settings.sagemaker_pipeline_name(pipeline.name)
        self.bucket = settings.bucket or PLACEHOLDER_BUCKET
        self.role = settings.role or PLACEHOLDER_ROLE
        self.params = pipeline.validated_params()
        self.parameters: dict[str, Any] = {}
        self.infos: dict[str, ParameterInfo] = {}
        self.sources: dict[str, str] = {}
        self.field_parameters: dict[str, dict[str, Any]] = {}  # stage -> field -> parameter
        self.outputs: dict[str, dict[str, _Output]] = {}
        self.planned: list[PlannedStep] = []
        self.notes: list[str] = []
        self.skipped: set[str] = set()
        self.tuned: dict[str, dict[str, Any]] = {}  # tune stage -> parameter -> the best job's value
        self.model_package_step: Any = None
        self.model_package_group: str | None = None

    # -- parameters -------------------------------------------------------------------------------
    def _parameter(self, name: str, value: Any, source: str, shown: str | None = None) -> Any:
        from sagemaker.core.workflow.parameters import (
            ParameterBoolean,
            ParameterFloat,
            ParameterInteger,
            ParameterString,
        )

        if name in self.parameters:
            if self.sources.get(source) != name:
                raise PipelineError(f"two settings would make the pipeline parameter {name}:",
                                    [source, next(k for k, v in self.sources.items() if v == name),
                                     "drop one of them from sagemaker.parameters"])
            return self.parameters[name]
        self.sources[source] = name
        if isinstance(value, bool):
            kind, parameter = "Boolean", ParameterBoolean(name, default_value=value)
        elif isinstance(value, int):
            kind, parameter = "Integer", ParameterInteger(name, default_value=value)
        elif isinstance(value, float):
            kind, parameter = "Float", ParameterFloat(name, default_value=value)
        elif isinstance(value, str):
            kind, parameter = "String", ParameterString(name, default_value=value)
        else:
            raise PipelineError(f"cannot make {source} a pipeline parameter",
                                [f"only scalar values can be; its value is {value!r}"])
        self.parameters[name] = parameter
        self.infos[name] = ParameterInfo(name, kind, value, shown or source)
        return parameter

    def _stage_parameters(self) -> None:
        """``sagemaker.parameters`` (stage.param) -> typed pipeline parameters of those stages."""
        explicit = "parameters" in self.settings.model_fields_set
        problems = []
        for key in self.settings.parameters:
            stage_name, _, field_name = key.partition(".")
            if stage_name not in self.params or field_name not in type(self.params[stage_name]).model_fields:
                if explicit:
                    problems.append(f"sagemaker.parameters: {key!r} is not a parameter of a stage of "
                                    f"{self.pipeline.name}")
                continue
            value = getattr(self.params[stage_name], field_name)
            if value is None:
                problems.append(f"sagemaker.parameters: {key!r} has no value to use as the default; "
                                "set it in the profile")
                continue
            name = camel(stage_name, field_name)
            self.field_parameters.setdefault(stage_name, {})[field_name] = self._parameter(name, value, f"stages.{key}")
        if problems:
            raise PipelineError("SageMaker settings are not valid:", problems)

    def _instance_parameter(self, stage: Stage) -> Any:
        default = self.settings.instance_types.get(stage.name, stage.resources.instance_type)
        return self._parameter(camel(stage.name, "instance_type"), default, f"sagemaker.instance_types.{stage.name}")

    # -- helpers ----------------------------------------------------------------------------------
    def _output_uri(self, stage: Stage, *parts: str) -> Any:
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        return Join(on="/", values=["s3:/", self.bucket, self.settings.prefix, self.name,
                                    ExecutionVariables.PIPELINE_EXECUTION_ID, stage.name, *parts])

    def _cache(self, stage: Stage) -> tuple[Any, str]:
        from sagemaker.mlops.workflow.steps import CacheConfig

        if not (self.settings.cache and stage.cache and stage.step not in NEVER_CACHED_STEPS):
            return None, "off"
        return CacheConfig(enable_caching=True, expire_after=self.settings.cache_expire_after), \
            self.settings.cache_expire_after

    def _job_retries(self) -> tuple[list[Any], str]:
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
            StepExceptionTypeEnum,
            StepRetryPolicy,
        )

        attempts = self.settings.retry_attempts
        return [
            StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
                            interval_seconds=10, backoff_rate=2.0, max_attempts=attempts),
            SageMakerJobStepRetryPolicy(exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                                                         SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                                                         SageMakerJobExceptionTypeEnum.INTERNAL_ERROR],
                                        interval_seconds=60, backoff_rate=2.0, max_attempts=attempts),
        ], f"{attempts}x (capacity, limits, faults)"

    def _step_retries(self) -> tuple[list[Any], str]:
        from sagemaker.mlops.workflow.retry import StepExceptionTypeEnum, StepRetryPolicy

        attempts = self.settings.retry_attempts
        return [StepRetryPolicy(exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
                                interval_seconds=10, backoff_rate=2.0, max_attempts=attempts)], \
            f"{attempts}x (faults, throttling)"

    def _environment(self, stage: Stage) -> dict[str, Any]:
        env: dict[str, Any] = {"SPEECHOPS_PIPELINE": self.pipeline.name,
                               "SPEECHOPS_CODE_VERSION": code_version(stage.step, self.pipeline.task)}
        if not stage.upstream():
            # A source stage reads data from outside the pipeline, which SageMaker's cache cannot see;
            # this parameter is part of its cache key (schedules set it to the scheduled time).
            env[DATA_SNAPSHOT_ENV] = self._parameter(DATA_SNAPSHOT, "manual", "data snapshot",
                                                     shown="cache key of source stages; schedules: the run time")
        if stage.step == "register":
            # lineage of the registered version; register re-runs each execution anyway (a new version)
            from sagemaker.core.workflow.execution_variables import ExecutionVariables

            from pipelines.backends.local import git_commit

            env["SPEECHOPS_RUN_ID"] = ExecutionVariables.PIPELINE_EXECUTION_ID
            env["SPEECHOPS_GIT_COMMIT"] = git_commit()
            if self.settings.image_digests:  # lineage: the images this run's steps ran, by digest
                env["SPEECHOPS_IMAGE_DIGESTS"] = json.dumps(self.settings.image_digests, sort_keys=True)
        return env

    def _split_values(self, stage: Stage, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(values known now, values SageMaker fills in at run time: pipeline parameters and step properties)."""
        from sagemaker.core.helper.pipeline_variable import PipelineVariable

        fields = self.field_parameters.get(stage.name, {})
        static, variables = {}, {}
        for key, value in values.items():
            if key in fields:
                parameter = fields[key]
                variables[key] = parameter if self.infos[parameter.name].type == "String" else parameter.to_string()
            elif isinstance(value, PipelineVariable):
                variables[key] = value
            else:
                static[key] = value
        return static, variables

    def _values(self, stage: Stage, values: dict[str, Any]) -> list[Any]:
        """The stage's arguments: the validated parameters as one JSON document (``params_args``, cut into
        pieces of at most 256 characters, SageMaker's limit per container argument), then ``--key value``
        for each value SageMaker fills in at run time (the stage lets these override the document)."""
        static, variables = self._split_values(stage, values)
        args: list[Any] = params_args(static, max_length=MAX_CONTAINER_ARGUMENT)
        for key, value in variables.items():
            args += [f"--{key.replace('_', '-')}", value]
        return args

    def _hyperparameters(self, stage: Stage, values: dict[str, Any]) -> dict[str, Any]:
        """Stage parameters as SageMaker hyper-parameters: the JSON document as ``params_json``, plus one
        hyper-parameter per pipeline parameter (they override the document in the stage)."""
        static, variables = self._split_values(stage, values)
        document = params_document(static)
        if len(document) > MAX_HYPERPARAMETER:
            raise PipelineError(f"stage {stage.name}: its parameters do not fit in a SageMaker hyper-parameter",
                                [f"the JSON document has {len(document)} characters; the limit is "
                                 f"{MAX_HYPERPARAMETER}"])
        return {PARAMS_JSON: document, **variables}

    def _input_sources(self, stage: Stage) -> dict[str, tuple[str, _Output]]:
        """Wired inputs (skipping optional ones whose producer is not compiled) and external S3 inputs."""
        spec = stage.spec
        sources: dict[str, tuple[str, _Output]] = {}
        for input_name, ref in stage.inputs.items():
            src, _, out = ref.partition(".")
            if src in self.skipped:
                if input_name in spec.optional_inputs:
                    continue
                raise PipelineError(f"stage {stage.name} needs {ref}, but stage {src} is not compiled",
                                    [n for n in self.notes if n.startswith(src)])
            if src in self.tuned and input_name in spec.optional_inputs:
                continue  # a tuning job has no files of its own (train gets the best values as hyper-parameters)
            sources[input_name] = (ref, self.outputs[src][out])
        for input_name, uri in self.settings.inputs.get(stage.name, {}).items():
            key = f"sagemaker.inputs.{stage.name}.{input_name}"
            if input_name not in spec.inputs or input_name in stage.inputs:
                raise PipelineError("SageMaker settings are not valid:",
                                    [f"{key}: not an input of stage {stage.name} that no stage produces "
                                     f"(its inputs: {', '.join(spec.inputs) or '-'})"])
            parameter = self._parameter(camel(stage.name, input_name, "uri"), uri, key)
            sources[input_name] = (f"parameter {parameter.name}", _Output(parameter))
        return sources

    def _check_external_inputs(self, stage: Stage, params: Params) -> None:
        from pipelines.workspace import REPO_ROOT

        outside = [str(p) for p in stage.spec.external_inputs(params)
                   if not os.path.abspath(p).startswith(str(REPO_ROOT) + os.sep)]
        if outside:
            raise PipelineError(
                f"stage {stage.name} reads files from this machine, which a SageMaker job cannot see:",
                [*outside, f"upload them to S3 and pass them as an input of the stage, e.g. for prepare: "
                 f"--set prepare.source=input --set sagemaker.inputs.{stage.name}.raw=s3://BUCKET/corpus/"])

    # -- steps ------------------------------------------------------------------------------------
    def _processing_step(self, stage: Stage, params: Params, extra: dict[str, Any] | None = None,
                         property_file: Any = None) -> Any:
        from sagemaker.core.processing import Processor
        from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
        from sagemaker.mlops.workflow.steps import ProcessingStep

        spec = stage.spec
        values = {**params.model_dump(mode="json"), **(extra or {})}
        env = self._environment(stage)
        inputs, unpack, planned_inputs = [], [], {}
        for input_name, (ref, source) in self._input_sources(stage).items():
            local = str(contract.container_input_path("processing", input_name))
            inputs.append(ProcessingInput(input_name=input_name, s3_input=ProcessingS3Input(
                s3_uri=source.uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File",
                s3_data_distribution_type="FullyReplicated")))
            planned_inputs[input_name] = ref
            if source.archive:
                target = f"{UNPACKED_ROOT}/{input_name}"
                unpack.append((f"{local}/{source.archive}", target))
                env[contract.input_env("processing", input_name)] = \
                    f"{target}/{source.subdir}" if source.subdir else target
        outputs = [ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=self._output_uri(stage, name, ""), s3_upload_mode="EndOfJob",
            local_path=str(contract.container_output_path("processing", name)))) for name in spec.all_outputs]
        command = images.job_command(stage.step)
        entrypoint = unpacking_command(unpack, command) if unpack else command
        arguments = ["--task", self.pipeline.task, *self._values(stage, values)]
        instance = self._instance_parameter(stage)
        image = self.settings.image(stage.step)
        processor = Processor(role=self.role, image_uri=image, instance_count=1, instance_type=instance,
                              entrypoint=entrypoint, volume_size_in_gb=self.settings.volume_size_gb,
                              max_runtime_in_seconds=stage.resources.max_runtime_s,
                              base_job_name=f"{self.name}-{stage.name}"[:50], sagemaker_session=self.session, env=env)
        cache, cache_text = self._cache(stage)
        retries, retry_text = self._job_retries()
        step = ProcessingStep(name=step_name(stage.name), display_name=stage.name, description=f"stage {stage.name}",
                              step_args=processor.run(inputs=inputs, outputs=outputs, arguments=arguments),
                              cache_config=cache, retry_policies=retries,
                              property_files=[property_file] if property_file is not None else None)
        self.outputs[stage.name] = {name: _Output(step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri,
                                                  job_name=step.properties.ProcessingJobName)
                                    for name in spec.all_outputs}
        self.planned.append(PlannedStep(step.name, "Processing", stage.name, image, instance.name,
                                        [*command, *_plan_args(arguments)], planned_inputs, cache_text, retry_text,
                                        note="unpacks " + ", ".join(os.path.basename(t) for _, t in unpack)
                                        if unpack else ""))
        return step

    def _channels(self, stage: Stage) -> tuple[list[Any], dict[str, str], list[Any]]:
        from sagemaker.core.training.configs import InputData

        channels, planned, job_names = [], {}, []
        for input_name, (ref, source) in self._input_sources(stage).items():
            if source.archive:
                raise PipelineError(f"stage {stage.name} (training) cannot read {ref}",
                                    ["training channels are not unpacked; let a processing stage produce the input"])
            channels.append(InputData(channel_name=input_name, data_source=source.uri))
            planned[input_name] = ref
            job_names.append(source.job_name if source.job_name is not None else source.uri)
        return channels, planned, job_names

    def _trainer(self, stage: Stage, hyper: dict[str, Any], instance: Any, checkpoint_uri: Any) -> Any:
        from sagemaker.core.shapes import StoppingCondition
        from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig
        from sagemaker.train.model_trainer import ModelTrainer

        runtime = stage.resources.max_runtime_s
        spot = self.settings.spot
        return ModelTrainer(
            training_image=self.settings.image(stage.step), role=self.role, sagemaker_session=self.session,
            base_job_name=f"{self.name}-{stage.name}"[:50],
            compute=Compute(instance_type=instance, instance_count=1, volume_size_in_gb=self.settings.volume_size_gb,
                            enable_managed_spot_training=spot),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=runtime,
                max_wait_time_in_seconds=int(runtime * self.settings.spot_max_wait_factor) if spot else None),
            checkpoint_config=CheckpointConfig(s3_uri=checkpoint_uri, local_path=str(CHECKPOINT_DIR))
            if checkpoint_uri is not None else None,
            output_data_config=OutputDataConfig(s3_output_path=self._output_uri(stage)),
            hyperparameters=hyper, environment=self._environment(stage))

    def _checkpoint_uri(self, stage: Stage, values: dict[str, Any], job_names: list[Any]) -> Any:
        """Checkpoints are shared by exactly the jobs SageMaker's cache would treat as the same job:
        same code, image and compiled parameters (a hash), same input data (the names of the jobs that
        produced it) and same parameter values. A retried, spot-interrupted or re-run job resumes."""
        from sagemaker.core.workflow.functions import Join

        fields = self.field_parameters.get(stage.name, {})
        fixed = {k: v for k, v in values.items() if k not in fields}
        key = {"step": stage.step, "task": self.pipeline.task, "params": fixed,
               "image": self.settings.image(stage.step), "code": code_version(stage.step, self.pipeline.task)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Join(on="/", values=["s3:/", self.bucket, self.settings.prefix, "checkpoints", self.name, stage.name,
                                    digest, *job_names, *[fields[k] for k in sorted(fields)]])

    def _training_step(self, stage: Stage, params: Params) -> Any:
        from sagemaker.core.workflow.functions import Join

        values = params.model_dump(mode="json")
        channels, planned_inputs, job_names = self._channels(stage)
        instance = self._instance_parameter(stage)
        hyper = self._hyperparameters(stage, values)
        for ref in stage.inputs.values():  # after a tune stage: its best values override the profile's
            hyper.update(self.tuned.get(ref.partition(".")[0], {}))
        trainer = self._trainer(stage, hyper, instance, self._checkpoint_uri(stage, values, job_names))
        command = [*images.job_command(stage.step), "--task", self.pipeline.task]
        cache, cache_text = self._cache(stage)
        retries, retry_text = self._job_retries()
        step = _StageTrainingStep(name=step_name(stage.name), display_name=stage.name,
                                  description=f"stage {stage.name}",
                                  step_args=trainer.train(input_data_config=channels), command=command,
                                  cache_config=cache, retry_policies=retries)
        props = step.properties
        packed = Join(on="/", values=[props.OutputDataConfig.S3OutputPath, props.TrainingJobName, "output",
                                      OUTPUT_ARCHIVE])
        self.outputs[stage.name] = {name: _Output(props.ModelArtifacts.S3ModelArtifacts, MODEL_ARCHIVE, None,
                                                  props.TrainingJobName) if name == "model" else
                                    _Output(packed, OUTPUT_ARCHIVE, name, props.TrainingJobName)
                                    for name in stage.spec.all_outputs}
        spot = "managed spot, " if self.settings.spot else ""
        self.planned.append(PlannedStep(step.name, "Training", stage.name, self.settings.image(stage.step),
                                        instance.name, [*command, "(+ hyper-parameters: " + ", ".join(
                                            f"{k}={_plan_value(v)}" for k, v in trainer.hyperparameters.items()) + ")"],
                                        planned_inputs, cache_text, retry_text,
                                        note=f"{spot}checkpoints in {CHECKPOINT_DIR}"))
        return step

    def _tuning_step(self, stage: Stage, params: Params) -> Any:
        from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
        from sagemaker.core.workflow.functions import Join
        from sagemaker.mlops.workflow.steps import TuningStep
        from sagemaker.train.tuner import HyperparameterTuner

        tuning = TuningConfig.from_tune(params, self.pipeline.task, stage.name)
        static = tuning.static
        problems = []
        if not tuning.ranges:
            problems.append(f"stages.{stage.name}.space: give at least one hyper-parameter range")
        ranges: dict[str, Any] = {}
        for name, spec in tuning.ranges.items():
            if "values" in spec:
                ranges[name] = CategoricalParameter([str(v) for v in spec["values"]])
            elif "min" in spec and "max" in spec:
                kind = IntegerParameter if all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                                               for k in ("min", "max")) else ContinuousParameter
                ranges[name] = kind(spec["min"], spec["max"], scaling_type=spec.get("scaling", "Auto"))
        if problems:
            raise PipelineError(f"stage {stage.name} cannot be compiled to a TuningStep:", problems)
        channels, planned_inputs, _ = self._channels(stage)
        instance = self._instance_parameter(stage)
        # Tuning jobs cannot override the entrypoint: the train image's default command runs the
        # stage, which reads the task with the other hyper-parameters from hyperparameters.json.
        # No checkpoint location: it would be shared by every training job of the tuning job.
        # The searched ones are left out of the document: each job gets them as single hyper-parameters.
        hyper = {"task": self.pipeline.task, **self._hyperparameters(stage, static)}
        trainer = self._trainer(stage, hyper, instance, None)
        tuner = HyperparameterTuner(
            model_trainer=trainer, objective_metric_name=tuning.objective_metric, objective_type=tuning.objective_type,
            hyperparameter_ranges=ranges,
            metric_definitions=[{"Name": tuning.objective_metric, "Regex": tuning.regex()}],
            strategy=tuning.strategy, max_jobs=tuning.max_jobs, max_parallel_jobs=tuning.max_parallel_jobs,
            early_stopping_type=tuning.early_stopping, base_tuning_job_name=stage.name[:20])
        cache, cache_text = self._cache(stage)
        retries, retry_text = self._job_retries()
        step = TuningStep(name=step_name(stage.name), display_name=stage.name, description=f"stage {stage.name}",
                          step_args=tuner.tune(inputs=channels), cache_config=cache, retry_policies=retries)
        props = step.properties
        # the train stage reads the best values from the best job, not from files (see _training_step)
        # a seed dimension (replicates) is not handed on: train keeps its own seed. SageMaker's tuning job
        # ranks single jobs, so with replicates its best is the best (configuration, seed), not the best mean
        self.tuned[stage.name] = {name: props.BestTrainingJob.TunedHyperParameters[name] for name in ranges
                                  if name != REPLICATE}
        best = props.BestTrainingJob.TrainingJobName
        base = props.TrainingJobDefinition.OutputDataConfig.S3OutputPath
        archives = {name: MODEL_ARCHIVE if name == "model" else OUTPUT_ARCHIVE for name in stage.spec.all_outputs}
        self.outputs[stage.name] = {
            name: _Output(Join(on="/", values=[base, best, "output", archive]), archive,
                          None if name == "model" else name, best)
            for name, archive in archives.items()}
        self.planned.append(PlannedStep(
            step.name, "Tuning", stage.name, self.settings.image(stage.step), instance.name,
            ["(train image default command)", f"{tuning.objective_type.lower()} {tuning.objective_metric}",
             f"{tuning.max_jobs} jobs, {tuning.max_parallel_jobs} in parallel"],
            planned_inputs, cache_text, retry_text, note="ranges: " + ", ".join(tuning.ranges)
            + ("; seed replicates: the best single job, not the best mean (the local tune stage ranks means)"
               if REPLICATE in tuning.ranges else "")))
        return step

    def _model_package_step(self, stage: Stage) -> Any:
        from sagemaker.core.model_registry import create_model_package_from_containers
        from sagemaker.core.workflow.functions import Join
        from sagemaker.mlops.workflow.model_step import ModelStep

        if "model" not in stage.inputs:
            raise PipelineError(f"stage {stage.name} cannot register a model", ["wire its 'model' input"])
        model = self._input_sources(stage)["model"][1]
        approval = self._parameter("ModelApprovalStatus", self.settings.approval_status, "sagemaker.approval_status")
        metrics = None
        if "evaluation" in stage.inputs:
            report = Join(on="", values=[self._input_sources(stage)["evaluation"][1].uri, contract.REPORT_FILE])
            metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": report}}}
        group = self.model_package_group = self.settings.model_package_group or self.name
        handler = get_task(self.pipeline.task).handler_class()  # the task's I/O: its content types
        # ModelBuilder.register() would upload code and look the bucket up (AWS calls at compile time);
        # the SDK's own request builder under the PipelineSession gives the same RegisterModel step.
        self.session.init_model_step_arguments(SimpleNamespace(sagemaker_session=self.session))
        create_model_package_from_containers(
            self.session, containers=[{"Image": self.settings.image("serve"), "ModelDataUrl": model.uri,
                                       "Environment": {"SPEECHOPS_PIPELINE": self.pipeline.name}}],
            content_types=list(handler.request_types), response_types=list(handler.response_types),
            inference_instances=self.settings.serve_instance_types, transform_instances=["ml.m5.xlarge"],
            model_package_group_name=group, approval_status=approval, model_metrics=metrics,
            customer_metadata_properties={"speechops:pipeline": self.pipeline.name,
                                          "speechops:task": self.pipeline.task,
                                          "speechops:serve-image": self.settings.image("serve")[-256:]})
        step_args, self.session.context = self.session.context, None
        retries, retry_text = self._step_retries()
        step = ModelStep(name=step_name(stage.name, "model-package"), step_args=step_args, retry_policies=retries,
                         display_name=step_name(stage.name, "model-registry"),
                         description=f"register the model in the model package group {group}")
        self.planned.append(PlannedStep(step.name, "RegisterModel", stage.name, self.settings.image("serve"), None,
                                        [f"model package group {group}", "approval: parameter ModelApprovalStatus"],
                                        {"model": stage.inputs["model"], **({"metrics": stage.inputs["evaluation"]}
                                                                            if "evaluation" in stage.inputs else {})},
                                        "n/a", retry_text))
        return step

    def _register_stage(self, stage: Stage, params: Params) -> list[Any]:
        steps = [self._model_package_step(stage)]
        self.model_package_step = steps[0]
        tracking = self.settings.mlflow_tracking_uri or getattr(params, "tracking_uri", None)
        if not tracking or tracking.startswith(LOCAL_TRACKING_PREFIXES):
            self.skipped.add(stage.name)
            self.notes.append(f"{stage.name}: MLflow logging is off (no tracking server reachable from SageMaker "
                              "jobs); set --sagemaker-mlflow-uri (an MLflow server or a SageMaker managed MLflow "
                              f"ARN) to run the {stage.name} stage after the Model Registry step")
            return steps
        steps.append(self._processing_step(stage, params, extra={"tracking_uri": tracking}))
        return steps

    def _deploy_stage(self, stage: Stage, params: Params) -> Any:
        from sagemaker.core.helper.pipeline_variable import PipelineVariable

        from steps.common.sagemaker_endpoint import NAME_LIMIT, STAMP_LENGTH

        endpoint = getattr(params, "endpoint_name", None) or self.name
        if len(endpoint) > NAME_LIMIT - STAMP_LENGTH:
            raise PipelineError(f"stage {stage.name} cannot deploy to SageMaker",
                                [f"endpoint name {endpoint!r} is longer than {NAME_LIMIT - STAMP_LENGTH} characters; "
                                 f"set --set {stage.name}.endpoint_name=SHORTER"])
        fixed = {"target": "sagemaker", "endpoint_name": endpoint, "region": self.region,
                 "execution_role_arn": self.settings.endpoint_role_arn(), "image_uri": self.settings.image("serve")}
        model_type = type(params)
        unknown = [k for k in fixed if k not in model_type.model_fields]
        if unknown:
            raise PipelineError(f"stage {stage.name} cannot deploy to SageMaker",
                                [f"its parameters lack {', '.join(unknown)}"])
        validated = model_type.model_validate({**params.model_dump(), **fixed})
        extra: dict[str, Any] = dict(fixed)
        if self.model_package_step is not None:
            extra["model_package_arn"] = self.model_package_step.properties.ModelPackageArn
        elif "model" in stage.inputs:
            source = self._input_sources(stage)["model"][1]
            if not isinstance(source.uri, PipelineVariable) or source.archive != MODEL_ARCHIVE:
                raise PipelineError(f"stage {stage.name} cannot deploy to SageMaker",
                                    ["its model must come from a training stage (a model.tar.gz)"])
            extra["model_data_url"] = source.uri
        self.notes.append(f"{stage.name}: target=sagemaker (endpoint {endpoint}); the profile's deploy.target is "
                          "for the local backend")
        return self._processing_step(stage, validated, extra=extra)

    # -- gate -------------------------------------------------------------------------------------
    def _check_settings(self) -> None:
        """Settings that name stages must name stages of this pipeline (a typo is an error, not a no-op)."""
        stages, steps = set(self.params), {s.step for s in self.pipeline.stages} | {"serve"}
        problems = [f"sagemaker.inputs.{name}: {self.pipeline.name} has no stage {name!r}"
                    for name in sorted(set(self.settings.inputs) - stages)]
        problems += [f"sagemaker.instance_types.{name}: {self.pipeline.name} has no stage {name!r} "
                     f"(stages: {', '.join(self.params)})"
                     for name in sorted(set(self.settings.instance_types) - stages)]
        problems += [f"sagemaker.images.{name}: no stage runs the step {name!r} (steps: {', '.join(sorted(steps))})"
                     for name in sorted(set(self.settings.images) - steps)]
        if problems:
            raise PipelineError("SageMaker settings are not valid:", problems)

    def _gate_metrics(self) -> list[tuple[GateMetric, str, float]]:
        """One pipeline parameter per gate metric with an absolute limit: ``Max<Metric>`` when lower is better,
        ``Min<Metric>`` when higher is, defaulting to the pipeline gate's limit (the task's, or the profile's
        ``gate.<metric>.limit``). The relative thresholds are the register stage's: they need the champion."""
        gate = self.pipeline.gate or get_task(self.pipeline.task).gate
        gates = []
        for metric in gate.metrics:
            if metric.limit is None:
                self.notes.append(f"gate: {metric.name} has no absolute limit (gate.{metric.name}.limit), so no "
                                  "condition step checks it; the register stage still compares it with the champion")
                continue
            name = camel(metric.limit_word, metric.name)
            self._parameter(name, float(metric.limit), f"gate.{metric.name}.limit")
            gates.append((metric, name, float(metric.limit)))
        return gates

    def _gated(self, gates: list[tuple[str, str, float]], evaluate: Stage | None) -> set[str]:
        if not gates or evaluate is None:
            return set()
        gated: set[str] = set()
        for stage in self.pipeline.stages:
            if stage.step in GATED_STEPS:
                gated |= self.pipeline.descendants(stage.name)
        if evaluate.name in gated:
            raise PipelineError("the quality gate cannot follow the stage it reads",
                                [f"{evaluate.name} depends on a register or deploy stage"])
        return gated

    def _gate_steps(self, gates: list[tuple[GateMetric, str, float]], evaluate: Stage, property_file: Any,
                    inner: list[Any]) -> Any:
        """One ``ConditionStep`` whose conditions (all must hold) compare each gate metric, in its direction,
        with its threshold parameter; ``inner`` runs if they hold, else a ``FailStep`` names every threshold.
        One step, not one per metric: SageMaker Pipelines does not nest condition steps (the published
        definition schema allows no ConditionStep in IfSteps/ElseSteps)."""
        from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
        from sagemaker.core.workflow.functions import Join, JsonGet
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep

        names = ", ".join(s.name for s in inner)
        metric_names = [metric.name for metric, _, _ in gates]
        conditions, checks, message = [], [], ["Quality gate failed: in the " + evaluate.name + " report, not all of "]
        for i, (metric, name, default) in enumerate(gates):
            compare = ConditionLessThanOrEqualTo if metric.lower_is_better else ConditionGreaterThanOrEqualTo
            conditions.append(compare(left=JsonGet(step_name=step_name(evaluate.name), property_file=property_file,
                                                   json_path=metric.name), right=self.parameters[name]))
            checks.append(f"{metric.name} {metric.op} {name} (default {default:g})")
            message += [("; " if i else "") + f"{metric.name} {metric.op} {name} = ", self.parameters[name],
                        f" ({metric.direction} is better)"]
        message.append(f" hold. Not registered, not deployed. The values are in the {evaluate.name} step's "
                       f"PropertyFile {property_file.name}; re-run with --param NAME=VALUE to accept them.")
        gate_name = step_name("gate", *metric_names)[:64]
        fail = FailStep(name=step_name("fail", *metric_names)[:64], error_message=Join(on="", values=message))
        condition = ConditionStep(name=gate_name, display_name=gate_name,
                                  description=" and ".join(f"{metric.name} {metric.op} {name} ({metric.direction} is "
                                                           "better)" for metric, name, _ in gates),
                                  conditions=conditions, if_steps=inner, else_steps=[fail])
        self.planned += [PlannedStep(condition.name, "Condition", None,
                                     inputs={m: f"{evaluate.name}.report" for m in metric_names},
                                     command=[" and ".join(checks)], note=f"then: {names}; else: {fail.name}"),
                         PlannedStep(fail.name, "Fail", None,
                                     command=["not all of: " + ", ".join(checks)],
                                     branch=f"else of {condition.name}")]
        return condition

    # -- all together -----------------------------------------------------------------------------
    def compile(self) -> CompiledPipeline:
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.pipeline import Pipeline as SdkPipeline

        order = self.pipeline.order()
        self._check_settings()
        self._stage_parameters()
        gates = self._gate_metrics()
        evaluate = next((s for s in order if s.step == GATE_SOURCE_STEP), None)
        gated = self._gated(gates, evaluate)
        if gates and evaluate is None:
            self.notes.append("no evaluate stage: no quality gate")
        property_file = PropertyFile(name=camel(evaluate.name, "report"), output_name=contract.REPORT_OUTPUT,
                                     path=contract.REPORT_FILE) if evaluate is not None else None
        top, branch = [], []
        for stage in order:
            params = self.params[stage.name]
            self._check_external_inputs(stage, params)
            if stage.step == "tune":
                steps = [self._tuning_step(stage, params)]
            elif stage.spec.kind == "training":
                steps = [self._training_step(stage, params)]
            elif stage.step == "register":
                steps = self._register_stage(stage, params)
            elif stage.step == "deploy":
                steps = [self._deploy_stage(stage, params)]
            else:
                steps = [self._processing_step(stage, params,
                                               property_file=property_file if stage is evaluate else None)]
            if stage.name in gated:
                branch += steps
                for planned in self.planned:
                    if planned.stage == stage.name:
                        planned.branch = "gated"
            else:
                top += steps
        if branch:
            top.append(self._gate_steps(gates, evaluate, property_file, branch))
        elif gates and evaluate is not None:
            self.notes.append("nothing to gate: no register or deploy stage")
        ordered = [p for p in self.planned if p.type not in ("Condition", "Fail")] + \
                  [p for p in self.planned if p.type in ("Condition", "Fail")]
        sdk = SdkPipeline(name=self.name, parameters=list(self.parameters.values()), steps=top,
                          sagemaker_session=self.session, pipeline_experiment_config=None)
        return CompiledPipeline(self.name, self.region, sdk, self.settings, ordered, list(self.infos.values()),
                                self.sources, gates if branch else [], self.notes, self.model_package_group)


def unpacking_command(archives: list[tuple[str, str]], command: list[str]) -> list[str]:
    """An entrypoint that unpacks training-job tarballs, then execs ``command``.

    SageMaker hands a training job's outputs over as ``model.tar.gz``/``output.tar.gz``; the stage
    expects folders. Each ``(archive, folder)`` is unpacked into ``folder`` on the job's volume (the
    step's ``SPEECHOPS_INPUT_<NAME>`` points there). The stage's arguments follow as ``"$@"``.
    """
    lines = ["set -eu"]
    for archive, folder in archives:
        lines.append(f"mkdir -p {shlex.quote(folder)} && tar -xzf {shlex.quote(archive)} -C {shlex.quote(folder)}")
    lines.append("exec " + " ".join(shlex.quote(c) for c in command) + ' "$@"')
    return ["/bin/sh", "-c", "; ".join(lines), command[-1]]


def _plan_value(value: Any) -> str:
    from sagemaker.core.helper.pipeline_variable import PipelineVariable

    if isinstance(value, PipelineVariable):
        expr = value.expr
        if "Get" in expr:
            return "{" + str(expr["Get"]) + "}"
        values = expr.get("Std:Join", {}).get("Values", [])
        return "".join("{" + v["Get"] + "}" if isinstance(v, dict) and "Get" in v else str(v) for v in values)
    return str(value)


def _plan_args(arguments: list[Any]) -> list[str]:
    """Arguments as the plan shows them: the pieces of a long ``--params-json`` joined into one, quoted."""
    shown: list[str] = []
    pieces: list[str] = []
    for text in map(_plan_value, arguments):
        if text.startswith(f"{PARAMS_JSON_OPTION}="):
            if not pieces:
                shown.append(PARAMS_JSON_OPTION)
                shown.append("")  # the document, filled in below
            pieces.append(text.split("=", 1)[1])
        else:
            shown.append(text)
    if pieces:
        shown[shown.index(PARAMS_JSON_OPTION) + 1] = "".join(pieces)
    return [shlex.quote(a) if i and shown[i - 1] == PARAMS_JSON_OPTION else a for i, a in enumerate(shown)]


@functools.lru_cache(maxsize=1)
def _training_step_class() -> type:
    from sagemaker.mlops.workflow.steps import TrainingStep

    class StageTrainingStep(TrainingStep):
        """A TrainingStep that runs the stage's own entrypoint (``images.job_command(step) --task T``)
        instead of the image's default command, like every other step."""

        def __init__(self, *args: Any, command: list[str], **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.command = command

        @property
        def arguments(self) -> dict[str, Any]:
            request = super().arguments
            algorithm = request.setdefault("AlgorithmSpecification", {})
            cut = self.command.index("--task")  # the entrypoint, then the stage's arguments
            algorithm["ContainerEntrypoint"] = self.command[:cut]
            algorithm["ContainerArguments"] = self.command[cut:]
            return request

    return StageTrainingStep


def _StageTrainingStep(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - builds the class lazily (SDK import)
    return _training_step_class()(*args, **kwargs)
