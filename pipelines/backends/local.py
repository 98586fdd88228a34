"""The local backend: each stage as ``python -m steps.<step>`` in a subprocess on this machine.

Host folders stand in for the container paths (through the variables of ``steps.common.contract``).
Runs land in ``runs/<pipeline>/<run-id>/<stage>/`` (log, report, links to the outputs); outputs
live in the content-addressed cache ``runs/.cache/`` so an unchanged stage is reused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.backends.base import Backend
from pipelines.backends.cache import StageCache, hash_tree, stage_key
from pipelines.definition import Pipeline, PipelineError, Stage
from pipelines.workspace import REPO_ROOT, Workspace
from steps.common import contract
from steps.common.stage import params_args

LOG_TAIL_LINES = 40
STOP_WAIT_S = 30  # how long an interrupted stage may take to stop before it is killed


@dataclass
class StageResult:
    name: str
    status: str  # ran | cached | failed | skipped | planned
    seconds: float = 0.0
    key: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    command: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class RunResult:
    pipeline: str
    run_id: str
    run_dir: str
    stages: list[StageResult]
    ok: bool
    seconds: float

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)


class StageFailed(RuntimeError):
    def __init__(self, result: StageResult, tail: str):
        self.result = result
        self.tail = tail
        super().__init__(f"stage '{result.name}' failed: {result.error}")


class RunInterrupted(RuntimeError):
    """SIGINT or SIGTERM reached the runner: the running stage was stopped, the run recorded as interrupted."""

    def __init__(self, signum: int, stage: str | None = None):
        self.signum, self.stage = int(signum), stage
        where = f" during stage '{stage}'" if stage else ""
        super().__init__(f"run interrupted by {signal.Signals(self.signum).name}{where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _raise_interrupted(signum, frame) -> None:
    raise RunInterrupted(signum)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent(parent: int):
    """A ``preexec_fn``: the stage gets SIGTERM when the runner dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``), so a killed runner leaves no orphan stage writing checkpoints behind it."""

    def setup() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not Linux: the stage stops at its next write to the closed pipe
            return
        if os.getppid() != parent:  # the runner died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class LocalBackend(Backend):
    name = "local"

    def __init__(self, runs_dir: Path | Workspace, echo: bool = True, check_environment: bool = False):
        self.workspace = runs_dir if isinstance(runs_dir, Workspace) else Workspace.at(runs_dir)
        self.runs_dir = self.workspace.runs_dir
        self.cache = StageCache(self.workspace.cache_dir)
        self.checkpoints = self.workspace.checkpoints_dir
        self.echo = echo
        # the stages run in this Python environment: check once (remembered) that it can run them
        self.check_environment = check_environment
        self.notes: list[str] = []
        self.compose_file: Path | None = None

    @classmethod
    def from_args(cls, args: Any, workspace: Workspace) -> LocalBackend:
        return cls(workspace, echo=not args.quiet and not args.dry_run, check_environment=True)

    def config_overrides(self, workspace: Workspace, overrides: list[str]) -> list[str]:
        """The register stage logs to this workspace's MLflow store unless told otherwise."""
        if any(o.startswith(("register.tracking_uri", "stages.register.tracking_uri")) for o in overrides):
            return list(overrides)
        return [f"stages.register.tracking_uri={workspace.tracking_uri}", *overrides]

    def plan(self, pipeline: Pipeline, **selection: Any) -> RunResult:
        return self.run(pipeline, **selection, dry_run=True)

    def print_plan(self, pipeline: Pipeline, plan: RunResult) -> int:
        from pipelines.summary import print_plan

        print_plan(pipeline, plan, self.name, self.notes, self.compose_file)
        return 0

    def print_result(self, pipeline: Pipeline, result: RunResult) -> int:
        from pipelines.summary import print_summary

        print_summary(result)
        return 0 if result.ok else 1

    # -- planning -------------------------------------------------------------------------------
    def selection(self, pipeline: Pipeline, from_stage: str | None, only_stage: str | None) -> tuple[set[str], set[str]]:
        """(forced, skipped) stage names for --from / --only."""
        names = set(pipeline.names())
        if from_stage and only_stage:
            raise PipelineError("choose one of --from and --only", [f"--from {from_stage}", f"--only {only_stage}"])
        for chosen in (from_stage, only_stage):
            if chosen and chosen not in names:
                raise PipelineError(f"no stage {chosen!r} in {pipeline.name}", [f"stages: {', '.join(pipeline.names())}"])
        if from_stage:
            return pipeline.descendants(from_stage), set()
        if only_stage:
            return {only_stage}, pipeline.descendants(only_stage) - {only_stage}
        return set(), set()

    def stage_command(self, pipeline: Pipeline, stage: Stage, params: dict[str, Any]) -> list[str]:
        return [sys.executable, "-m", f"steps.{stage.step}", "--task", pipeline.task, *params_args(params)]

    def input_hashes(self, stage: Stage, params_obj: Any, results: dict[str, StageResult]) -> dict[str, str] | None:
        hashes: dict[str, str] = {}
        for input_name, ref in stage.inputs.items():
            src, _, out = ref.partition(".")
            upstream = results.get(src)
            if upstream is None or out not in upstream.output_hashes:
                return None
            hashes[input_name] = upstream.output_hashes[out]
        for i, path in enumerate(stage.spec.external_inputs(params_obj)):
            hashes[f"external{i}"] = self.cache.hash_external(path) if Path(path).exists() else f"missing:{path}"
        return hashes

    def key_inputs(self, pipeline: Pipeline, stage: Stage, hashes: dict[str, str] | None) -> dict[str, str] | None:
        """What besides the step, task and parameters a stage's cache key depends on (backends add theirs)."""
        return hashes

    def describe(self, command: list[str]) -> str:
        """The short form of a stage command shown above its log."""
        return " ".join(command[1:4]) + " …"

    def failure_file(self, stage_dir: Path) -> Path:
        """Where a failed stage wrote why (``SPEECHOPS_FAILURE_FILE``)."""
        return stage_dir / "failure"

    # -- running --------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline, run_id: str | None = None, from_stage: str | None = None,
            only_stage: str | None = None, dry_run: bool = False) -> RunResult:
        params_objs = pipeline.validated_params()
        forced, skipped = self.selection(pipeline, from_stage, only_stage)
        if self.check_environment and not dry_run:
            from pipelines.doctor import require_working_environment

            require_working_environment(self.workspace.environment_memo)
        run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = self.workspace.run_dir(pipeline.name, run_id)
        results: dict[str, StageResult] = {}
        started = time.time()
        if not dry_run:
            self._recover_abandoned(pipeline)
            run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_json(run_dir, pipeline, results, "running")
        handlers = {}
        if not dry_run and threading.current_thread() is threading.main_thread():
            handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            ok = self._run_stages(pipeline, params_objs, forced, skipped, results, run_dir, dry_run)
        except (RunInterrupted, KeyboardInterrupt) as exc:
            interrupted = exc if isinstance(exc, RunInterrupted) else RunInterrupted(signal.SIGINT)
            interrupted.stage = interrupted.stage or next(
                (name for name, r in results.items() if r.status == "interrupted"), None)
            for leftover in self.cache.root.glob(f".tmp-*-{os.getpid()}"):  # this process's unpublished work
                shutil.rmtree(leftover, ignore_errors=True)
            self._write_run_json(run_dir, pipeline, results, "interrupted",
                                 interrupted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 signal=signal.Signals(interrupted.signum).name)
            raise interrupted from None
        finally:
            for sig, previous in handlers.items():
                signal.signal(sig, previous)
        result = RunResult(pipeline.name, run_id, str(run_dir), list(results.values()), ok, time.time() - started)
        if not dry_run:
            self._write_run_json(run_dir, pipeline, results, "succeeded")
            if not only_stage:  # latest points at runs that went through the whole pipeline
                latest = run_dir.parent / "latest"
                tmp = run_dir.parent / f".latest-{os.getpid()}"
                if tmp.is_symlink() or tmp.exists():
                    tmp.unlink()
                tmp.symlink_to(run_id)
                os.replace(tmp, latest)
        return result

    def _run_stages(self, pipeline: Pipeline, params_objs: dict, forced: set[str], skipped: set[str],
                    results: dict[str, StageResult], run_dir: Path, dry_run: bool) -> bool:
        ok = True
        for stage in pipeline.order():
            params = params_objs[stage.name].model_dump(mode="json")
            command = self.stage_command(pipeline, stage, params)
            if stage.name in skipped:
                results[stage.name] = StageResult(stage.name, "skipped", command=command)
                continue
            hashes = self.key_inputs(pipeline, stage, self.input_hashes(stage, params_objs[stage.name], results))
            code = self.cache.code_version(stage.step, pipeline.task)
            key = stage_key(stage.step, pipeline.task, params, hashes, code) if hashes is not None else ""
            hit = self.cache.lookup(stage.name, key) if key and stage.cache else None
            if stage.name not in forced and hit is not None:
                results[stage.name] = self._cached(stage, key, hit, run_dir, dry_run, command)
                continue
            if forced and stage.name not in forced:
                raise PipelineError(
                    f"stage '{stage.name}' has no cached output for its current inputs",
                    ["run the pipeline without --from/--only first, or start from an earlier stage"],
                )
            if dry_run:
                results[stage.name] = StageResult(stage.name, "planned", key=key, command=command)
                continue
            try:
                results[stage.name] = self._execute(pipeline, stage, key, params, results, run_dir, command)
            except StageFailed as exc:
                results[stage.name] = exc.result
                ok = False
                self._write_run_json(run_dir, pipeline, results, "failed")
                raise
            except (RunInterrupted, KeyboardInterrupt) as exc:
                signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
                results[stage.name] = StageResult(stage.name, "interrupted", key=key, command=command,
                                                  log=str(run_dir / stage.name / "log.txt"),
                                                  error=f"interrupted by {signal.Signals(signum).name}")
                raise RunInterrupted(signum, stage.name) from None
        return ok

    def _cached(self, stage: Stage, key: str, record: dict, run_dir: Path, dry_run: bool, command: list[str]) -> StageResult:
        entry = self.cache.entry(stage.name, key)
        outputs = {name: str(entry / name) for name in record["output_hashes"]}
        result = StageResult(stage.name, "cached", record.get("seconds", 0.0), key, outputs,
                             record["output_hashes"], record.get("report", {}), str(entry / "log.txt"), command)
        if not dry_run:
            self._link_stage_dir(run_dir / stage.name, entry, outputs)
        return result

    def _execute(self, pipeline: Pipeline, stage: Stage, key: str, params: dict[str, Any],
                 results: dict[str, StageResult], run_dir: Path, command: list[str]) -> StageResult:
        spec = stage.spec
        stage_dir = run_dir / stage.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache.staging(stage.name, key or "nokey")
        env = self._environment(pipeline, stage, key, results, staging, stage_dir, run_dir)
        log_path = stage_dir / "log.txt"
        if self.echo:
            print(f"\n━━ {stage.name} ━━ {self.describe(command)}", file=sys.stderr, flush=True)
        resumable = self.checkpoints / f"{stage.name}-{key}"
        if spec.kind == "training" and key and resumable.is_dir() and any(resumable.iterdir()):
            print(f"{stage.name}: an earlier run of this stage with the same inputs stopped before it finished; "
                  f"resuming from {resumable}", file=sys.stderr, flush=True)
        started = time.time()
        code = self._stream(command, env, log_path)
        seconds = time.time() - started
        if code != 0:
            failure = self.failure_file(stage_dir)
            reason = failure.read_text().strip() if failure.is_file() else f"exit code {code}"
            reason = reason.removeprefix(f"stage '{stage.name}' failed: ")  # the summary names the stage once
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            kept = stage_dir / "failed-outputs"  # for inspection only: never published to the cache
            if kept.exists():
                shutil.rmtree(kept)
            os.replace(staging, kept)
            result = StageResult(stage.name, "failed", seconds, key, log=str(log_path), command=command,
                                 error=reason.splitlines()[0][:500])
            raise StageFailed(result, tail)
        report_path = staging / contract.REPORT_OUTPUT / contract.REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
        output_hashes = {name: hash_tree(staging / name) for name in spec.all_outputs}
        (staging / "log.txt").write_bytes(log_path.read_bytes())
        entry = self.cache.publish(staging, stage.name, key, {
            "stage": stage.name, "key": key, "seconds": seconds, "output_hashes": output_hashes,
            "report": report, "code_version": self.cache.code_version(stage.step, pipeline.task),
            "created": time.time(),
        }) if key and stage.cache else staging
        outputs = {name: str(entry / name) for name in spec.all_outputs}
        self._link_stage_dir(stage_dir, entry, outputs)
        if spec.kind == "training" and key and stage.cache:  # its outputs are in the cache: resuming is over
            shutil.rmtree(self.checkpoints / f"{stage.name}-{key}", ignore_errors=True)
        return StageResult(stage.name, "ran", seconds, key, outputs, output_hashes, report, str(log_path), command)

    def _environment(self, pipeline: Pipeline, stage: Stage, key: str, results: dict[str, StageResult],
                     staging: Path, stage_dir: Path, run_dir: Path) -> dict[str, str]:
        spec = stage.spec
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env[contract.ML_ROOT_ENV] = str(stage_dir / "ml")
        env["SPEECHOPS_FAILURE_FILE"] = str(stage_dir / "failure")
        env["SPEECHOPS_PIPELINE"] = pipeline.name
        env["SPEECHOPS_RUN_ID"] = run_dir.name
        env["SPEECHOPS_RUN_DIR"] = str(run_dir)
        env.setdefault("SPEECHOPS_GIT_COMMIT", git_commit())
        env.setdefault("PYTHONUNBUFFERED", "1")
        for input_name, ref in stage.inputs.items():
            src, _, out = ref.partition(".")
            env[contract.input_env(spec.kind, input_name)] = results[src].outputs[out]
        for output in spec.all_outputs:
            path = staging / output
            path.mkdir(parents=True, exist_ok=True)
            env[contract.output_env(spec.kind, output)] = str(path)
        if spec.kind == "training":
            checkpoints = self.checkpoints / f"{stage.name}-{key}"
            checkpoints.mkdir(parents=True, exist_ok=True)
            env[contract.output_env("training", "checkpoints")] = str(checkpoints)
        return env

    def _stream(self, command: list[str], env: dict[str, str], log_path: Path) -> int:
        """Run, teeing stdout+stderr to the log (and the terminal when echoing, bars included)."""
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None)
            assert proc.stdout is not None
            try:
                while chunk := os.read(proc.stdout.fileno(), 65536):
                    log.write(chunk)
                    if self.echo:
                        sys.stderr.buffer.write(chunk)
                        sys.stderr.buffer.flush()
            except (KeyboardInterrupt, RunInterrupted) as exc:
                signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
                if proc.poll() is None:  # pass the signal on, give the stage a bounded time to stop
                    proc.send_signal(signum)
                    try:
                        proc.wait(timeout=STOP_WAIT_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                raise RunInterrupted(signum) from None
            return proc.wait()

    def _link_stage_dir(self, stage_dir: Path, entry: Path, outputs: dict[str, str]) -> None:
        stage_dir.mkdir(parents=True, exist_ok=True)
        for name, target in outputs.items():
            link = stage_dir / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            if not link.exists():
                link.symlink_to(target)
        report = entry / contract.REPORT_OUTPUT / contract.REPORT_FILE
        if report.is_file():
            (stage_dir / "report.json").write_bytes(report.read_bytes())

    def _recover_abandoned(self, pipeline: Pipeline) -> None:
        """Runs whose runner died without a word (SIGKILL, power loss): their run.json still says ``running``
        while no process of that id lives on this machine. Each is marked ``abandoned`` and reported, and the
        unpublished staging folders of dead runners are removed from the cache. The next run then takes
        finished stages from the cache and resumes training from its last complete checkpoint."""
        host = socket.gethostname()
        for record_path in sorted(self.workspace.pipeline_dir(pipeline.name).glob("*/run.json")):
            try:
                record = json.loads(record_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            pid = record.get("runner_pid")
            if record.get("status") != "running" or record.get("host") != host or not isinstance(pid, int) \
                    or pid_alive(pid):
                continue
            record.update(status="abandoned", abandoned_found_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            tmp = record_path.with_name(f".run.json-{os.getpid()}")
            tmp.write_text(json.dumps(record, indent=2, default=str))
            os.replace(tmp, record_path)
            print(f"run '{record_path.parent.name}' was left running by a runner that is gone (pid {pid}): marked "
                  "abandoned; finished stages come from the cache, training resumes from its last complete checkpoint",
                  file=sys.stderr, flush=True)
        for staging in self.cache.root.glob(".tmp-*") if self.cache.root.is_dir() else ():
            pid = staging.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(staging, ignore_errors=True)

    def _write_run_json(self, run_dir: Path, pipeline: Pipeline, results: dict[str, StageResult], status: str,
                        **extra: Any) -> None:
        data = {
            "pipeline": pipeline.name, "task": pipeline.task, "status": status, **extra,
            "runner_pid": os.getpid(), "host": socket.gethostname(), "config": pipeline.config,
            "stages": {name: {k: v for k, v in vars(r).items() if k != "report"} | {"metrics": r.report.get("metrics", {})}
                       for name, r in results.items()},
        }
        tmp = run_dir / f".run.json-{os.getpid()}"  # whole or not at all: a kill mid-write leaves the old record
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, run_dir / "run.json")
