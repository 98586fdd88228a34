"""The Kubeflow Pipelines backend: ``--backend kubeflow``.

* ``--dry-run``: compile the pipeline into a KFP v2 pipeline spec (IR YAML) with kfp's compiler
  (``kubeflow_compile.py``), write it (default ``<runs>/<pipeline>/kubeflow/<name>.yaml``) and print the
  plan; offline. With ``--schedule CRON`` the recurring-run request is printed too.
* ``--kfp-local``: run it here with ``kfp.local``'s ``SubprocessRunner`` (no cluster, no registry, no
  container: ``use_venv=False``, components that install nothing), with KFP's local cache on; outputs
  under ``<runs>/<pipeline>/kubeflow/local/``.
* ``--kfp-host URL``: submit a run to that KFP API server (or, with ``--schedule CRON``, a recurring
  run) with kfp's client. Not run here: no cluster is reachable from this machine.

Settings come from the profile's ``kubeflow:`` section (``--set kubeflow.KEY=VALUE``) and the ``--kfp-*``
options, which win.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines import images
from pipelines.backends.base import Backend, BackendError
from pipelines.definition import Pipeline, PipelineError
from pipelines.workspace import Workspace

NO_COMMIT_TAG = "no-git-commit"
KFP_OPTIONS = ("kfp_host", "kfp_image_registry", "kfp_image_tag", "kfp_spec_out", "kfp_local")


class KubeflowSettings(BaseModel):
    """The ``kubeflow:`` section of a profile."""

    model_config = ConfigDict(extra="forbid")

    pipeline_name: str | None = Field(None, description="KFP pipeline name (default: speechops-<pipeline>)")
    host: str | None = Field(None, description="KFP API server to submit to, e.g. http://localhost:8080")
    experiment: str = Field("speechops", description="KFP experiment of the runs")
    image_registry: str = Field(images.LOCAL_REGISTRY, description="registry the cluster pulls the stage images from")
    image_tag: str | None = Field(None, description="tag of the stage images (default: the git commit)")
    allow_mutable_tag: bool = Field(False, description="allow a tag that moves (latest)")
    parameters: list[str] = Field(default_factory=lambda: ["train.epochs", "train.lr"],
                                  description="stage parameters that become pipeline parameters (stage.param)")
    cache: bool = Field(True, description="KFP caching for the stages the pipeline marks cacheable")

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v.count(".") != 1]
        if bad:
            raise ValueError(f"name stage parameters as stage.param (e.g. train.epochs); got {bad}")
        return value

    def tag(self) -> str:
        tag = self.image_tag or images.commit_tag() or NO_COMMIT_TAG
        if tag in images.MUTABLE_TAGS and not self.allow_mutable_tag:
            raise PipelineError("invalid kubeflow settings:", [
                f"kubeflow.image_tag: {tag!r} moves with every push, so a cached step could stand for another image; "
                "use the git-commit tag, or --set kubeflow.allow_mutable_tag=true to accept it"])
        return tag


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The ``run`` options of the Kubeflow backend (``--schedule`` and ``--param`` are shared with SageMaker's)."""
    group = run.add_argument_group(
        "Kubeflow backend (--backend kubeflow)",
        "Settings come from these options, else the profile's 'kubeflow:' section (--set kubeflow.KEY=VALUE). "
        "--dry-run compiles the KFP v2 spec offline; --schedule CRON (5 fields) and --param NAME=VALUE apply too.")
    group.add_argument("--kfp-host", metavar="URL", help="KFP API server to submit the run (or recurring run) to")
    group.add_argument("--kfp-local", action="store_true",
                       help="run here with kfp.local's SubprocessRunner: no cluster, no registry, no containers")
    group.add_argument("--kfp-image-registry", metavar="HOST", help="registry the cluster pulls the stage images from")
    group.add_argument("--kfp-image-tag", metavar="TAG", help="tag of the stage images (default: the git commit)")
    group.add_argument("--kfp-spec-out", type=Path, metavar="PATH",
                       help="where the pipeline spec goes (default: <runs-dir>/<pipeline>/kubeflow/<name>.yaml)")


def options_given(args: argparse.Namespace) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name in KFP_OPTIONS if getattr(args, name, None)]


@dataclass(frozen=True)
class KubeflowOptions:
    dry_run: bool
    host: str | None
    local: bool
    registry: str | None
    tag: str | None
    spec_out: Path | None
    schedule: str | None
    pipeline_params: tuple[str, ...]
    quiet: bool


@dataclass
class KubeflowResult:
    plan: Any  # kubeflow_compile.KubeflowPlan
    spec: Path
    arguments: dict[str, Any]
    schedule: dict[str, Any] | None = None
    local_root: Path | None = None
    stages: dict[str, dict[str, Any]] | None = None  # stage -> {"status", "report"}
    submitted: str | None = None


class KubeflowBackend(Backend):
    name = "kubeflow"

    def __init__(self, workspace: Workspace, options: KubeflowOptions):
        self.workspace = workspace
        self.options = options

    @classmethod
    def from_args(cls, args: argparse.Namespace, workspace: Workspace) -> KubeflowBackend:
        return cls(workspace, KubeflowOptions(
            dry_run=args.dry_run, host=args.kfp_host, local=args.kfp_local, registry=args.kfp_image_registry,
            tag=args.kfp_image_tag, spec_out=args.kfp_spec_out, schedule=getattr(args, "schedule", None),
            pipeline_params=tuple(getattr(args, "pipeline_params", []) or []), quiet=args.quiet))

    def config_overrides(self, workspace: Workspace, overrides: list[str]) -> list[str]:
        """A local KFP run registers into this workspace's MLflow store, as the local backend does."""
        if not self.options.local or any(o.startswith(("register.tracking_uri", "stages.register.tracking_uri"))
                                         for o in overrides):
            return list(overrides)
        return [f"stages.register.tracking_uri={workspace.tracking_uri}", *overrides]

    # -- compile ----------------------------------------------------------------------------------
    def settings(self, pipeline: Pipeline) -> KubeflowSettings:
        section = dict(pipeline.config.get("kubeflow") or {})
        for key, value in (("host", self.options.host), ("image_registry", self.options.registry),
                           ("image_tag", self.options.tag)):
            if value:
                section[key] = value
        try:
            return KubeflowSettings.model_validate(section)
        except ValidationError as exc:
            raise PipelineError("invalid kubeflow settings:", [
                f"kubeflow.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]) from None

    def compile(self, pipeline: Pipeline) -> KubeflowResult:
        from pipelines.backends.kubeflow_compile import compile_spec, plan_pipeline
        from pipelines.backends.local import git_commit

        try:
            import kfp  # noqa: F401
        except ImportError:
            raise BackendError("the Kubeflow backend needs kfp, which is not installed",
                               hint="python -m pip install -c constraints.txt -e '.[kubeflow]'", exit_code=2) from None

        if self.options.local and self.options.host:
            raise PipelineError("choose one of --kfp-local and --kfp-host", ["--kfp-local", "--kfp-host"])
        settings = self.settings(pipeline)
        params = {name: p.model_dump(mode="json") for name, p in pipeline.validated_params().items()}
        plan = plan_pipeline(pipeline, params, settings.image_registry, settings.tag(), settings.parameters,
                             settings.pipeline_name, git_commit())
        if not settings.cache:
            for stage in plan.stages:
                stage.cache = False
        if settings.image_registry == images.LOCAL_REGISTRY and not self.options.local:
            plan.notes.append(f"images name the registry {images.LOCAL_REGISTRY!r}: a cluster needs "
                              "--kfp-image-registry HOST (where infra/push_images.sh pushed them)")
        if any(s.step == "register" for s in pipeline.stages) and not self.options.local:
            uri = params.get("register", {}).get("tracking_uri")
            if not uri or str(uri).startswith(("sqlite:", "file:", "/")):
                plan.notes.append("the register stage logs to a local MLflow store inside its pod; on a cluster set "
                                  "--set register.tracking_uri=http://<mlflow-server>")
        spec = self.options.spec_out or self.workspace.pipeline_dir(pipeline.name) / "kubeflow" / f"{plan.name}.yaml"
        compile_spec(plan, spec, pipeline.description)
        arguments = parameter_arguments(plan, list(self.options.pipeline_params))
        schedule = recurring_run(plan, spec, settings, arguments, self.options.schedule) if self.options.schedule else None
        return KubeflowResult(plan, spec, arguments, schedule)

    def plan(self, pipeline: Pipeline, **selection: Any) -> KubeflowResult:
        _no_selection(selection)
        return self.compile(pipeline)

    def run(self, pipeline: Pipeline, **selection: Any) -> KubeflowResult:
        _no_selection(selection)
        result = self.compile(pipeline)
        if self.options.local:
            if self.options.schedule:
                raise PipelineError("--schedule needs a cluster", ["use --kfp-host URL, or drop --schedule"])
            return self._run_local(pipeline, result)
        settings = self.settings(pipeline)
        if not settings.host:
            raise BackendError("nowhere to run: the spec is compiled, but no cluster was named",
                               hint=f"pass --kfp-host URL to submit it, --kfp-local to run it here with kfp.local, "
                                    f"or --dry-run to only compile it ({result.spec})", exit_code=2)
        return self._submit(settings, result)

    def _submit(self, settings: KubeflowSettings, result: KubeflowResult) -> KubeflowResult:
        import kfp

        try:
            client = kfp.Client(host=settings.host)
            if result.schedule:
                experiment = client.create_experiment(settings.experiment)
                job = client.create_recurring_run(experiment_id=experiment.experiment_id, **result.schedule)
                result.submitted = f"recurring run {job.recurring_run_id}"
            else:
                run = client.create_run_from_pipeline_package(str(result.spec), arguments=result.arguments,
                                                              experiment_name=settings.experiment)
                result.submitted = f"run {run.run_id}"
        except Exception as exc:  # the client's errors (connection, HTTP) name no common base class
            raise BackendError(f"KFP at {settings.host} did not take the pipeline: {type(exc).__name__}: {exc}",
                               hint="check --kfp-host and that the API server answers (kubectl port-forward ...)")
        return result

    def _run_local(self, pipeline: Pipeline, result: KubeflowResult) -> KubeflowResult:
        from kfp import local

        from pipelines.backends.kubeflow_compile import build_pipeline, local_component

        root = self.workspace.pipeline_dir(pipeline.name) / "kubeflow" / "local"
        root.mkdir(parents=True, exist_ok=True)
        before = {p.name for p in root.iterdir()}
        env = {"SPEECHOPS_PROGRESS": os.environ.get("SPEECHOPS_PROGRESS", "1")}
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=False,
                   enable_caching=True, cache_root=str(root / ".kfp_cache"))
        func = build_pipeline(result.plan, lambda stage: local_component(stage, env), pipeline.description,
                              resources=False)
        func(**result.arguments)
        runs = sorted((p for p in root.iterdir() if p.is_dir() and p.name not in before and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime)
        result.local_root = runs[-1] if runs else root
        result.stages = local_stage_results(result.plan, result.local_root)
        return result

    # -- printing ---------------------------------------------------------------------------------
    def print_plan(self, pipeline: Pipeline, plan: KubeflowResult) -> int:
        from pipelines.summary import console

        print_kubeflow_plan(plan, console)
        return 0

    def print_result(self, pipeline: Pipeline, result: KubeflowResult) -> int:
        from pipelines.summary import console

        if result.stages is None:
            console.print(f"submitted {result.submitted} · spec {result.spec}")
            return 0
        from rich.table import Table

        table = Table(title=f"kfp.local run of {result.plan.name}")
        for col in ("stage", "status", "report"):
            table.add_column(col, overflow="fold")
        for name, info in result.stages.items():
            table.add_row(name, info["status"], info.get("report") or "-")
        console.print(table)
        console.print(f"outputs in {result.local_root}")
        failed = [n for n, info in result.stages.items() if info["status"] == "failed"]
        if failed:
            console.print(f"[bold red]failed:[/] {', '.join(failed)} (its log is above)")
            return 1
        if any(info["status"] == "skipped" for info in result.stages.values()):
            console.print(f"[bold red]the quality gate failed:[/] {', '.join(result.plan.gated)} did not run "
                          "(the gate's lines above say which limit)")
            return 1
        return 0


def _no_selection(selection: dict[str, Any]) -> None:
    chosen = [f"--{k.replace('_stage', '')}" for k in ("from_stage", "only_stage") if selection.get(k)]
    if chosen:
        raise PipelineError(f"{', '.join(chosen)} is for the local and compose backends",
                            ["a Kubeflow run is the whole pipeline; KFP's cache skips the unchanged stages"])


def parameter_arguments(plan: Any, items: list[str]) -> dict[str, Any]:
    """The pipeline's arguments: the defaults, with ``--param NAME=VALUE`` typed like the default."""
    values = dict(plan.parameters)
    problems = []
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in values:
            problems.append(f"--param {item!r}: expected NAME=VALUE with NAME one of {', '.join(values)}")
            continue
        try:
            values[name] = type(plan.parameters[name])(raw)
        except ValueError:
            problems.append(f"--param {item!r}: {name} is a {type(plan.parameters[name]).__name__}")
    if problems:
        raise PipelineError("invalid pipeline parameters:", problems)
    return values


def kfp_cron(expression: str) -> str:
    """A 5-field cron expression (minute hour day month weekday) -> KFP's 6 fields (seconds first)."""
    from croniter import croniter

    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise PipelineError("invalid --schedule:", [
            f"{expression!r} is not a 5-field cron expression (minute hour day month weekday), e.g. '0 3 * * 0'"])
    return "0 " + expression


def recurring_run(plan: Any, spec: Path, settings: KubeflowSettings, arguments: dict[str, Any],
                  expression: str) -> dict[str, Any]:
    """The arguments of ``kfp.Client.create_recurring_run`` (the experiment id is looked up on submission)."""
    return {"job_name": f"{plan.name}-retrain", "cron_expression": kfp_cron(expression), "max_concurrency": 1,
            "no_catchup": True, "params": arguments, "pipeline_package_path": str(spec),
            "enable_caching": settings.cache}


def local_stage_results(plan: Any, run_root: Path) -> dict[str, dict[str, Any]]:
    """Per component of a kfp.local run: ran (with its report), cached (KFP's local cache answered: the report
    of the run that made it), skipped (behind a failed gate) or failed."""
    from pipelines.backends.kubeflow_compile import GATE_COMPONENT

    results = {}
    names = [s.name for s in plan.components()]
    earlier = sorted((p for p in run_root.parent.iterdir() if p.is_dir() and p != run_root and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for name in names:
        task_dir = run_root / name
        report = task_dir / "report" / "report.json"
        if report.is_file():
            results[name] = {"status": "ran", "report": str(report)}
        elif name == GATE_COMPONENT and (task_dir / "executor_output.json").is_file():
            output = json.loads((task_dir / "executor_output.json").read_text())
            results[name] = {"status": f"ran: {output.get('parameterValues', {}).get('Output', '?')}"}
        elif task_dir.exists():
            results[name] = {"status": "failed"}
        elif name in plan.gated:
            results[name] = {"status": "skipped"}
        else:
            made = next((p / name / "report" / "report.json" for p in earlier
                         if (p / name / "report" / "report.json").is_file()), None)
            results[name] = {"status": "cached", "report": str(made)} if made else {"status": "not run"}
    return results


def print_kubeflow_plan(result: KubeflowResult, console: Any) -> None:
    from rich.table import Table

    plan = result.plan
    console.print(f"[bold]Kubeflow pipeline {plan.name}[/] (KFP v2) · spec {result.spec}", soft_wrap=True)
    table = Table()
    for col in ("component", "image", "inputs", "resources", "cache", "runs"):
        table.add_column(col, overflow="fold")
    for stage in plan.components():
        res = stage.resources
        resources = (f"{res.cpus:g} cpu, {res.memory_gb:g} GB" + (f", {res.gpus} gpu" if res.gpus else "")) if res else "-"
        wiring = plan.wiring.get(stage.name, {})
        inputs = ", ".join(f"{n}←{src}.{out}" for n, (src, out) in wiring.items()) or "-"
        when = "if the gate passes" if stage.name in plan.gated else "always"
        table.add_row(stage.name, stage.image.rsplit("/", 1)[-1], inputs, resources, "on" if stage.cache else "off", when)
    console.print(table)
    console.print("[bold]pipeline parameters[/]")
    for name, value in result.arguments.items():
        console.print(f"  {name} = {value!r}  ({plan.parameter_sources.get(name, '')})", markup=False)
    for note in plan.notes:
        console.print(f"note: {note}", markup=False)
    if result.schedule:
        console.print("[bold]recurring run[/] (kfp.Client.create_recurring_run; submitted with --kfp-host):")
        console.print(json.dumps(result.schedule, indent=2), markup=False, highlight=False)
    console.print("Katib is not used: the tune stage, when enabled, is one component whose trials run in its pod.",
                  markup=False)
