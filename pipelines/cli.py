"""The command line behind ``pipelines/run.py``: parsing and dispatch only, no task logic."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pipelines.backends.cache import REPO_ROOT
from pipelines.config import ConfigError, profiles
from pipelines.definition import PipelineError
from pipelines.registry import PIPELINES, get_pipeline

DEFAULT_PROFILE = "tiny"
COMMANDS = ("run", "list", "serve")


def default_runs_dir() -> Path:
    return Path(os.environ.get("SPEECHOPS_RUNS_DIR", REPO_ROOT / "runs"))


def default_tracking_uri(runs_dir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(runs_dir / 'mlflow' / 'mlflow.db').resolve()}"


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
    run.add_argument("--backend", default="local", choices=["local"], help="where the stages run")
    run.add_argument("--dry-run", action="store_true", help="print the plan and resolved config; run nothing")
    group = run.add_mutually_exclusive_group()
    group.add_argument("--from", dest="from_stage", metavar="STAGE",
                       help="re-run STAGE and everything after it; earlier stages come from the cache")
    group.add_argument("--only", dest="only_stage", metavar="STAGE",
                       help="re-run only STAGE; its inputs come from the cache")
    run.add_argument("--run-id", help="name of the run folder (default: a UTC timestamp)")
    run.add_argument("--runs-dir", type=Path, default=None, help="where runs and the cache live (default: ./runs)")
    run.add_argument("--quiet", action="store_true", help="do not echo stage logs, only the summary")

    sub.add_parser("list", help="list the pipelines and their profiles")

    serve = sub.add_parser("serve", help="serve a registered model on loopback until stopped (SageMaker contract)")
    serve.add_argument("--pipeline", required=True, help="registered model name = pipeline name")
    serve.add_argument("--version", help="model version (default: the latest)")
    serve.add_argument("--model-dir", type=Path, help="serve this model folder instead of the registry")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--runs-dir", type=Path, default=None)
    return parser


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        return _list()
    if args.command == "serve":
        return _serve(args)
    return _run(args)


def _list() -> int:
    from pipelines.summary import console

    for name, description in PIPELINES.items():
        console.print(f"[bold]{name}[/]: {description}\n    profiles: {', '.join(profiles(name))}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pipelines.backends.local import LocalBackend, StageFailed
    from pipelines.summary import console, print_plan, print_summary

    runs_dir = (args.runs_dir or default_runs_dir()).resolve()
    overrides = list(args.overrides)
    if not any(o.startswith(("register.tracking_uri", "stages.register.tracking_uri")) for o in overrides):
        overrides.insert(0, f"stages.register.tracking_uri={default_tracking_uri(runs_dir)}")
    try:
        pipeline = get_pipeline(args.pipeline, args.profile, overrides)
        backend = LocalBackend(runs_dir, echo=not args.quiet and not args.dry_run)
        result = backend.run(pipeline, run_id=args.run_id, from_stage=args.from_stage,
                             only_stage=args.only_stage, dry_run=args.dry_run)
    except (ConfigError, PipelineError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    except StageFailed as exc:
        console.print(f"\n[bold red]stage '{exc.result.name}' failed[/]: {exc.result.error}")
        console.print(f"[dim]last lines of {exc.result.log}:[/]")
        console.print(exc.tail, markup=False, highlight=False)
        return 1
    if args.dry_run:
        print_plan(pipeline, result, args.backend)
        return 0
    print_summary(result)
    return 0 if result.ok else 1


def _serve(args: argparse.Namespace) -> int:
    from serving.server import serve_forever
    from serving.loader import load_predictor_from_dir, load_predictor_from_registry

    runs_dir = (args.runs_dir or default_runs_dir()).resolve()
    if args.model_dir:
        predictor, source = load_predictor_from_dir(args.model_dir), str(args.model_dir)
    else:
        predictor, source = load_predictor_from_registry(default_tracking_uri(runs_dir), args.pipeline, args.version)
    print(f"serving {source} on http://{args.host}:{args.port} (GET /ping, POST /invocations); Ctrl-C stops")
    serve_forever(predictor, args.host, args.port)
    return 0
