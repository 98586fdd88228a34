"""What every backend offers over an already validated pipeline: ``plan`` it or ``run`` it.

The CLI builds and validates the pipeline once (``pipelines.registry.get_pipeline``), picks the
backend from ``--backend`` (``backend_from_args``) and calls ``plan`` (``--dry-run``) or ``run``, then
has the backend print what it did. A backend never rebuilds the pipeline and never imports the CLI;
where runs live comes from ``pipelines.workspace``.

  backend     plan                                              run
  local       stage commands, cache hits (nothing runs)         each stage as a subprocess here
  compose     + the generated compose file, images checked      each stage in its container
  sagemaker   the definition JSON and the readable plan         upsert + start (or schedule) on AWS
  kubeflow    the KFP v2 spec (IR YAML) and the readable plan     kfp.local here, or submit to a KFP host
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from typing import Any

from pipelines.definition import Pipeline, PipelineError
from pipelines.workspace import Workspace

BACKENDS = ("local", "compose", "sagemaker", "kubeflow")


class BackendError(RuntimeError):
    """A failure outside the pipeline (a cloud API, a container engine) with what to do about it."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        self.hint = hint
        self.exit_code = exit_code
        super().__init__(message)


class Backend(ABC):
    """Where a validated pipeline runs. ``selection`` is ``run_id``, ``from_stage`` and ``only_stage``."""

    name: str

    def config_overrides(self, workspace: Workspace, overrides: list[str]) -> list[str]:
        """The ``--set`` overrides to build the pipeline with (a backend may add defaults of its own)."""
        return list(overrides)

    @abstractmethod
    def plan(self, pipeline: Pipeline, **selection: Any) -> Any:
        """What ``run`` would do; nothing runs and nothing is submitted."""

    @abstractmethod
    def run(self, pipeline: Pipeline, **selection: Any) -> Any:
        """Run (or submit) the pipeline."""

    @abstractmethod
    def print_plan(self, pipeline: Pipeline, plan: Any) -> int:
        """Show a plan; the exit code."""

    @abstractmethod
    def print_result(self, pipeline: Pipeline, result: Any) -> int:
        """Show what a run did; the exit code."""


def backend_from_args(args: argparse.Namespace, workspace: Workspace) -> Backend:
    """The backend ``run``'s options ask for, configured from them (options of another backend are errors)."""
    from pipelines.backends import kubeflow
    from pipelines.backends.sagemaker import options_given

    given = options_given(args)
    if args.backend == "kubeflow":  # a schedule and per-run parameters mean the same there
        given = [option for option in given if option not in ("--schedule", "--param")]
    if args.backend != "sagemaker" and given:
        raise PipelineError("invalid options for --backend sagemaker:",
                            [f"{', '.join(given)} need --backend sagemaker"])
    kfp_given = kubeflow.options_given(args)
    if args.backend != "kubeflow" and kfp_given:
        raise PipelineError("invalid options for --backend kubeflow:", [f"{', '.join(kfp_given)} need --backend kubeflow"])
    if args.backend == "kubeflow":
        return kubeflow.KubeflowBackend.from_args(args, workspace)
    if args.backend == "sagemaker":
        from pipelines.backends.sagemaker import SageMakerBackend

        return SageMakerBackend.from_args(args, workspace)
    if args.backend == "compose":
        from pipelines.backends.compose import ComposeBackend

        return ComposeBackend.from_args(args, workspace)
    from pipelines.backends.local import LocalBackend

    return LocalBackend.from_args(args, workspace)
