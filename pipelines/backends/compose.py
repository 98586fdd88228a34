"""The compose backend: every stage in its own container, through ``docker compose`` or ``podman-compose``.

The compose file is generated from the pipeline definition (one source of truth): one service per
stage running that stage's image (``pipelines/images.py``) with its entrypoint, its parameters as the
command, and its inputs and outputs mounted at SageMaker's container paths
(``steps/common/contract.py``), so what passes here runs unchanged on SageMaker. ``depends_on`` with
``service_completed_successfully`` chains the stages; ``train`` reserves a GPU; the ``serve`` service
(profile ``serve``) runs the serving image on the trained model with a health check and replicas.

Host folders come from ``${SPEECHOPS_RUN_DIR}``: ``<run dir>/<stage>/<output>``, as in the local
backend. Run the file on its own (``docker compose -f infra/compose/whisper_intensity.yaml up``) or
through ``run.py --backend compose``, which runs one service at a time with ``run --no-deps`` so it
keeps the local backend's cache, run folders and summary; its cache keys include the image IDs.
That is also the way to run it with podman: podman-compose 1.6 on podman 4.3 was seen here starting
a stage while the stage it depends on was only created (``podman wait --condition=stopped``
returns at once for a created container), so its ``up`` does not honour
``service_completed_successfully``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pipelines import images
from pipelines.backends.local import LocalBackend, StageResult, git_commit
from pipelines.containers import Engine, EngineError
from pipelines.definition import Pipeline, PipelineError, Stage
from pipelines.workspace import Workspace
from steps.common import contract
from steps.common.stage import params_args

RUN_DIR_VAR = "SPEECHOPS_RUN_DIR"
SERVE_SERVICE = "serve"
SERVE_PORT = 8080
CONTAINER_OUTPUT = "/opt/ml/output"  # where a stage's failure file lands (SageMaker's convention)
DEFAULT_SERVE_REPLICAS = 2


def _run_dir_default(pipeline: Pipeline) -> str:
    return f"../../runs/{pipeline.name}/compose"


def host_path(pipeline: Pipeline, *parts: str) -> str:
    """``${SPEECHOPS_RUN_DIR:-./runs/<pipeline>/compose}/<parts>``: a host folder of the run."""
    return "/".join([f"${{{RUN_DIR_VAR}:-{_run_dir_default(pipeline)}}}", *parts])


def shared_host_paths(params: dict[str, Any]) -> list[str]:
    """Folders a stage's parameters name (an MLflow sqlite store). A host folder is mounted at the same
    path, so the artifact URIs MLflow records inside the container stay valid on the host."""
    paths = []
    for value in params.values():
        if isinstance(value, str) and value.startswith("sqlite:///"):
            paths.append(str(Path(value.removeprefix("sqlite:///")).parent))
    return paths


def shared_volumes(pipeline: Pipeline, params: dict[str, Any]) -> list[str]:
    volumes = []
    for path in shared_host_paths(params):
        if path.startswith(contract.DEFAULT_ML_ROOT + "/"):  # a container path: keep it in the run folder
            volumes.append(f"{host_path(pipeline, Path(path).name)}:{path}")
        else:
            volumes.append(f"{path}:{path}")
    return volumes


def stage_service(pipeline: Pipeline, stage: Stage, params: dict[str, Any], registry: str, tag: str,
                  gpu: bool, cpus: float | None = None) -> dict[str, Any]:
    spec = stage.spec
    volumes = [f"{host_path(pipeline, stage.name, out)}:{contract.container_output_path(spec.kind, out)}"
               for out in spec.all_outputs]
    volumes.append(f"{host_path(pipeline, stage.name, 'container-output')}:{CONTAINER_OUTPUT}")
    if spec.kind == "training":
        volumes.append(f"{host_path(pipeline, stage.name, 'checkpoints')}:"
                       f"{contract.container_output_path('training', 'checkpoints')}")
    for name, ref in stage.inputs.items():
        src, _, out = ref.partition(".")
        volumes.append(f"{host_path(pipeline, src, out)}:{contract.container_input_path(spec.kind, name)}:ro")
    volumes += shared_volumes(pipeline, params)
    resources = stage.resources
    limits = {"cpus": str(min(resources.cpus, cpus) if cpus else resources.cpus),
              "memory": f"{int(resources.memory_gb * 1024)}M"}
    deploy: dict[str, Any] = {"resources": {"limits": limits}}
    if resources.gpus and gpu:
        deploy["resources"]["reservations"] = {
            "devices": [{"driver": "nvidia", "count": resources.gpus, "capabilities": ["gpu"]}]}
    service: dict[str, Any] = {
        "image": images.image_uri(stage.step, registry, tag),
        # the validated parameters as one JSON document; "$$" is compose's escape of a literal "$"
        "command": ["--task", pipeline.task, *(arg.replace("$", "$$") for arg in params_args(params))],
        "user": "${SPEECHOPS_UID:-1000}:${SPEECHOPS_GID:-1000}",
        "environment": {
            "SPEECHOPS_PIPELINE": pipeline.name,
            "SPEECHOPS_RUN_ID": "${SPEECHOPS_RUN_ID:-compose}",
            "SPEECHOPS_GIT_COMMIT": "${SPEECHOPS_GIT_COMMIT:-unknown}",
        },
        "volumes": volumes,
        "deploy": deploy,
    }
    if stage.inputs:
        service["depends_on"] = {src: {"condition": "service_completed_successfully"}
                                 for src in sorted(stage.upstream())}
    return service


def serve_service(pipeline: Pipeline, registry: str, tag: str, replicas: int) -> dict[str, Any]:
    model_source = next((s for s in pipeline.order() if "model" in s.spec.outputs and s.spec.kind == "training"), None)
    if model_source is None:
        raise PipelineError(f"pipeline {pipeline.name} has no training stage to serve", [])
    after = [s.name for s in pipeline.order() if s.step == "register"] or [model_source.name]
    return {
        "image": images.image_uri(images.SERVE_IMAGE, registry, tag),
        "profiles": ["serve"],
        "user": "${SPEECHOPS_UID:-1000}:${SPEECHOPS_GID:-1000}",
        "volumes": [f"{host_path(pipeline, model_source.name, 'model')}:/opt/ml/model:ro"],
        "ports": [str(SERVE_PORT)],  # a free host port per replica: `compose port serve 8080` tells which
        "healthcheck": {
            "test": ["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{SERVE_PORT}/ping', timeout=4)"],
            "interval": "10s", "timeout": "5s", "retries": 3, "start_period": "120s",
        },
        "deploy": {"mode": "replicated", "replicas": replicas, "resources": {"limits": {"cpus": "1", "memory": "4096M"}}},
        "depends_on": {name: {"condition": "service_completed_successfully"} for name in after},
    }


def compose_document(pipeline: Pipeline, params: dict[str, dict[str, Any]], registry: str = images.LOCAL_REGISTRY,
                     tag: str = "latest", gpu: bool = True, cpus: float | None = None) -> dict[str, Any]:
    """The compose file of ``pipeline`` with its resolved stage parameters."""
    replicas = int((pipeline.config.get("compose") or {}).get("serve_replicas", DEFAULT_SERVE_REPLICAS))
    services = {stage.name: stage_service(pipeline, stage, params[stage.name], registry, tag, gpu, cpus)
                for stage in pipeline.order()}
    services[SERVE_SERVICE] = serve_service(pipeline, registry, tag, replicas)
    return {"name": f"speechops-{pipeline.name.replace('_', '-')}", "services": services}


def render(document: dict[str, Any], pipeline: Pipeline) -> str:
    header = (f"# Generated from the pipeline definition of {pipeline.name} by pipelines/backends/compose.py;\n"
              "# do not edit: change the pipeline or its profile, then\n"
              f"#   python -m pipelines.backends.compose --pipeline {pipeline.name} --write\n"
              f"# Run it all:   export SPEECHOPS_RUN_DIR=$PWD/runs/{pipeline.name}/compose SPEECHOPS_UID=$(id -u) "
              "SPEECHOPS_GID=$(id -g)\n"
              "#               mkdir -p $SPEECHOPS_RUN_DIR && docker compose -f <this file> up\n"
              "#   (docker compose starts each stage when its inputs' stages completed; podman-compose 1.x on\n"
              "#   podman 4.x may start a stage before then, so with podman use run.py --backend compose,\n"
              "#   which runs the services one at a time: `podman-compose run --rm --no-deps <stage>`)\n"
              "# Serve after:  docker compose -f <this file> --profile serve up -d serve   (or podman-compose)\n")
    return header + yaml.safe_dump(document, sort_keys=False, width=120)


def validate_document(document: dict[str, Any]) -> list[str]:
    """Structural checks a compose tool would also make (used when none is installed)."""
    problems = []
    services = document.get("services") or {}
    for name, service in services.items():
        if not service.get("image"):
            problems.append(f"service {name} has no image")
        for dep in service.get("depends_on", {}):
            if dep not in services:
                problems.append(f"service {name} depends on unknown service {dep}")
        for volume in service.get("volumes", []):
            parts = re.sub(r"\$\{[^}]*\}", "/host", volume).split(":")
            if len(parts) not in (2, 3) or not parts[1].startswith("/"):
                problems.append(f"service {name}: volume {volume!r} is not host:/container[:ro]")
    return problems


class ComposeBackend(LocalBackend):
    """The local backend's orchestration, cache and summary; each stage runs as its compose service."""

    name = "compose"

    def __init__(self, runs_dir: Path | Workspace, engine: Engine | None, echo: bool = True,
                 registry: str = images.LOCAL_REGISTRY, tag: str = "latest", gpu: str = "auto"):
        super().__init__(runs_dir, echo)
        self.engine = engine
        self.registry, self.tag = registry, tag
        self.gpu = _gpu_present() if gpu == "auto" else gpu == "on"
        self.compose_file: Path | None = None
        self.image_ids: dict[str, str] = {}
        self.notes: list[str] = []

    @classmethod
    def from_args(cls, args: Any, workspace: Workspace) -> ComposeBackend:
        from pipelines.containers import detect

        try:
            engine = detect(args.engine)
        except EngineError:
            if not args.dry_run:
                raise
            engine = None  # a dry run still prints the plan and the compose file
        return cls(workspace, engine, echo=not args.quiet and not args.dry_run, registry=args.image_registry,
                   tag=args.image_tag, gpu=args.gpu)

    # -- the compose file ----------------------------------------------------------------------
    def document(self, pipeline: Pipeline) -> dict[str, Any]:
        params = {name: p.model_dump(mode="json") for name, p in pipeline.validated_params().items()}
        return compose_document(pipeline, params, self.registry, self.tag, self.gpu, float(os.cpu_count() or 1))

    def compose_args(self, *args: str) -> list[str]:
        assert self.compose_file is not None
        tool = self.engine.compose_command() if self.engine else ["docker", "compose"]
        return [*tool, "-f", str(self.compose_file), *args]

    def stage_command(self, pipeline: Pipeline, stage: Stage, params: dict[str, Any]) -> list[str]:
        if self.compose_file is None:
            return super().stage_command(pipeline, stage, params)
        return self.compose_args("run", "--rm", "--no-deps", "-T", stage.name)

    def key_inputs(self, pipeline: Pipeline, stage: Stage, hashes: dict[str, str] | None) -> dict[str, str] | None:
        """Cache keys include the image: a rebuilt image re-runs its stage, and local runs are not reused."""
        if hashes is None:
            return None
        return {**hashes, "image": self.image_ids.get(images.image_for(stage.step), "unknown")}

    # -- running --------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline, run_id: str | None = None, from_stage: str | None = None,
            only_stage: str | None = None, dry_run: bool = False):
        from datetime import datetime, timezone

        run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = self.workspace.run_dir(pipeline.name, run_id)
        document = self.document(pipeline)
        problems = validate_document(document)
        if problems:
            raise PipelineError("the generated compose file is not valid:", problems)
        target = run_dir / "compose.yaml"
        if dry_run:
            target = self.runs_dir / pipeline.name / ".compose-plan.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(document, pipeline))
        self.compose_file = target
        self.check_images(pipeline, required=not dry_run)
        if self.engine and self.engine.compose:
            self._validate_with_tool(run_dir)
        elif not dry_run:
            raise EngineError("the compose backend needs a compose tool: pip install podman-compose (with podman) "
                              "or the docker compose plugin")
        return super().run(pipeline, run_id, from_stage, only_stage, dry_run)

    def check_images(self, pipeline: Pipeline, required: bool) -> None:
        wanted = {image: images.image_uri(image, self.registry, self.tag)
                  for image in sorted({images.image_for(s.step) for s in pipeline.stages} | {images.SERVE_IMAGE})}
        if self.engine is None:
            self.notes.append("no container engine here: image presence not checked")
            return
        missing = []
        for image, uri in wanted.items():
            probe = subprocess.run(self.engine.command("image", "inspect", "--format", "{{.Id}}", uri),
                                   capture_output=True, text=True, timeout=60)
            if probe.returncode != 0:
                missing.append(image)
                continue
            self.image_ids[image] = probe.stdout.strip()
        if missing:
            hint = (f"build them: python containers/build.py --registry {self.registry} --tag {self.tag} "
                    + " ".join(f"--only {image}" for image in missing))
            uris = [wanted[image] for image in missing]
            if required:
                raise PipelineError("images missing for the compose backend:", [*uris, hint])
            self.notes.append("images missing: " + ", ".join(uris) + f" ({hint})")
        else:
            self.notes.append(f"all {len(wanted)} images present ({self.engine.name})")

    def _validate_with_tool(self, run_dir: Path) -> None:
        env = self._compose_env(run_dir)
        check = subprocess.run(self.compose_args("config"), capture_output=True, text=True, env=env, timeout=120)
        if check.returncode != 0:
            raise PipelineError("the compose tool rejected the generated file:",
                                (check.stderr or check.stdout).strip().splitlines()[-10:])
        self.notes.append(f"compose file valid ({' '.join(self.engine.compose)} config)")

    def _compose_env(self, run_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        # containers run as the caller (files on the host stay theirs), or as the image's user for root
        uid, gid = (os.getuid(), os.getgid()) if hasattr(os, "getuid") else (0, 0)
        if uid == 0:
            uid = gid = CONTAINER_UID
        env.update({RUN_DIR_VAR: str(run_dir), "SPEECHOPS_RUN_ID": run_dir.name,
                    "SPEECHOPS_UID": str(uid), "SPEECHOPS_GID": str(gid)})
        return env

    def _environment(self, pipeline: Pipeline, stage: Stage, key: str, results: dict[str, StageResult],
                     staging: Path, stage_dir: Path, run_dir: Path) -> dict[str, str]:
        """Point the run folder's ``<stage>/<output>`` at the staging folders, then hand compose the run dir."""
        env = self._compose_env(run_dir)
        env.setdefault("SPEECHOPS_GIT_COMMIT", git_commit())
        mounts: list[Path] = []
        for output in stage.spec.all_outputs:
            (staging / output).mkdir(parents=True, exist_ok=True)
            _point(stage_dir / output, staging / output)
            mounts.append(staging / output)
        container_output = stage_dir / "container-output"
        if container_output.exists():
            shutil.rmtree(container_output)
        container_output.mkdir(parents=True)
        mounts.append(container_output)
        if stage.spec.kind == "training":
            checkpoints = self.checkpoints / f"{stage.name}-{key}"
            checkpoints.mkdir(parents=True, exist_ok=True)
            _point(stage_dir / "checkpoints", checkpoints)
            mounts.append(checkpoints)
        params = pipeline.validated_params()[stage.name].model_dump(mode="json")
        for shared in shared_host_paths(params):
            if not shared.startswith(contract.DEFAULT_ML_ROOT + "/"):
                Path(shared).mkdir(parents=True, exist_ok=True)
                mounts.append(Path(shared))
        if os.getuid() == 0:  # containers run as the image's user: let it write the mounted folders
            for path in mounts:
                _chown_tree(path, CONTAINER_UID)
        return env

    def failure_file(self, stage_dir: Path) -> Path:
        return stage_dir / "container-output" / "failure"

    def describe(self, command: list[str]) -> str:
        service = command[-1]
        tool = " ".join(self.engine.compose) if self.engine else "compose"
        return f"{tool} run {service} (its container; log below)"


CONTAINER_UID = 1000
COMMITTED_TRACKING_URI = f"sqlite:///{contract.DEFAULT_ML_ROOT}/mlflow/mlflow.db"  # <run dir>/mlflow on the host  # the images' non-root user (containers/base/Dockerfile)


def _point(link: Path, target: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target)


def _chown_tree(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, uid)
        for name in files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def _gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def main(argv: list[str] | None = None) -> int:
    """Write (or check) ``infra/compose/<pipeline>.yaml`` from the pipeline's default profile."""
    import argparse

    from pipelines.registry import get_pipeline
    from pipelines.workspace import REPO_ROOT

    parser = argparse.ArgumentParser(prog="python -m pipelines.backends.compose", description=main.__doc__)
    parser.add_argument("--pipeline", action="append", help="default: every pipeline")
    parser.add_argument("--write", action="store_true", help="write the files (default: print them)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file is out of date")
    args = parser.parse_args(argv)
    from pipelines.registry import PIPELINES

    stale = []
    for name in args.pipeline or list(PIPELINES):
        text = committed_text(get_pipeline(name))
        path = REPO_ROOT / "infra" / "compose" / f"{name}.yaml"
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        elif args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO_ROOT)))
        else:
            print(text)
    if stale:
        print("out of date (run with --write): " + ", ".join(stale))
        return 1
    return 0


def committed_text(pipeline: Pipeline) -> str:
    """The compose file committed under ``infra/compose/``: default profile, GPU reserved, no host paths."""
    params = {name: p.model_dump(mode="json") for name, p in pipeline.validated_params().items()}
    for stage_params in params.values():  # the local MLflow store path is machine-specific
        if "tracking_uri" in stage_params and not str(stage_params["tracking_uri"] or "").startswith(("http", "databricks")):
            stage_params["tracking_uri"] = COMMITTED_TRACKING_URI
    return render(compose_document(pipeline, params), pipeline)


if __name__ == "__main__":
    raise SystemExit(main())
