"""The command line behind ``pipelines/run.py``: parsing and dispatch only, no task logic."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pipelines.backends.kubeflow import add_arguments as add_kubeflow_arguments
from pipelines.backends.sagemaker import add_arguments as add_sagemaker_arguments
from pipelines.config import ConfigError, profiles
from pipelines.definition import PipelineError
from pipelines.registry import PIPELINES, get_pipeline
from pipelines.workspace import Workspace, default_runs_dir, default_tracking_uri

DEFAULT_PROFILE = "tiny"
COMMANDS = ("run", "list", "doctor", "serve", "demo", "promote", "rollback", "schedule", "scheduled-run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python pipelines/run.py",
        description="Prepare data for, train, evaluate, export, register and deploy speech models as "
                    "pipelines of containerized stages. With no command, 'run' is assumed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python pipelines/run.py --pipeline whisper_intensity\n"
               "  python pipelines/run.py --pipeline whisper_intensity --dry-run --set train.epochs=1\n"
               "  python pipelines/run.py --pipeline whisper_intensity --only evaluate\n"
               "  python pipelines/run.py --pipeline whisper_intensity --backend compose --dry-run\n"
               "  python pipelines/run.py --pipeline whisper_intensity --backend sagemaker --dry-run\n"
               "  python pipelines/run.py --pipeline whisper_intensity --backend kubeflow --dry-run\n"
               "  python pipelines/run.py list\n"
               "  python pipelines/run.py serve --pipeline whisper_intensity --port 8080",
    )
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a pipeline (the default command)")
    run.add_argument("--pipeline", required=True, help=f"one of: {', '.join(PIPELINES)}")
    run.add_argument("--profile", default=DEFAULT_PROFILE,
                     help="config profile name (pipelines/configs/<pipeline>/<profile>.yaml) or a YAML path; "
                          f"default: {DEFAULT_PROFILE}, the offline one")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. train.epochs=3 or common.model_id=openai/whisper-small")
    run.add_argument("--backend", default="local", choices=["local", "compose", "sagemaker", "kubeflow"],
                     help="where the stages run: local (subprocesses here), compose (each stage in its container, "
                          "through docker compose or podman-compose), sagemaker (a SageMaker pipeline) or kubeflow "
                          "(a KFP v2 pipeline: compiled, run here with kfp.local, or submitted to a KFP host)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and resolved config; run nothing")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--from", dest="from_stage", metavar="STAGE",
                       help="re-run STAGE and everything after it; earlier stages come from the cache")
    group.add_argument("--only", dest="only_stage", metavar="STAGE",
                       help="re-run only STAGE; its inputs come from the cache")
    run.add_argument("--run-id", help="name of the run folder (default: a UTC timestamp)")
    run.add_argument("--runs-dir", type=Path, default=None, help="where runs and the cache live (default: ./runs)")
    run.add_argument("--quiet", action="store_true", help="do not echo stage logs, only the summary")
    compose = run.add_argument_group("compose backend")
    compose.add_argument("--image-registry", default="localhost",
                         help="prefix of the stage images (default localhost: python containers/build.py)")
    compose.add_argument("--image-tag", default="latest")
    compose.add_argument("--gpu", choices=["auto", "on", "off"], default="auto",
                         help="reserve a GPU for train (auto: when an NVIDIA device is present)")
    compose.add_argument("--engine", choices=["auto", "docker", "podman"], default=None,
                         help="container engine (default: $SPEECHOPS_CONTAINER_ENGINE, else whichever works)")
    add_sagemaker_arguments(run)
    add_kubeflow_arguments(run)

    sub.add_parser("list", help="list the pipelines and their profiles")
    sub.add_parser("doctor", help="check the installed packages against the lock (constraints.txt) and that the "
                                  "heavy ones import; names each problem with the command that fixes it")

    serve = sub.add_parser("serve", help="serve a registered model on loopback until stopped (SageMaker contract)")
    serve.add_argument("--pipeline", required=True, help="registered model name = pipeline name")
    serve.add_argument("--version", help="model version (default: the champion, else the latest)")
    serve.add_argument("--alias", help="serve models:/<pipeline>@ALIAS instead of @champion (e.g. challenger)")
    serve.add_argument("--model-dir", type=Path, help="serve this model folder instead of the registry")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--runs-dir", type=Path, default=None)
    _add_runtime_arguments(serve)
    demo = sub.add_parser(
        "demo", help="a demo page (Gradio) for a registered model on loopback: upload or record, see and hear the answer",
        description="A Gradio page for the champion (or --version/--alias/--model-dir): each task's view (transcript; "
                    "intensity meter; emotion probabilities and emphasised words; converted audio), the model version, "
                    "and test-split clips to click. Offline: loopback only, no share link unless --share, analytics off.")
    demo.add_argument("--pipeline", required=True, help="registered model name = pipeline name")
    demo.add_argument("--version", help="model version (default: the champion, else the latest)")
    demo.add_argument("--alias", help="show models:/<pipeline>@ALIAS instead of @champion (e.g. challenger)")
    demo.add_argument("--model-dir", type=Path, help="show this model folder instead of the registry")
    demo.add_argument("--examples", type=Path, metavar="MANIFEST",
                      help="clips to offer (default: the test split of runs/<pipeline>/latest)")
    demo.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (needs a network)")
    demo.add_argument("--runs-dir", type=Path, default=None)
    _add_runtime_arguments(demo)
    _add_registry_commands(sub)
    return parser


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        return _list()
    if args.command == "doctor":
        from pipelines.doctor import main as doctor

        return doctor()
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return _demo(args)
    if args.command in REGISTRY_COMMANDS:
        return _registry_command(args)
    return _run_locked(args)


def _list() -> int:
    from pipelines.summary import console

    for name, description in PIPELINES.items():
        console.print(f"[bold]{name}[/]: {description}\n    profiles: {', '.join(profiles(name))}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """Pick the backend, build and validate the pipeline once, then plan (--dry-run) or run it."""
    from rich.markup import escape

    from pipelines.backends.base import BackendError, backend_from_args
    from pipelines.backends.local import RunInterrupted, StageFailed
    from pipelines.containers import EngineError
    from pipelines.doctor import EnvironmentBroken
    from pipelines.summary import console

    workspace = Workspace.at(args.runs_dir)
    selection = {"run_id": args.run_id, "from_stage": args.from_stage, "only_stage": args.only_stage}
    try:
        backend = backend_from_args(args, workspace)
        pipeline = get_pipeline(args.pipeline, args.profile, backend.config_overrides(workspace, args.overrides))
        if args.dry_run:
            return backend.print_plan(pipeline, backend.plan(pipeline, **selection))
        return backend.print_result(pipeline, backend.run(pipeline, **selection))
    except (ConfigError, PipelineError, EngineError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    except BackendError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        if exc.hint:
            console.print(exc.hint, markup=False, highlight=False)
        return exc.exit_code
    except EnvironmentBroken as exc:
        console.print(f"[bold red]error:[/] the installed packages cannot run the stages: {escape(str(exc))}",
                      markup=True, highlight=False)
        console.print("(python pipelines/run.py doctor shows the whole check)")
        return 2
    except RunInterrupted as exc:
        console.print(f"\n[bold yellow]{escape(str(exc))}[/]: recorded in run.json; the same command resumes "
                      "(finished stages from the cache, training from its last complete checkpoint)")
        return exc.exit_code
    except StageFailed as exc:
        console.print(f"\n[bold red]stage '{exc.result.name}' failed[/]: {escape(exc.result.error)}")
        console.print(f"[dim]last lines of {exc.result.log}:[/]")
        console.print(exc.tail, markup=False, highlight=False)
        return 1


def _add_runtime_arguments(cmd: argparse.ArgumentParser) -> None:
    from steps.models.whisper.ctranslate import COMPUTE_TYPES, RUNTIMES

    cmd.add_argument("--runtime", choices=RUNTIMES, default=None,
                     help="inference engine of the Whisper pipelines (default: $SPEECHOPS_RUNTIME, else torch); "
                          "ctranslate2 converts the model once and runs encoder and decoder with CTranslate2")
    cmd.add_argument("--compute-type", choices=COMPUTE_TYPES, default=None,
                     help="CTranslate2 weights (default: $SPEECHOPS_CT2_COMPUTE_TYPE, else float32, the PyTorch "
                          "transcripts; int8 is faster and may differ in a few words)")


def _load_model(args: argparse.Namespace):
    """The handler for --model-dir, or for the registered version --version/--alias/the champion chooses:
    (handler, label, info), or None after printing why there is none."""
    from serving.loader import choose_registered_version, load_handler_from_dir, load_handler_from_registry
    from steps.models.whisper.ctranslate import COMPUTE_TYPE_ENV, RUNTIME_ENV

    # environment variables, as a container sets them: the handler reads them when it loads
    for env, value in ((RUNTIME_ENV, args.runtime), (COMPUTE_TYPE_ENV, args.compute_type)):
        if value:
            os.environ[env] = value

    runs_dir = (args.runs_dir or default_runs_dir()).resolve()
    if args.model_dir:
        try:
            return load_handler_from_dir(args.model_dir), str(args.model_dir), {}
        except (FileNotFoundError, ValueError) as exc:  # not a model folder; a runtime the model cannot use
            print(f"error: {exc}")
            return None
    tracking_uri = default_tracking_uri(runs_dir)
    try:
        choice = choose_registered_version(tracking_uri, args.pipeline, args.version, args.alias)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}")
        return None
    try:
        handler, _ = load_handler_from_registry(tracking_uri, args.pipeline, choice.version)
    except ValueError as exc:  # a runtime the model cannot use
        print(f"error: {exc}")
        return None
    return handler, choice.label, {"model_uri": choice.uri, "alias": choice.alias or "", "version": choice.version}


def _serve(args: argparse.Namespace) -> int:
    from serving.server import serve_forever

    loaded = _load_model(args)
    if loaded is None:
        return 2
    handler, source, info = loaded
    print(f"serving {source} on http://{args.host}:{args.port} (GET /ping, POST /invocations); Ctrl-C stops")
    serve_forever(handler, args.host, args.port, info)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import signal
    import tempfile

    from serving.demo import EXAMPLES, DemoModel, as_wav, launch, offline_environment

    offline_environment()
    loaded = _load_model(args)
    if loaded is None:
        return 2
    handler, source, _ = loaded
    runs_dir = (args.runs_dir or default_runs_dir()).resolve()
    manifest = args.examples or runs_dir / args.pipeline / "latest" / "prepare" / "data" / "test.jsonl"
    if args.examples and not manifest.is_file():
        print(f"error: no manifest at {args.examples}")
        return 2

    def stop(signum, frame):  # SIGTERM stops the page as Ctrl-C does: the server closes, the examples go
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory(prefix="speechops-demo-") as folder:
        examples = []
        if manifest.is_file():
            try:
                examples = as_wav(handler.demo_examples(manifest, EXAMPLES), Path(folder))
                print(f"examples from {manifest} in {folder} (removed when the demo stops)")
            except (OSError, ValueError) as exc:
                print(f"note: no examples from {manifest}: {exc}")
        else:
            print(f"note: no examples to offer ({manifest} does not exist: run the pipeline first, "
                  "or pass --examples)")
        print(f"demo of {source} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
        try:
            launch(DemoModel(handler, args.pipeline, source, examples), args.host, args.port, share=args.share)
        except KeyboardInterrupt:
            pass
    return 0


# -- registry promotion and scheduled retraining (steps/common/promotion.py, pipelines/schedule.py) ------

REGISTRY_COMMANDS = ("promote", "rollback", "schedule", "scheduled-run")


def _add_registry_commands(sub: argparse._SubParsersAction) -> None:
    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--pipeline", required=True, help="registered model name = pipeline name")
        cmd.add_argument("--runs-dir", type=Path, default=None, help="where runs and the local MLflow store live")

    def pipeline_config(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--profile", default=DEFAULT_PROFILE, help=f"config profile (default: {DEFAULT_PROFILE})")
        cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="config override, as for run")
        cmd.add_argument("--force", action="store_true", help="retrain even when the training data is unchanged")

    promote = sub.add_parser("promote", help="make a registered version the champion (recorded with a reason)")
    common(promote)
    promote.add_argument("--version", required=True, help="the version to make champion")
    promote.add_argument("--reason", required=True, help="why; recorded as a tag on the version")
    rollback = sub.add_parser("rollback", help="move champion back to the previous champion (or --version N)")
    common(rollback)
    rollback.add_argument("--version", help="the version to roll back to (default: the one the champion replaced)")
    rollback.add_argument("--reason", required=True, help="why; recorded as tags on both versions")

    schedule = sub.add_parser("schedule", help="retrain on a cron schedule (a crontab entry); --list, --remove NAME",
                              description="Install a crontab entry that runs 'scheduled-run': it retrains only when "
                                          "the training data changed since the champion, and the register stage's "
                                          "gate decides whether the new version becomes champion.")
    action = schedule.add_mutually_exclusive_group(required=True)
    action.add_argument("--pipeline", help="the pipeline to schedule")
    action.add_argument("--list", action="store_true", help="list the installed speechops schedules")
    action.add_argument("--remove", metavar="NAME", help="remove the schedule NAME")
    schedule.add_argument("--cron", help="cron expression, e.g. '0 3 * * 0' (Sundays 03:00) or @weekly")
    schedule.add_argument("--name", help="schedule name (default: <pipeline>-<profile>); the same name replaces")
    schedule.add_argument("--runs-dir", type=Path, default=None)
    pipeline_config(schedule)

    scheduled = sub.add_parser("scheduled-run", help="what a schedule runs: skip if the data is unchanged, else run")
    common(scheduled)
    pipeline_config(scheduled)
    scheduled.add_argument("--schedule-name", help="recorded in the schedule log")


def _registry_command(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from pipelines.summary import console
    from steps.common.promotion import ModelRegistry, PromotionError

    runs_dir = (args.runs_dir or default_runs_dir()).resolve()
    try:
        if args.command == "schedule":
            return _schedule(args, runs_dir)
        if args.command == "scheduled-run":
            return _scheduled_run(args, runs_dir)
        registry = ModelRegistry(default_tracking_uri(runs_dir), args.pipeline)
        if args.command == "promote":
            result = registry.promote(args.version, args.reason)
        else:
            result = registry.rollback(args.version, args.reason)
    except (PromotionError, MlflowException) as exc:
        console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        return 2
    console.print(result["message"], markup=False)
    return 0


def _schedule(args: argparse.Namespace, runs_dir: Path) -> int:
    from pipelines.schedule import (ScheduleError, add_schedule, cron_daemon_running, default_schedule_name,
                                    list_schedules, remove_schedule, scheduled_command)
    from pipelines.summary import console

    try:
        if args.list:
            entries = list_schedules()
            for e in entries:
                state = "" if e.enabled else " (disabled)"
                console.print(f"[bold]{e.name}[/]{state}: '{e.cron}', next {e.next_run or '?'}\n    {e.command}",
                              markup=True, highlight=False, soft_wrap=True)
            if not entries:
                console.print("no speechops schedules installed")
            return 0
        if args.remove:
            found = remove_schedule(args.remove)
            console.print(f"removed schedule {args.remove}" if found else f"no schedule named {args.remove}")
            return 0 if found else 1
        if not args.cron:
            console.print("[bold red]error:[/] --cron is required, e.g. --cron '0 3 * * 0'")
            return 2
        get_pipeline(args.pipeline, args.profile, list(args.overrides))  # fail now, not at 3 am
        name = args.name or default_schedule_name(args.pipeline, args.profile)
        command = scheduled_command(args.pipeline, args.profile, list(args.overrides), runs_dir, args.force, name,
                                    tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
        entry, replaced = add_schedule(name, args.cron, command)
    except (ConfigError, PipelineError, ScheduleError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    console.print(f"{'replaced' if replaced else 'installed'} schedule {entry.name}: '{entry.cron}', "
                  f"next run {entry.next_run or '?'}\n    {entry.command}", markup=False, soft_wrap=True)
    if cron_daemon_running() is False and not os.environ.get("SPEECHOPS_CRONTAB"):
        console.print("[yellow]note:[/] no cron daemon is running on this machine, so the entry will not fire "
                      "until one does (Debian/Ubuntu: service cron start)")
    return 0


def _scheduled_run(args: argparse.Namespace, runs_dir: Path) -> int:
    from pipelines.schedule import scheduled_run

    def run_pipeline(run_id: str) -> int:
        argv = ["run", "--pipeline", args.pipeline, "--profile", args.profile, "--runs-dir", str(runs_dir),
                "--run-id", run_id, *[a for item in args.overrides for a in ("--set", item)]]
        return _run(build_parser().parse_args(argv))  # the lock is already held by scheduled_run

    return scheduled_run(args.pipeline, args.profile, list(args.overrides), runs_dir, default_tracking_uri(runs_dir),
                         run_pipeline, force=args.force, schedule_name=args.schedule_name)


def _run_locked(args: argparse.Namespace) -> int:
    """A local run holds its pipeline's lock, so runs by hand and scheduled runs never overlap."""
    if args.dry_run or getattr(args, "backend", "local") != "local" or args.pipeline not in PIPELINES:
        return _run(args)
    from pipelines.summary import console
    from pipelines.workspace import EXIT_BUSY, PipelineBusy

    try:
        with Workspace.at(args.runs_dir).lock(args.pipeline):
            return _run(args)
    except PipelineBusy as exc:
        console.print(f"[bold red]refused:[/] {exc}", markup=True, highlight=False)
        return EXIT_BUSY
