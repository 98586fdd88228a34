"""Pipeline definitions: what runs, in which order, with which resources — never where.

A pipeline is a small DAG of stages. Each stage names the step it runs (``python -m steps.<step>``),
where its inputs come from (``"<stage>.<output>"``), its validated parameters and its resources.
Backends (local, compose, SageMaker) execute or compile the same object.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from steps.common.gate import Gate, GateError
from steps.common.stage import Params, StageSpec
from steps.registry import get_stage


class PipelineError(ValueError):
    """A pipeline definition or configuration that cannot run; lists every problem at once."""

    def __init__(self, headline: str, problems: list[str]):
        self.problems = problems
        super().__init__(headline + "\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Resources:
    """What a stage needs, independent of where it runs (backends map it to instances or devices)."""

    cpus: float = 2
    memory_gb: float = 8
    gpus: int = 0
    instance_type: str = "ml.m5.xlarge"  # used by the SageMaker backend
    max_runtime_s: int = 24 * 3600


CPU = Resources()
# steps whose work changes the world (a new registered version, an endpoint update): an orchestrator's step
# cache never answers for them (the local backend's content-addressed cache does: same inputs, same version)
NEVER_CACHED_STEPS = ("register", "deploy")
GPU = Resources(cpus=4, memory_gb=16, gpus=1, instance_type="ml.g5.xlarge")


@dataclass(frozen=True)
class Stage:
    name: str
    step: str
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> "stage.output"
    params: dict[str, Any] = field(default_factory=dict)
    resources: Resources = CPU
    cache: bool = True

    @property
    def spec(self) -> StageSpec:
        return get_stage(self.step)

    def upstream(self) -> set[str]:
        return {ref.split(".", 1)[0] for ref in self.inputs.values()}


@dataclass(frozen=True)
class Pipeline:
    name: str
    task: str
    stages: tuple[Stage, ...]
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    # the one quality gate (the task's metrics and directions, the profile's thresholds); the register
    # stage's promotion and every backend's gate compile this object
    gate: Gate | None = None
    # stages the profile configures but switches off (``stages.tune.enabled: false``): not run by any
    # backend, yet their parameters are validated like the others' (a typo fails before any work)
    switched_off: tuple[Stage, ...] = ()

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"pipeline {self.name} has no stage {name!r}; stages: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def order(self) -> list[Stage]:
        """Stages in dependency order (stable: definition order among ready stages)."""
        done: set[str] = set()
        ordered: list[Stage] = []
        pending = list(self.stages)
        while pending:
            ready = [s for s in pending if s.upstream() <= done]
            if not ready:
                raise PipelineError(f"pipeline {self.name} has a cycle", [s.name for s in pending])
            for s in ready:
                ordered.append(s)
                done.add(s.name)
                pending.remove(s)
        return ordered

    def descendants(self, name: str) -> set[str]:
        found = {name}
        changed = True
        while changed:
            changed = False
            for s in self.stages:
                if s.name not in found and s.upstream() & found:
                    found.add(s.name)
                    changed = True
        return found

    def validated_params(self) -> dict[str, Params]:
        """Check the graph and every stage's parameters; raise one error listing all problems."""
        problems: list[str] = []
        names = self.names()
        for dup in {n for n in names if names.count(n) > 1}:
            problems.append(f"stage name {dup!r} is used twice")
        by_name = {s.name: s for s in self.stages}
        problems += self._section_problems(by_name)
        params: dict[str, Params] = {}
        for stage in (*self.stages, *self.switched_off):
            try:
                spec = stage.spec
            except KeyError as exc:
                problems.append(f"{stage.name}: {exc.args[0]}")
                continue
            for input_name in spec.inputs:
                if input_name not in stage.inputs and input_name not in spec.optional_inputs:
                    problems.append(f"{stage.name}: required input {input_name!r} is not wired")
            for input_name, ref in stage.inputs.items():
                src, _, out = ref.partition(".")
                if input_name not in spec.inputs:
                    problems.append(f"{stage.name}: step {stage.step} has no input {input_name!r}")
                elif src not in by_name:
                    problems.append(f"{stage.name}.{input_name}: no stage {src!r} (from {ref!r})")
                elif out not in by_name[src].spec.all_outputs:
                    problems.append(f"{stage.name}.{input_name}: stage {src!r} has no output {out!r} "
                                    f"(it has {', '.join(by_name[src].spec.all_outputs)})")
            try:
                model = spec.params(self.task)
                params[stage.name] = model.model_validate(stage.params)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(x) for x in err["loc"])
                    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
                        close = did_you_mean(loc, model.model_fields)
                        hint = (f"did you mean {stage.name}.{close}?" if close else
                                f"its parameters: python -m steps.{stage.step} --help --task {self.task}")
                        problems.append(f"stages.{stage.name}.{loc}: stage {stage.name!r} has no parameter {loc!r} "
                                        f"({hint})")
                    elif not loc:  # a check across parameters (e.g. tune's space against the train parameters)
                        problems.append(f"stages.{stage.name}: {err['msg'].removeprefix('Value error, ')}")
                    else:
                        problems.append(f"stages.{stage.name}.{loc}: {err['msg']} (got {err.get('input')!r})")
            except KeyError as exc:
                problems.append(f"{stage.name}: {exc.args[0]}")
        for stage in self.switched_off:
            params.pop(stage.name, None)
        if not problems:
            try:
                self.order()
            except PipelineError as exc:
                problems += [f"cycle through {p}" for p in exc.problems]
        if problems:
            raise PipelineError(f"pipeline {self.name!r} is not valid:", problems)
        return params

    def _section_problems(self, by_name: dict[str, Stage]) -> list[str]:
        """``stages.<name>`` sections of the configuration that no stage reads, with the closest valid names."""
        problems = []
        by_name = {**by_name, **{s.name: s for s in self.switched_off}}
        for section, values in (self.config.get("stages") or {}).items():
            if section in by_name:
                if not isinstance(values, dict):
                    problems.append(f"stages.{section}: expected a mapping of parameter names to values, "
                                    f"got {values!r}")
                continue
            close = did_you_mean(str(section), by_name)
            if close is None:
                problems.append(f"stages.{section}: pipeline {self.name!r} has no stage {section!r} "
                                f"(its stages: {', '.join(by_name)})")
                continue
            try:
                fields = by_name[close].spec.params(self.task).model_fields
            except KeyError:
                fields = {}
            for key in (values if isinstance(values, dict) else {}) or [None]:
                if key is None:
                    problems.append(f"stages.{section}: pipeline {self.name!r} has no stage {section!r} "
                                    f"(did you mean {close}?)")
                    continue
                field_name = key if key in fields else did_you_mean(str(key), fields)
                suggestion = f"{close}.{field_name}" if field_name else f"stage {close!r}"
                problems.append(f"stages.{section}.{key}: pipeline {self.name!r} has no stage {section!r} "
                                f"(did you mean {suggestion}?)")
        return problems


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The valid name closest to a misspelt one (difflib), or None when none is close."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def pipeline_gate(task: str, config: dict[str, Any]) -> Gate:
    """The task's gate with the profile's ``gate:`` thresholds applied; every problem listed at once."""
    from steps.tasks import get_task

    try:
        return get_task(task).gate.configured(config.get("gate"))
    except GateError as exc:
        raise PipelineError("the gate: section is not valid:", str(exc).splitlines()) from None


def standard_stages(task: str, config: dict[str, Any], *, gpu: Resources = GPU,
                    gate: Gate | None = None, tokenizer_stage: str = "tokenizer") -> tuple[Stage, ...]:
    """The stage chain every speech pipeline shares; a pipeline may add or replace stages."""
    gate = gate or pipeline_gate(task, config)
    tok = tokenizer_stage

    def params(stage: str) -> dict[str, Any]:
        values = stage_params(config, stage, task, "tokenizer" if stage == tok else None)
        if stage == "register":
            values["gate"] = gate.model_dump(mode="json")
        if stage == "tune":  # each trial starts from the train stage's values
            values["train"] = params("train")
        return values

    tune = tune_stage(config, params("tune"), gpu, tok)
    return (
        Stage("prepare", "prepare", params=params("prepare")),
        Stage(tok, "tokenizer", {"data": "prepare.data"}, params(tok)),
        *([tune] if tune_enabled(config) else []),
        Stage("train", "train", {"data": "prepare.data", "tokenizer": f"{tok}.tokenizer",
                                 **({"tune": "tune.best"} if tune_enabled(config) else {})},
              params("train"), resources=gpu),
        Stage("evaluate", "evaluate", {"data": "prepare.data", "model": "train.model"}, params("evaluate")),
        Stage("export", "export", {"data": "prepare.data", "model": "train.model"}, params("export")),
        Stage("register", "register",
              {"model": "train.model", "evaluation": "evaluate.report", "evaluation_files": "evaluate.evaluation",
               "export": "export.onnx",
               "data": "prepare.report", "training": "train.report", "artifacts": "train.artifacts",
               "dataset": "prepare.data", **({"tuning": "tune.trials"} if tune_enabled(config) else {})},
              params("register")),
        Stage("deploy", "deploy", {"model": "train.model", "data": "prepare.data", "registration": "register.report"},
              params("deploy"), cache=True),
    )


def tune_enabled(config: dict[str, Any]) -> bool:
    """``stages.tune.enabled: true`` (``--set tune.enabled=true``) switches the tune stage on."""
    section = (config.get("stages") or {}).get("tune")
    return isinstance(section, dict) and section.get("enabled") is True


def tune_stage(config: dict[str, Any], params: dict[str, Any], gpu: Resources = GPU,
               tokenizer_stage: str = "tokenizer") -> Stage:
    """The search before train (``steps/tune.py``); its best values reach train as input ``tune``."""
    return Stage("tune", "tune", {"data": "prepare.data", "tokenizer": f"{tokenizer_stage}.tokenizer"}, params,
                 resources=gpu)


def switched_off_stages(task: str, config: dict[str, Any], tokenizer_stage: str = "tokenizer") -> tuple[Stage, ...]:
    """Stages the profile configures but leaves off, validated all the same (see ``Pipeline.switched_off``)."""
    if tune_enabled(config) or "tune" not in (config.get("stages") or {}):
        return ()
    values = stage_params(config, "tune", task)
    values["train"] = stage_params(config, "train", task)
    return (tune_stage(config, values, tokenizer_stage=tokenizer_stage),)


def standard_pipeline(name: str, task: str, config: dict[str, Any], tokenizer_stage: str = "tokenizer") -> Pipeline:
    """A pipeline made of the standard stage chain for ``task``: what most pipelines are.

    ``tokenizer_stage``: the name of the stage running the ``tokenizer`` step (and of its config section),
    for a task whose input representation is not a tokenizer (voice conversion: ``speakers``)."""
    gate = pipeline_gate(task, config)
    return Pipeline(name=name, task=task, stages=standard_stages(task, config, gate=gate, tokenizer_stage=tokenizer_stage),
                    gate=gate, description=config.get("description", ""), config=config,
                    switched_off=switched_off_stages(task, config, tokenizer_stage))


def stage_params(config: dict[str, Any], stage: str, task: str, step: str | None = None) -> dict[str, Any]:
    """A stage's parameters: its own section plus the ``common`` keys its parameter model accepts
    (``step``: the step the stage runs, when its name differs)."""
    section = (config.get("stages") or {}).get(stage)
    own = dict(section) if isinstance(section, dict) else {}
    common = config.get("common") or {}
    try:
        fields = get_stage(step or stage).params(task).model_fields
    except KeyError:
        return own
    for key, value in common.items():
        if key in fields and key not in own:
            own[key] = value
    return own
