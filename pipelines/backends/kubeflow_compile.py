"""The pipeline definition as a Kubeflow Pipelines (KFP v2) pipeline, built with ``kfp``'s own DSL.

One description per stage (``StagePlan``) is made from the definition; two kinds of KFP component are
made from it, so the cluster and the local run cannot drift:

* **container components** (the spec a cluster runs): the stage's image and its thin entrypoint,
  ``python -m steps.<step> --task T --params-json {...}``, with every input and output a KFP artifact
  whose path reaches the stage on its command line (``--input-path NAME PATH``, ``--output-path NAME
  PATH``: the stage contract, ``steps/common/contract.py``);
* **lightweight Python components** for ``kfp.local``'s ``SubprocessRunner`` (which runs nothing else):
  each runs the same argv with this interpreter in a subprocess.

The rest, as the SageMaker backend compiles it:

* resources from the definition: CPU and memory limits; ``train``'s accelerator (``nvidia.com/gpu``);
* KFP's caching, on for the stages the definition marks cacheable (register and deploy never); the
  image tag (the git commit by default) is in each component, so new code is a new cache key;
* **the quality gate**: a ``quality-gate`` component (``python -m steps.common.gate_check``, in the
  evaluate image) reads the evaluate report and applies the pipeline's gate, each metric in its
  direction, against ``max_<metric>`` (lower is better) / ``min_<metric>`` (higher is better) pipeline
  parameters; register, deploy and what follows run inside ``dsl.If(gate == "pass")``. (A condition on
  the evaluate task's own metric outputs would read more directly, but ``kfp.local`` 2.17 cannot resolve
  a named task output in a condition, and one gate object evaluated in one place is what every backend
  does.) The relative thresholds need the champion: the register stage applies them;
* the tune stage, when enabled, is one more container component running ``python -m steps.tune`` in the
  train image: its trials run inside that pod. Katib is not used;
* per-run values are pipeline parameters: the gate limits, and the stage parameters named in
  ``kubeflow.parameters`` (default ``train.epochs``, ``train.lr``), passed as ``--<field> VALUE`` after
  the JSON document, which they override.
"""

from __future__ import annotations

import contextlib
import inspect
import keyword
import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines import images
from pipelines.definition import NEVER_CACHED_STEPS, Pipeline, PipelineError, Resources
from steps.common.contract import INPUT_PATH_OPTION, OUTPUT_PATH_OPTION, REPORT_OUTPUT
from steps.common.gate import Gate
from steps.common.stage import params_args
from steps.tasks import get_task

REPO_ROOT = Path(__file__).resolve().parents[2]
GATE_COMPONENT = "quality-gate"
GATE_PASS = "pass"
# the gate's one output: a container component's output parameter may not be called "Output", so it is
# "passed" there; a lightweight component returns it (KFP calls that "Output"); ``task.output`` is either
GATE_RESULT = "passed"
# a pod's writable scratch for what a stage keeps outside its artifacts (checkpoints, the failure file)
CONTAINER_ML_ROOT = "/tmp/speechops-ml"
ACCELERATOR = "nvidia.com/gpu"


@dataclass(frozen=True)
class Slot:
    """A place in a command that KFP fills at run time: an artifact path, a parameter, the gate's result."""

    kind: str  # "input" | "output" | "param" | "result"
    name: str


@dataclass
class StagePlan:
    """One KFP component: what it runs, its artifacts and parameters, and the task's settings."""

    name: str
    image: str
    argv: list[str | Slot]  # starts with "python", "-m", module
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    params: dict[str, type] = field(default_factory=dict)  # input parameters, from pipeline parameters
    returns_result: bool = False  # the gate: a string output, "pass" or "fail"
    resources: Resources | None = None
    cache: bool = True
    env: dict[str, str] = field(default_factory=dict)

    @property
    def function_name(self) -> str:
        return identifier(self.name)


@dataclass
class KubeflowPlan:
    """Everything the compiled pipeline holds, readable without kfp (the plan a dry run prints)."""

    name: str
    stages: list[StagePlan]
    parameters: dict[str, Any]  # pipeline parameter -> default
    parameter_sources: dict[str, str]  # pipeline parameter -> config key
    wiring: dict[str, dict[str, tuple[str, str]]]  # component -> input -> (component, output)
    gated: list[str]  # components inside the gate's condition
    gate: StagePlan | None
    notes: list[str] = field(default_factory=list)

    def components(self) -> list[StagePlan]:
        """Every component in the order it runs: the ungated stages, the gate, the gated stages."""
        ungated = [s for s in self.stages if s.name not in self.gated]
        return [*ungated, *([self.gate] if self.gate else []), *(s for s in self.stages if s.name in self.gated)]

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.components() if s.name == name)


def identifier(name: str) -> str:
    """A Python identifier (KFP's component and parameter names are function and argument names)."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"s_{ident}"
    return ident


def kfp_name(pipeline: Pipeline, override: str | None = None) -> str:
    """The KFP pipeline name: lowercase letters, digits and dashes."""
    return override or f"speechops-{pipeline.name}".replace("_", "-").lower()


def gate_parameter(metric: Any) -> str:
    return f"{'max' if metric.lower_is_better else 'min'}_{identifier(metric.name)}"


def plan_pipeline(pipeline: Pipeline, params: dict[str, dict[str, Any]], registry: str, tag: str,
                  exposed: list[str], name: str | None = None, git_commit: str = "unknown") -> KubeflowPlan:
    """Describe the KFP pipeline of ``pipeline`` with its validated stage parameters (nothing imported from kfp)."""
    parameters: dict[str, Any] = {}
    sources: dict[str, str] = {}
    per_stage: dict[str, dict[str, str]] = {}
    problems = []
    for key in exposed:
        stage_name, _, field_name = key.partition(".")
        if stage_name not in params or field_name not in params[stage_name]:
            problems.append(f"kubeflow.parameters: {key!r} is not a parameter of a stage that runs "
                            f"(stages: {', '.join(params)})")
            continue
        pname = identifier(f"{stage_name}_{field_name}")
        parameters[pname] = params[stage_name][field_name]
        sources[pname] = f"stages.{key}"
        per_stage.setdefault(stage_name, {})[field_name] = pname
    bad = [k for k, v in parameters.items() if not isinstance(v, (int, float, str)) or isinstance(v, bool)]
    problems += [f"kubeflow.parameters: {sources[k]} = {parameters[k]!r} is not a number or a string" for k in bad]
    if problems:
        raise PipelineError("invalid kubeflow settings:", problems)

    env = {"SPEECHOPS_PIPELINE": pipeline.name, "SPEECHOPS_GIT_COMMIT": git_commit,
           "SPEECHOPS_ML_ROOT": CONTAINER_ML_ROOT}
    stages, wiring = [], {}
    for stage in pipeline.order():
        spec = stage.spec
        argv: list[str | Slot] = ["python", "-m", f"steps.{stage.step}", "--task", pipeline.task,
                                  *params_args(params[stage.name])]
        for field_name, pname in per_stage.get(stage.name, {}).items():
            argv += [f"--{field_name}", Slot("param", pname)]
        inputs = [n for n in spec.inputs if n in stage.inputs]
        for input_name in inputs:
            argv += [INPUT_PATH_OPTION, input_name, Slot("input", input_name)]
        outputs = list(spec.all_outputs)
        for output in outputs:
            argv += [OUTPUT_PATH_OPTION, output, Slot("output", output)]
        stages.append(StagePlan(stage.name, images.image_uri(stage.step, registry, tag), argv, inputs, outputs,
                                {pname: type(parameters[pname]) for pname in per_stage.get(stage.name, {}).values()},
                                resources=stage.resources, cache=stage.cache and stage.step not in NEVER_CACHED_STEPS,
                                env=dict(env)))
        wiring[stage.name] = {n: tuple(stage.inputs[n].split(".", 1)) for n in inputs}

    gate, gated, notes = _gate(pipeline, registry, tag, parameters, sources, env)
    if gate is not None:
        evaluate = next(s for s in pipeline.order() if s.step == "evaluate")
        wiring[gate.name] = {"evaluation": (evaluate.name, REPORT_OUTPUT)}
    return KubeflowPlan(kfp_name(pipeline, name), stages, parameters, sources, wiring, gated, gate, notes)


def _gate(pipeline: Pipeline, registry: str, tag: str, parameters: dict, sources: dict,
          env: dict[str, str]) -> tuple[StagePlan | None, list[str], list[str]]:
    gate: Gate = pipeline.gate or get_task(pipeline.task).gate
    evaluate = next((s for s in pipeline.order() if s.step == "evaluate"), None)
    registers = [s for s in pipeline.order() if s.step == "register"]
    gated: set[str] = set()
    for stage in registers:
        gated |= pipeline.descendants(stage.name)
    limited = [m for m in gate.metrics if m.limit is not None]
    if evaluate is None or not registers or not limited:
        return None, [], ["no quality gate: the pipeline needs an evaluate and a register stage and a gate limit"]
    if evaluate.name in gated:
        raise PipelineError("the quality gate cannot follow the stage it reads", [evaluate.name])
    argv: list[str | Slot] = ["python", "-m", "steps.common.gate_check", "--gate-json", gate.model_dump_json(),
                              "--report", Slot("input", "evaluation")]
    params: dict[str, type] = {}
    for metric in limited:
        pname = gate_parameter(metric)
        parameters[pname] = float(metric.limit)
        sources[pname] = f"gate.{metric.name}.limit"
        params[pname] = float
        argv += ["--limit", metric.name, Slot("param", pname)]
    argv += ["--result", Slot("result", GATE_RESULT)]
    plan = StagePlan(GATE_COMPONENT, images.image_uri(evaluate.step, registry, tag), argv, ["evaluation"], [],
                     params, returns_result=True, resources=Resources(cpus=1, memory_gb=1), cache=False,
                     env=dict(env))
    order = [s.name for s in pipeline.order() if s.name in gated]
    notes = [f"quality gate: {', '.join(f'{m.name} {m.op} {gate_parameter(m)}' for m in limited)}; "
             f"{', '.join(order)} run only when it holds"]
    return plan, order, notes


# -- kfp components ------------------------------------------------------------------------------------


def container_component(plan: StagePlan) -> Callable:
    """A KFP container component running ``plan``'s command in its image."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    P = inspect.Parameter
    signature = [P(n, P.POSITIONAL_OR_KEYWORD, annotation=Input[Artifact]) for n in plan.inputs]
    signature += [P(n, P.POSITIONAL_OR_KEYWORD, annotation=Output[Artifact]) for n in plan.outputs]
    signature += [P(n, P.POSITIONAL_OR_KEYWORD, annotation=t) for n, t in plan.params.items()]
    if plan.returns_result:
        signature.append(P(GATE_RESULT, P.POSITIONAL_OR_KEYWORD, annotation=dsl.OutputPath(str)))
    names = [p.name for p in signature]

    def component(*values: Any):
        bound = dict(zip(names, values))

        def fill(token: str | Slot) -> Any:
            if not isinstance(token, Slot):
                return token
            if token.kind in ("input", "output"):
                return bound[token.name].path
            return bound[token.name]  # a parameter or the result's OutputPath placeholder

        argv = [fill(t) for t in plan.argv]
        # the job images' entrypoint, which a command replaces: it hands the output paths to uid 1000 and drops to it
        return dsl.ContainerSpec(image=plan.image, command=[images.JOB_ENTRYPOINT, *argv[:3]], args=argv[3:])

    component.__signature__ = inspect.Signature(signature)
    component.__name__ = component.__qualname__ = plan.function_name
    return dsl.container_component(component)


def _token_source(token: str | Slot) -> str:
    if not isinstance(token, Slot):
        return repr(token)
    if token.kind in ("input", "output"):
        return f"{token.name}.path"
    if token.kind == "result":
        return "result_path"
    return f"str({token.name})"


def local_component(plan: StagePlan, env: dict[str, str]) -> Callable:
    """A lightweight Python component running ``plan``'s command with this interpreter (``kfp.local``'s
    ``SubprocessRunner`` runs only those). Its source is generated, so it is registered with ``linecache``
    for KFP to read back."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    args = [f"{n}: Input[Artifact]" for n in plan.inputs] + [f"{n}: Output[Artifact]" for n in plan.outputs]
    args += [f"{n}: {t.__name__}" for n, t in plan.params.items()]
    argv = ", ".join(_token_source(t) for t in plan.argv[1:])
    source = f'''def {plan.function_name}({", ".join(args)}){" -> str" if plan.returns_result else ""}:
    import os
    import subprocess
    import sys
    import tempfile
    result_path = os.path.join(tempfile.mkdtemp(prefix="speechops-kfp-"), "result")
    argv = [sys.executable, {argv}]
    env = dict(os.environ, **{env!r})
    env["PYTHONPATH"] = os.pathsep.join(p for p in ({str(REPO_ROOT)!r}, env.get("PYTHONPATH")) if p)
    env["SPEECHOPS_ML_ROOT"] = tempfile.mkdtemp(prefix="speechops-ml-")
    done = subprocess.run(argv, env=env, cwd={str(REPO_ROOT)!r})
    if done.returncode != 0:
        raise RuntimeError("stage {plan.name} failed with exit status %d" % done.returncode)
    {"return open(result_path).read().strip()" if plan.returns_result else "return None"}
'''
    filename = f"<speechops-kfp-{plan.function_name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"Input": Input, "Output": Output, "Artifact": Artifact}
    # dont_inherit: this module's "from __future__ import annotations" would turn the annotations KFP reads into strings
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 -- our own generated source
    return dsl.component(namespace[plan.function_name], base_image="python:3.11", install_kfp_package=False)


def build_pipeline(plan: KubeflowPlan, make: Callable[[StagePlan], Callable], description: str = "",
                   resources: bool = True, cache: bool = True) -> Callable:
    """The ``@dsl.pipeline`` function: stages in order, the gated ones inside the gate's condition."""
    from kfp import dsl

    components = {s.name: make(s) for s in plan.components()}
    P = inspect.Parameter
    signature = [P(n, P.POSITIONAL_OR_KEYWORD, default=v, annotation=type(v)) for n, v in plan.parameters.items()]
    names = list(plan.parameters)

    def body(*values: Any) -> None:  # KFP calls it with the parameters' channels, in signature order
        arguments = dict(zip(names, values))
        tasks: dict[str, Any] = {}

        def add(stage: StagePlan) -> None:
            kwargs = {n: tasks[src].outputs[out] for n, (src, out) in plan.wiring[stage.name].items()}
            kwargs.update({n: arguments[n] for n in stage.params})
            task = components[stage.name](**kwargs)
            task.set_display_name(stage.name)
            task.set_caching_options(cache and stage.cache)
            for key, value in stage.env.items():
                task.set_env_variable(key, value)
            if resources and stage.resources is not None:
                task.set_cpu_limit(f"{stage.resources.cpus:g}")
                task.set_memory_limit(f"{stage.resources.memory_gb:g}G")
                if stage.resources.gpus:
                    task.set_accelerator_type(ACCELERATOR).set_accelerator_limit(stage.resources.gpus)
            tasks[stage.name] = task

        with contextlib.ExitStack() as stack:
            inside = False
            for stage in plan.components():  # the gated stages come last, inside the gate's condition
                if stage.name in plan.gated and not inside:
                    stack.enter_context(dsl.If(tasks[GATE_COMPONENT].output == GATE_PASS, name="gate-passed"))
                    inside = True
                add(stage)

    body.__signature__ = inspect.Signature(signature)
    body.__name__ = identifier(plan.name)
    return dsl.pipeline(name=plan.name, description=description or None)(body)


def compile_spec(plan: KubeflowPlan, path: Path, description: str = "") -> Path:
    """Write the KFP v2 pipeline spec (IR YAML) of the container components with KFP's compiler."""
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(plan, container_component, description), str(path))
    return path
