"""Scheduled retraining on this machine: cron entries, the data-change check, and the pipeline lock.

Why cron (through ``python-crontab``) rather than a scheduler library in a long-running process:
a crontab entry is what a Linux or macOS machine already runs; it survives reboots and logouts, needs
no daemon of ours to keep alive or supervise, and each firing is a fresh process, so a leak or crash
in one run cannot stop the next. ``python-crontab`` edits the user's crontab without clobbering
other entries (ours are found by their ``speechops:<name>`` comment) and validates expressions.
systemd timers were the other candidate; they need a systemd user session, which containers,
CI runners and macOS lack, whereas ``crontab`` is one package away (Debian: ``apt-get install cron``).
``SPEECHOPS_CRONTAB=FILE`` writes the entries to a file instead of the user's crontab (tests do).

What an entry runs is ``python pipelines/run.py scheduled-run ...`` (``scheduled_run`` here):
1. take the pipeline's lock (``runs/<pipeline>/.lock``), non-blocking: a second run of the same
   pipeline, scheduled or by hand, is refused with the holder's pid, host and start time;
2. hash the training data as the pipeline would prepare it (the ``prepare`` stage: from the cache
   when its source is unchanged, else by running that stage alone) and compare it with the
   ``speechops.corpus_sha256`` tag of the registered ``champion``;
3. unchanged: record a skip in ``runs/<pipeline>/schedule.log`` (one JSON line) and exit 0;
   changed, no champion yet, or ``--force``: run the pipeline, whose register stage runs the
   promotion gate, and record the outcome.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.workspace import EXIT_BUSY, REPO_ROOT, PipelineBusy, pipeline_lock

log = logging.getLogger(__name__)

CRONTAB_ENV = "SPEECHOPS_CRONTAB"  # a crontab file to edit instead of the user's crontab
COMMENT_PREFIX = "speechops:"
SCHEDULE_LOG = "schedule.log"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ScheduleError(RuntimeError):
    """A schedule that cannot be installed, listed or removed; the message says what to do."""


# -- the decision -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Champion:
    version: str
    data_sha256: str | None


@dataclass(frozen=True)
class ScheduleDecision:
    run: bool
    reason: str
    data_sha256: str | None
    champion_version: str | None
    champion_data_sha256: str | None


def decide(data_sha256: str | None, champion: Champion | None, force: bool = False) -> ScheduleDecision:
    """Retrain when forced, when there is no champion to compare with, or when the data changed."""
    def made(run: bool, reason: str) -> ScheduleDecision:
        return ScheduleDecision(run, reason, data_sha256, champion.version if champion else None,
                                champion.data_sha256 if champion else None)

    if force:
        return made(True, "forced (--force): retraining whatever the data")
    if champion is None:
        return made(True, "no champion yet: training one")
    if not champion.data_sha256 or champion.data_sha256 == "unknown":
        return made(True, f"champion v{champion.version} records no training-data hash: retraining")
    if data_sha256 is None:
        return made(True, "the current training data could not be hashed: retraining")
    if data_sha256 == champion.data_sha256:
        return made(False, f"training data unchanged since champion v{champion.version} "
                           f"(sha256 {data_sha256[:12]}): skipped")
    return made(True, f"training data changed since champion v{champion.version} "
                      f"({champion.data_sha256[:12]} -> {data_sha256[:12]}): retraining")


def champion_data(tracking_uri: str, model_name: str) -> Champion | None:
    """The champion version and the corpus hash its register stage recorded, or None."""
    from steps.common.promotion import TAG_CORPUS, ModelRegistry

    registry = ModelRegistry(tracking_uri, model_name)
    version = registry.champion()
    if version is None:
        return None
    return Champion(version, registry.tags(version).get(TAG_CORPUS))


def current_data_sha256(pipeline: Any, backend: Any, run_id: str) -> tuple[str | None, str]:
    """The ``manifest_sha256`` the prepare stage gives for the current source: (hash, how it was found).

    From the stage cache when prepare's inputs (the source's content, its parameters, its code) are
    unchanged; otherwise prepare runs alone into ``run_id``, and the full run that may follow reuses it.
    """
    plan = backend.run(pipeline, dry_run=True)
    prepare = plan.stage("prepare")
    if prepare.status == "cached" and prepare.report.get("manifest_sha256"):
        return prepare.report["manifest_sha256"], "prepare stage cache (source unchanged)"
    result = backend.run(pipeline, run_id=run_id, only_stage="prepare")
    return result.stage("prepare").report.get("manifest_sha256"), "prepare stage run (source changed or not cached)"


def scheduled_run(pipeline_name: str, profile: str, overrides: list[str], runs_dir: Path, tracking_uri: str,
                  run_pipeline: Callable[[str], int], force: bool = False, schedule_name: str | None = None,
                  echo: bool = True) -> int:
    """One firing of a schedule: lock, check the data, skip or run, record the outcome. Returns an exit code.

    ``run_pipeline(run_id)`` runs the whole pipeline (the CLI passes its own ``run``), so a scheduled
    run is exactly a manual run plus the check.
    """
    from pipelines.backends.local import LocalBackend, StageFailed
    from pipelines.config import ConfigError
    from pipelines.definition import PipelineError
    from pipelines.registry import get_pipeline

    runs_dir = Path(runs_dir).resolve()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-scheduled"
    record: dict[str, Any] = {"at": _now(), "schedule": schedule_name, "pipeline": pipeline_name, "profile": profile,
                              "overrides": overrides, "force": force, "run_id": run_id}
    try:
        with pipeline_lock(runs_dir, pipeline_name, purpose="scheduled run"):
            try:
                pipeline = get_pipeline(pipeline_name, profile, overrides)
                params = pipeline.validated_params()["register"]
            except (ConfigError, PipelineError) as exc:
                return _finish(runs_dir, record, "failed", f"invalid configuration: {exc}", 2, echo)
            model_name = getattr(params, "model_name", None) or pipeline.name
            tracking_uri = getattr(params, "tracking_uri", None) or tracking_uri
            record["tracking_uri"] = tracking_uri
            try:
                champion = champion_data(tracking_uri, model_name)
                sha, how = current_data_sha256(pipeline, LocalBackend(runs_dir, echo=False), run_id)
            except StageFailed as exc:
                return _finish(runs_dir, record, "failed", f"preparing the data to hash it failed: {exc} "
                               f"(log: {exc.result.log})", 1, echo)
            except Exception as exc:  # recorded in the schedule log, then raised with its traceback
                _finish(runs_dir, record, "failed", f"{type(exc).__name__}: {exc}", 1, echo)
                raise
            decision = decide(sha, champion, force)
            record.update({k: v for k, v in asdict(decision).items() if k != "run"}, data_check=how)
            if not decision.run:
                return _finish(runs_dir, record, "skipped", decision.reason, 0, echo)
            if echo:
                print(f"scheduled run of {pipeline_name}: {decision.reason}", flush=True)
            started = time.time()
            code = run_pipeline(run_id)
            record["seconds"] = round(time.time() - started, 1)
            record.update(_outcome(runs_dir / pipeline_name / run_id))
            status = "ran" if code == 0 else "failed"
            return _finish(runs_dir, record, status, decision.reason, code, echo)
    except PipelineBusy as exc:
        return _finish(runs_dir, record, "busy", str(exc), EXIT_BUSY, echo)


def _outcome(run_dir: Path) -> dict[str, Any]:
    """What the run's register stage decided, from its report (and whether it was cached)."""
    out: dict[str, Any] = {}
    run_json = run_dir / "run.json"
    if run_json.is_file():
        stages = json.loads(run_json.read_text()).get("stages", {})
        out["register_status"] = stages.get("register", {}).get("status")
    report = run_dir / "register" / "report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        promotion = data.get("promotion") or {}
        out.update({"model_version": data.get("model_version"), "gate": promotion.get("outcome"),
                    "gate_reason": promotion.get("reason")})
        if out.get("register_status") == "cached":
            out["gate_reason"] = "every stage came from the cache: no new version was registered"
    return out


def _finish(runs_dir: Path, record: dict[str, Any], status: str, reason: str, code: int, echo: bool) -> int:
    record.update(status=status, reason=reason, exit_code=code, finished=_now())
    path = runs_dir / record["pipeline"] / SCHEDULE_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log_file:
        log_file.write(json.dumps(record, default=str) + "\n")
    if echo:
        gate = f"; gate: {record['gate_reason']}" if record.get("gate_reason") else ""
        print(f"scheduled run of {record['pipeline']} {status}: {reason}{gate} (logged to {path})", flush=True)
    return code


# -- cron entries -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    cron: str
    command: str
    enabled: bool
    next_run: str | None


def default_schedule_name(pipeline: str, profile: str) -> str:
    return f"{pipeline}-{Path(profile).stem}"


def scheduled_command(pipeline: str, profile: str, overrides: list[str], runs_dir: Path, force: bool, name: str,
                      tracking_uri: str | None = None, python: str | None = None) -> str:
    """The shell line cron runs: absolute paths (cron's PATH and working folder are minimal), output appended
    to ``runs/<pipeline>/schedule-cron.log``."""
    runs_dir = Path(runs_dir).resolve()
    args = [python or sys.executable, str(REPO_ROOT / "pipelines" / "run.py"), "scheduled-run",
            "--pipeline", pipeline, "--profile", profile, "--runs-dir", str(runs_dir), "--schedule-name", name]
    for item in overrides:
        args += ["--set", item]
    if force:
        args.append("--force")
    env = {"SPEECHOPS_PROGRESS": "0"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cron_log = runs_dir / pipeline / "schedule-cron.log"
    return (f"cd {shlex.quote(str(REPO_ROOT))} && {assignments} {shlex.join(args)} "
            f">> {shlex.quote(str(cron_log))} 2>&1")


def _crontab() -> Any:
    from crontab import CronTab

    tabfile = os.environ.get(CRONTAB_ENV)
    if tabfile:
        Path(tabfile).parent.mkdir(parents=True, exist_ok=True)
        Path(tabfile).touch(exist_ok=True)
        return CronTab(tabfile=tabfile)
    if shutil.which("crontab") is None:
        raise ScheduleError("no 'crontab' command on this machine: install cron (Debian/Ubuntu: apt-get install cron, "
                            f"then start it: service cron start), or set {CRONTAB_ENV}=FILE to write the entries to a "
                            "file that your own scheduler reads")
    return CronTab(user=True)


def _next_run(expression: str) -> str | None:
    try:
        from croniter import croniter

        return croniter(expression, datetime.now().astimezone()).get_next(datetime).isoformat(timespec="minutes")
    except (ImportError, ValueError, KeyError):
        return None


def _entry(job: Any) -> ScheduleEntry:
    expression = str(job.slices)
    return ScheduleEntry(job.comment.removeprefix(COMMENT_PREFIX), expression, job.command.replace("\\%", "%"),
                         job.is_enabled(), _next_run(expression))


def add_schedule(name: str, cron: str, command: str) -> tuple[ScheduleEntry, bool]:
    """Install (or replace) the entry ``name``; returns it and whether an old one was replaced."""
    from crontab import CronSlices

    if not NAME_RE.match(name):
        raise ScheduleError(f"schedule name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    if not CronSlices.is_valid(cron):
        raise ScheduleError(f"{cron!r} is not a cron expression: five fields 'minute hour day month weekday' "
                            "(e.g. '0 3 * * 0' = Sundays at 03:00) or @daily, @weekly, ...")
    tab = _crontab()
    replaced = bool(list(tab.find_comment(COMMENT_PREFIX + name)))
    tab.remove_all(comment=COMMENT_PREFIX + name)
    job = tab.new(command=command.replace("%", "\\%"), comment=COMMENT_PREFIX + name)  # cron reads % as newline
    job.setall(cron)
    tab.write()
    return _entry(job), replaced


def list_schedules() -> list[ScheduleEntry]:
    return [_entry(job) for job in _crontab() if (job.comment or "").startswith(COMMENT_PREFIX)]


def remove_schedule(name: str) -> bool:
    tab = _crontab()
    found = bool(list(tab.find_comment(COMMENT_PREFIX + name)))
    if found:
        tab.remove_all(comment=COMMENT_PREFIX + name)
        tab.write()
    return found


def cron_daemon_running() -> bool | None:
    """Best effort: is a cron daemon running here? None when it cannot be told (not Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond", "cronie", "busybox-crond"):
                return True
        except OSError:
            continue
    return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
