"""The SageMaker backend from the command line: compile, show, upsert, start, follow, schedule.

  run.py --pipeline P --backend sagemaker --dry-run          definition JSON + plan; no AWS call
  run.py --pipeline P --backend sagemaker [--wait]           upsert the pipeline, start it (and follow it)
  run.py --pipeline P --backend sagemaker --schedule "cron(0 3 ? * SUN *)"   EventBridge Scheduler
  run.py --pipeline P --backend sagemaker --list-schedules | --delete-schedule NAME

The pipeline is the one ``get_pipeline`` builds for the local backend; ``sagemaker_compile`` turns it
into the SDK's pipeline, ``sagemaker_aws`` talks to AWS. This module only wires options to them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines.backends.base import Backend, BackendError
from pipelines.backends.sagemaker_settings import CLI_FIELDS, SageMakerSettings, resolve_settings
from pipelines.config import TOP_LEVEL_KEYS
from pipelines.definition import Pipeline, PipelineError
from pipelines.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_ROLE_NAME = "speechops-scheduler"  # created by infra/iam.yaml
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # replaced by EventBridge Scheduler at each run
_SCHEDULE = re.compile(r"^(cron\(.+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\)|at\(.+\))$")


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The ``run`` options of the SageMaker backend (cheap: no SDK import)."""
    group = run.add_argument_group(
        "SageMaker backend (--backend sagemaker)",
        "Settings come from these options, else the profile's 'sagemaker:' section (or --set sagemaker.KEY=VALUE). "
        "A dry run needs none of them and makes no AWS call.")
    group.add_argument("--sagemaker-role", metavar="ARN", help="execution role of the pipeline and its jobs")
    group.add_argument("--sagemaker-endpoint-role", metavar="ARN",
                       help="role the endpoint's model runs as (default: speechops-sagemaker-endpoint of infra/iam.yaml "
                            "in the execution role's account)")
    group.add_argument("--sagemaker-bucket", metavar="NAME", help="S3 bucket for step outputs and checkpoints")
    group.add_argument("--sagemaker-region", metavar="REGION", help="default: AWS_REGION or ~/.aws/config")
    group.add_argument("--sagemaker-image-registry", metavar="HOST",
                       help="ECR registry of the stage images (default: <role account>.dkr.ecr.<region>.amazonaws.com)")
    group.add_argument("--sagemaker-image-tag", metavar="TAG",
                       help="tag of the stage images (default: the git commit, the tag infra/push_images.sh pushes); "
                            "'latest' only with --sagemaker-allow-mutable-tag")
    group.add_argument("--sagemaker-allow-mutable-tag", action="store_true", default=None,
                       help="accept a tag that moves (latest): steps may then run another image than recorded")
    group.add_argument("--sagemaker-instance-type", action="append", default=[], metavar="STAGE=TYPE",
                       help="instance type of a stage, e.g. train=ml.g5.2xlarge (repeatable)")
    group.add_argument("--sagemaker-pipeline-name", metavar="NAME", help="default: speechops-<pipeline>")
    group.add_argument("--sagemaker-mlflow-uri", metavar="URI",
                       help="MLflow tracking server the register stage logs to (https://... or a SageMaker MLflow ARN)")
    group.add_argument("--param", dest="pipeline_params", action="append", default=[], metavar="NAME=VALUE",
                       help="pipeline parameter for this execution or schedule, e.g. TrainEpochs=3 "
                            "(names: see the plan)")
    group.add_argument("--definition-out", type=Path, metavar="PATH",
                       help="where the definition JSON goes (default: <runs-dir>/<pipeline>/sagemaker/<name>.json)")
    group.add_argument("--wait", action="store_true", help="follow the execution, printing step status changes")
    group.add_argument("--schedule", metavar="EXPR",
                       help="create or update an EventBridge Scheduler schedule that starts the pipeline instead of "
                            "starting it now, e.g. 'cron(0 3 ? * SUN *)' or 'rate(7 days)' (UTC)")
    group.add_argument("--schedule-name", metavar="NAME", help="default: <sagemaker pipeline name>-retrain")
    group.add_argument("--schedule-role", metavar="ARN",
                       help=f"role the scheduler assumes (default: the account's {DEFAULT_SCHEDULER_ROLE_NAME} role "
                            "from infra/iam.yaml)")
    group.add_argument("--list-schedules", action="store_true", help="list the schedules that start this pipeline")
    group.add_argument("--delete-schedule", metavar="NAME", help="delete a schedule of this pipeline")


def options_given(args: argparse.Namespace) -> list[str]:
    """The SageMaker options set on this command line (they mean nothing to the local backend)."""
    given = [f"--{name.replace('_', '-')}" for name in ("sagemaker_role", "sagemaker_bucket", "sagemaker_region",
                                                        "sagemaker_image_registry", "sagemaker_image_tag",
                                                        "sagemaker_endpoint_role", "sagemaker_allow_mutable_tag",
                                                        "sagemaker_pipeline_name", "sagemaker_mlflow_uri",
                                                        "definition_out", "schedule", "schedule_name", "schedule_role",
                                                        "delete_schedule")
             if getattr(args, name, None)]
    given += [f"--{name.replace('_', '-')}" for name in ("wait", "list_schedules") if getattr(args, name, False)]
    given += ["--sagemaker-instance-type"] * bool(getattr(args, "sagemaker_instance_type", None))
    given += ["--param"] * bool(getattr(args, "pipeline_params", None))
    return given


@dataclass(frozen=True)
class SageMakerOptions:
    """What the SageMaker backend takes from ``run``'s options (``add_arguments``); attribute names follow
    the argparse destinations."""

    pipeline: str = ""
    profile: str = "tiny"
    overrides: tuple[str, ...] = ()
    run_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # --sagemaker-* values by destination
    sagemaker_instance_type: tuple[str, ...] = ()
    pipeline_params: tuple[str, ...] = ()
    definition_out: Path | None = None
    wait: bool = False
    schedule: str | None = None
    schedule_name: str | None = None
    list_schedules: bool = False
    delete_schedule: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SageMakerOptions:
        return cls(pipeline=args.pipeline, profile=args.profile, overrides=tuple(args.overrides), run_id=args.run_id,
                   settings={dest: getattr(args, dest, None) for dest in CLI_FIELDS},
                   sagemaker_instance_type=tuple(args.sagemaker_instance_type),
                   pipeline_params=tuple(args.pipeline_params), definition_out=args.definition_out, wait=args.wait,
                   schedule=args.schedule, schedule_name=args.schedule_name, list_schedules=args.list_schedules,
                   delete_schedule=args.delete_schedule)


@dataclass
class SageMakerPlan:
    compiled: Any
    path: Path
    overrides: dict[str, Any]
    schedule: dict[str, Any] | None
    session: Any = None


class SageMakerBackend(Backend):
    """Compile the validated pipeline to a SageMaker Pipelines definition; ``run`` upserts and starts it (or
    schedules it, or lists or deletes its schedules: ``--schedule``, ``--list-schedules``,
    ``--delete-schedule``). Exit codes: 0 success, 1 an AWS or execution failure, 2 bad input."""

    name = "sagemaker"

    def __init__(self, workspace: Workspace, options: SageMakerOptions | None = None):
        self.workspace = workspace
        self.options = options or SageMakerOptions()

    @classmethod
    def from_args(cls, args: argparse.Namespace, workspace: Workspace) -> SageMakerBackend:
        return cls(workspace, SageMakerOptions.from_args(args))

    def plan(self, pipeline: Pipeline, **selection: Any) -> SageMakerPlan:
        return self._compile(pipeline, dry_run=True, **selection)

    def run(self, pipeline: Pipeline, **selection: Any) -> int:
        from pipelines.summary import console

        options = replace(self.options, pipeline=pipeline.name)
        with _aws_errors():
            if options.list_schedules or options.delete_schedule:
                _check_options(options, dry_run=False, **selection)
                return _schedules(options, self._settings(pipeline), pipeline.name, console)
            plan = self._compile(pipeline, dry_run=False, **selection)
            self.print_plan(pipeline, plan)
            return _submit(options, plan.compiled, plan.overrides, plan.schedule, plan.session, console)

    def print_plan(self, pipeline: Pipeline, plan: SageMakerPlan) -> int:
        from pipelines.summary import console

        dry_run = plan.session is None
        print_plan(plan.compiled, plan.path, plan.overrides, console, dry_run=dry_run)
        if dry_run and plan.schedule is not None:
            console.print("[bold]schedule[/] (not created on a dry run):")
            console.print(json.dumps(plan.schedule, indent=2, default=str), markup=False, highlight=False)
        return 0

    def print_result(self, pipeline: Pipeline, result: int) -> int:
        return result  # run printed its progress as it went

    def _settings(self, pipeline: Pipeline) -> SageMakerSettings:
        return resolve_settings(pipeline.config.get("sagemaker"), self.options.settings,
                                default_region=_machine_region(),
                                instance_types=list(self.options.sagemaker_instance_type))

    def _compile(self, pipeline: Pipeline, *, dry_run: bool, **selection: Any) -> SageMakerPlan:
        options = replace(self.options, pipeline=pipeline.name)
        with _aws_errors():
            _check_options(options, dry_run=dry_run, **selection)
            settings = self._settings(pipeline)
            if not dry_run and settings.placeholders():
                raise PipelineError("a SageMaker run needs these settings (a --dry-run does not):",
                                    settings.placeholders())
            session = None if dry_run else _boto_session(settings)
            from pipelines.backends.sagemaker_compile import compile_pipeline

            compiled = compile_pipeline(pipeline, settings, dry_run=dry_run, boto_session=session)
            overrides = parameter_overrides(compiled, list(options.pipeline_params))
            out = options.definition_out or self.workspace.pipeline_dir(pipeline.name) / "sagemaker"
            path = write_definition(compiled, out)
            schedule = _schedule_request(options, compiled, overrides) if options.schedule else None
            return SageMakerPlan(compiled, path, overrides, schedule, session)


@contextmanager
def _aws_errors() -> Iterator[None]:
    """AWS client errors become a ``BackendError`` with what to check."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise BackendError(f"AWS error: {exc}", "check the region, your credentials (aws sts get-caller-identity) "
                           "and the IAM/ECR prerequisites in README.md, 'Run on SageMaker'") from exc


def _check_options(options: SageMakerOptions, *, dry_run: bool, from_stage: str | None = None,
                   only_stage: str | None = None, run_id: str | None = None) -> None:
    problems = []
    if from_stage or only_stage:
        problems.append("--from/--only are local-backend options; on SageMaker unchanged steps are reused through "
                        "step caching")
    actions = [o for o, on in (("--schedule", options.schedule), ("--list-schedules", options.list_schedules),
                               ("--delete-schedule", options.delete_schedule)) if on]
    if len(actions) > 1:
        problems.append(f"choose one of {', '.join(actions)}")
    if options.wait and (options.schedule or dry_run or options.list_schedules or options.delete_schedule):
        problems.append("--wait follows an execution this command starts; drop --dry-run/--schedule")
    if dry_run and (options.list_schedules or options.delete_schedule):
        problems.append("--list-schedules/--delete-schedule talk to AWS; drop --dry-run")
    if options.schedule and not _SCHEDULE.match(options.schedule.strip()):
        problems.append(f"--schedule {options.schedule!r}: use an EventBridge Scheduler expression, e.g. "
                        "'cron(0 3 ? * SUN *)', 'rate(7 days)' or 'at(2026-01-01T03:00:00)'")
    if problems:
        raise PipelineError("invalid options for --backend sagemaker:", problems)


def _machine_region() -> str | None:
    import boto3

    return boto3.session.Session().region_name


def _boto_session(settings: SageMakerSettings) -> Any:
    import boto3

    return boto3.Session(region_name=settings.region)


def write_definition(compiled: Any, out: Path) -> Path:
    """Write the definition JSON (``out`` may be a folder: ``<name>.json`` goes in it)."""
    path = out / f"{compiled.name}.json" if out.suffix != ".json" else out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(compiled.definition(), indent=2) + "\n")
    return path


def parameter_overrides(compiled: Any, items: list[str]) -> dict[str, Any]:
    """``--param NAME=VALUE`` -> typed values; unknown names and bad values are errors, listed at once."""
    casts = {"Integer": int, "Float": float, "String": str,
             "Boolean": lambda v: {"true": True, "false": False}[v.strip().lower()]}
    values: dict[str, Any] = {}
    problems = []
    known = {p.name: p for p in compiled.parameters}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            problems.append(f"--param {item!r}: expected NAME=VALUE with NAME one of {', '.join(known)}")
            continue
        try:
            values[name] = casts[known[name].type](raw)
        except (ValueError, KeyError):
            problems.append(f"--param {item!r}: {name} is a {known[name].type}")
    if problems:
        raise PipelineError("invalid pipeline parameters:", problems)
    return values


def command_line_parameters(compiled: Any, overrides: list[str], instance_types: list[str]) -> dict[str, Any]:
    """Pipeline parameters whose value was set on this command line (``--set`` or an option): a schedule
    passes them as overrides, so later upserts from another profile do not change what it runs."""
    keys = set()
    for item in overrides:
        key = item.partition("=")[0].strip()
        keys.add(key if key.split(".")[0] in TOP_LEVEL_KEYS else f"stages.{key}")
    keys |= {f"sagemaker.instance_types.{item.partition('=')[0].strip()}" for item in instance_types}
    by_name = {p.name: p for p in compiled.parameters}
    return {name: by_name[name].default for key, name in compiled.parameter_sources.items() if key in keys}


def _schedule_request(args: SageMakerOptions, compiled: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    from pipelines.backends.sagemaker_aws import schedule_request

    settings = compiled.settings
    role = settings.schedule_role or f"arn:aws:iam::{settings.account}:role/{DEFAULT_SCHEDULER_ROLE_NAME}"
    from pipelines.backends.sagemaker_compile import DATA_SNAPSHOT

    snapshot = {DATA_SNAPSHOT: SCHEDULED_TIME} if any(p.name == DATA_SNAPSHOT for p in compiled.parameters) else {}
    parameters = {**snapshot, **command_line_parameters(compiled, list(args.overrides), list(args.sagemaker_instance_type)),
                  **overrides}
    arn = f"arn:aws:sagemaker:{compiled.region}:{settings.account}:pipeline/{compiled.name.lower()}"
    return schedule_request(args.schedule_name or f"{compiled.name}-retrain", args.schedule.strip(), arn, role,
                            parameters, description=f"speechops: retrain {args.pipeline} ({args.profile})")


def _submit(args: SageMakerOptions, compiled: Any, overrides: dict[str, Any], schedule: dict[str, Any] | None,
            session: Any, console: Any) -> int:
    from pipelines.backends import sagemaker_aws as aws

    settings = compiled.settings
    sagemaker = session.client("sagemaker")
    if compiled.model_package_group:
        if aws.ensure_model_package_group(sagemaker, compiled.model_package_group,
                                          f"speechops pipeline {args.pipeline}"):
            console.print(f"created model package group {compiled.model_package_group}")
    arn = aws.upsert_pipeline(compiled.sdk_pipeline, settings.role, f"speechops pipeline {args.pipeline} "
                              f"(profile {args.profile})", {"speechops:pipeline": args.pipeline, **settings.tags})
    console.print(f"[bold]upserted[/] {arn}")
    if schedule is not None:
        schedule["Target"]["Arn"] = arn
        schedule_arn, created = aws.upsert_schedule(session.client("scheduler"), schedule)
        params = ", ".join(f"{p['Name']}={p['Value']}" for p in
                           schedule["Target"]["SageMakerPipelineParameters"]["PipelineParameterList"]) or "defaults"
        console.print(f"[bold]{'created' if created else 'updated'} schedule[/] {schedule['Name']} "
                      f"({schedule['ScheduleExpression']} {schedule['ScheduleExpressionTimezone']}, parameters: "
                      f"{params}): {schedule_arn}", soft_wrap=True)
        return 0
    execution = aws.start_execution(compiled.sdk_pipeline, overrides, args.run_id,
                                    f"speechops run.py --profile {args.profile}")
    console.print(f"[bold]started[/] {execution}\n  {aws.console_url(compiled.region, compiled.name, execution)}",
                  soft_wrap=True)
    if not args.wait:
        console.print("follow it with --wait next time, or in the SageMaker console")
        return 0
    status = aws.follow_execution(sagemaker, execution, emit=lambda line: console.print(f"  {line}", markup=False))
    style = "green" if status == "Succeeded" else "bold red"
    console.print(f"execution [{style}]{status}[/]")
    if status != "Succeeded":
        reason = aws.describe_execution(sagemaker, execution).get("FailureReason")
        if reason:
            console.print(f"  {reason}", markup=False)
    return 0 if status == "Succeeded" else 1


def _schedules(args: SageMakerOptions, settings: SageMakerSettings, pipeline: str, console: Any) -> int:
    from pipelines.backends import sagemaker_aws as aws

    name = settings.sagemaker_pipeline_name(pipeline)
    if not settings.region:
        raise PipelineError("schedules live in a region:",
                            ["set --sagemaker-region REGION, AWS_REGION or ~/.aws/config"])
    scheduler = _boto_session(settings).client("scheduler")
    if args.delete_schedule:
        try:
            deleted = aws.delete_schedule(scheduler, args.delete_schedule, name)
        except ValueError as exc:
            raise PipelineError("not deleted:", [str(exc)]) from exc
        console.print(f"deleted schedule {args.delete_schedule}" if deleted else
                      f"no schedule named {args.delete_schedule} (list them with --list-schedules)")
        return 0 if deleted else 1
    found = aws.list_schedules(scheduler, name)
    for item in found:
        target = item.get("Target", {})
        params = ", ".join(f"{p['Name']}={p['Value']}" for p in
                           target.get("SageMakerPipelineParameters", {}).get("PipelineParameterList", [])) or "defaults"
        console.print(f"[bold]{item['Name']}[/] ({item.get('State', '?')}): {item.get('ScheduleExpression')} "
                      f"{item.get('ScheduleExpressionTimezone', '')}; parameters: {params}", soft_wrap=True)
    if not found:
        console.print(f"no schedule starts {name} in {settings.region}")
    return 0


def print_plan(compiled: Any, path: Path, overrides: dict[str, Any], console: Any, dry_run: bool) -> None:
    """The readable plan: steps, commands, gate, parameters, notes, where the definition is."""
    from rich.table import Table

    settings = compiled.settings
    console.print(f"[bold]SageMaker pipeline {compiled.name}[/] · region {compiled.region} · "
                  f"bucket {settings.bucket or '(placeholder)'} · "
                  f"images {settings.registry()}/…:{settings.tag()}"
                  + (f" (by digest: {', '.join(sorted(settings.image_digests))})" if settings.image_digests else ""),
                  soft_wrap=True)
    table = Table(show_lines=False)
    for col in ("step", "type", "image", "instance", "cache"):
        table.add_column(col, no_wrap=True)
    table.add_column("inputs", overflow="fold")
    table.add_column("runs", overflow="fold")
    for step in compiled.steps:
        instance = compiled.parameter(step.instance_parameter).default if step.instance_parameter else "-"
        image = step.image.rsplit("/", 1)[-1].split(":")[0] if step.image else "-"
        runs = step.branch or ("always" if step.type not in ("Condition", "Fail") else "after evaluate")
        table.add_row(step.name, step.type, image, instance, step.cache,
                      "\n".join(f"{k}←{v}" for k, v in step.inputs.items()) or "-", runs)
    console.print(table)
    retries = sorted({f"{s.type}: {s.retry}" for s in compiled.steps if s.retry != "-"})
    console.print("[bold]retries[/]: " + "; ".join(retries), soft_wrap=True)
    console.print("[bold]commands[/] (container entrypoint and arguments; {…} are resolved at run time)")
    for step in compiled.steps:
        if step.command:
            note = f"   [{step.note}]" if step.note else ""
            console.print(f"  {step.name}: {' '.join(step.command)}{note}", markup=False, highlight=False,
                          soft_wrap=True)
    if compiled.gates:
        gates = " and ".join(f"{metric.name} {metric.op} {name} ({default:g})"
                             for metric, name, default in compiled.gates)
        console.print(f"[bold]quality gate[/]: {gates}; the steps marked 'gated' run only if it holds, else a "
                      "Fail step names the thresholds")
    table = Table(title="pipeline parameters (override per run with --param NAME=VALUE)", show_lines=False)
    for col in ("name", "type", "default", "this run", "from"):
        table.add_column(col, overflow="fold")
    for info in compiled.parameters:
        table.add_row(info.name, info.type, str(info.default), str(overrides.get(info.name, "")), info.source)
    console.print(table)
    for note in compiled.notes:
        console.print(f"[bold]note[/]: {note}", soft_wrap=True)
    if dry_run and settings.placeholders():
        console.print("[yellow]placeholders[/] in this definition; a real run needs: " +
                      "; ".join(settings.placeholders()), soft_wrap=True)
    console.print(f"definition ({len(compiled.steps)} steps, {len(compiled.parameters)} parameters) written to "
                  f"{path}", soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing was sent to AWS")
