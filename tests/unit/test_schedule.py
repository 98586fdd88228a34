"""Scheduled retraining: the data-change decision, the pipeline lock, and the installed cron entries.

Nothing here waits for wall-clock time or trains: the decision runs the real prepare stage on a tiny
synthetic corpus, and the "pipeline" a scheduled run starts is the register stage on a synthetic
model folder (so the promotion gate really decides). Cron entries go to a crontab file
(``SPEECHOPS_CRONTAB``), never to the user's crontab.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from pipelines.schedule import (
    EXIT_BUSY,
    Champion,
    PipelineBusy,
    decide,
    list_schedules,
    pipeline_lock,
    scheduled_run,
)
from steps.common.promotion import ModelRegistry
from tests.conftest import REPO_ROOT, tone

PIPELINE = "whisper_intensity"


def test_decision_skips_only_unchanged_data_with_a_champion():
    champion = Champion("3", "aaa")
    assert not decide("aaa", champion).run
    assert "unchanged since champion v3" in decide("aaa", champion).reason
    assert decide("aaa", champion, force=True).run
    changed = decide("bbb", champion)
    assert changed.run and "changed since champion v3" in changed.reason
    assert decide("aaa", None).run and "no champion" in decide("aaa", None).reason
    assert decide("aaa", Champion("3", None)).run


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding the pipeline lock, as a run in progress would."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pipelines.schedule import pipeline_lock
        with pipeline_lock({str(tmp_path / 'runs')!r}, {PIPELINE!r}, purpose="test run"):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_of_the_same_pipeline_is_refused_naming_the_holder(tmp_path, lock_holder, capsys):
    from pipelines.cli import main

    with pytest.raises(PipelineBusy, match=rf"test run by pid {lock_holder.pid} on "):
        with pipeline_lock(tmp_path / "runs", PIPELINE):
            pass
    with pipeline_lock(tmp_path / "runs", "another_pipeline"):  # other pipelines are not blocked
        pass
    code = main(["run", "--pipeline", PIPELINE, "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == EXIT_BUSY and f"pid {lock_holder.pid}" in capsys.readouterr().out
    lock_holder.kill()
    lock_holder.wait()
    with pipeline_lock(tmp_path / "runs", PIPELINE):  # the OS released the dead holder's lock
        pass


def test_schedule_installs_lists_replaces_and_removes_cron_entries(tmp_path, monkeypatch, capsys):
    from crontab import CronTab

    from pipelines.cli import build_parser, main

    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=ops@example.org\n15 * * * * /usr/bin/true # someone else's entry\n")
    monkeypatch.setenv("SPEECHOPS_CRONTAB", str(tab))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs = tmp_path / "runs"
    assert main(["schedule", "--pipeline", PIPELINE, "--cron", "0 3 * * 0", "--set", "train.lr=5e-5",
                 "--set", "prepare.source=/data/my 100% corpus", "--force", "--runs-dir", str(runs)]) == 0
    assert "installed schedule whisper_intensity-tiny" in capsys.readouterr().out
    jobs = [j for j in CronTab(tabfile=str(tab)) if j.comment == "speechops:whisper_intensity-tiny"]
    assert len(jobs) == 1 and str(jobs[0].slices) == "0 3 * * 0"
    assert "100\\% corpus" in jobs[0].command  # cron would read a bare % as a newline
    # the entry is a valid invocation of the CLI's scheduled-run, with absolute paths
    words = shlex.split(jobs[0].command.replace("\\%", "%").split(" && ", 1)[1].split(" >> ")[0])
    assert words[0] == "SPEECHOPS_PROGRESS=0" and Path(words[1]).is_absolute()
    args = build_parser().parse_args(words[3:])
    assert (args.command, args.pipeline, args.profile, args.force) == ("scheduled-run", PIPELINE, "tiny", True)
    assert args.overrides == ["train.lr=5e-5", "prepare.source=/data/my 100% corpus"]
    assert args.runs_dir == runs.resolve() and args.schedule_name == "whisper_intensity-tiny"

    assert main(["schedule", "--pipeline", PIPELINE, "--cron", "@daily", "--runs-dir", str(runs)]) == 0
    assert "replaced" in capsys.readouterr().out
    (entry,) = list_schedules()
    assert entry.cron == "@daily" and "--force" not in entry.command and entry.next_run
    assert main(["schedule", "--list"]) == 0 and "whisper_intensity-tiny" in capsys.readouterr().out
    assert main(["schedule", "--pipeline", PIPELINE, "--cron", "0 3 * *"]) == 2  # four fields
    assert "not a cron expression" in capsys.readouterr().out
    assert main(["schedule", "--pipeline", PIPELINE, "--cron", "@daily", "--set", "train.epochs=-1"]) == 2
    assert main(["schedule", "--remove", "whisper_intensity-tiny"]) == 0
    assert main(["schedule", "--remove", "whisper_intensity-tiny"]) == 1
    assert list_schedules() == []
    assert "someone else's entry" in tab.read_text() and "MAILTO=ops@example.org" in tab.read_text()


def _fake_pipeline(runs: Path, store: str, sets: list[str], wer: float):
    """What ``run_pipeline(run_id)`` does in a real scheduled run, reduced to the register stage:
    it registers a synthetic version whose lineage is the data the scheduled run just prepared."""
    from pipelines.backends.local import LocalBackend
    from pipelines.registry import get_pipeline
    from tests.unit.test_promotion import register_version

    calls: list[str] = []

    def run(run_id: str) -> int:
        calls.append(run_id)
        prepare = LocalBackend(runs, echo=False).run(get_pipeline(PIPELINE, "tiny", sets), dry_run=True).stage("prepare")
        assert prepare.status == "cached"  # the data check prepared it
        run_dir = runs / PIPELINE / run_id
        report = register_version(run_dir, store, PIPELINE, wer=wer, rmse=1.0, dataset=Path(prepare.outputs["data"]),
                                  data_report=Path(prepare.outputs["report"]))
        (run_dir / "register").mkdir(parents=True, exist_ok=True)
        (run_dir / "register" / "report.json").write_text(json.dumps(report))
        return 0

    return run, calls


def _log(runs: Path) -> list[dict]:
    return [json.loads(line) for line in (runs / PIPELINE / "schedule.log").read_text().splitlines()]


def test_scheduled_run_skips_unchanged_data_and_retrains_when_an_utterance_is_added(make_corpus, tmp_path,
                                                                                   sqlite_store, capsys):
    manifest = make_corpus(8)
    runs = tmp_path / "runs"
    sets = [f"prepare.source={manifest}", f"register.tracking_uri={sqlite_store}"]
    sets += ["gate.wer.limit=0.5", "gate.wer.min_improvement=0.005", "gate.intensity_rmse.max_regression=0.2"]

    def fire(wer: float, force: bool = False) -> tuple[int, list[str]]:
        run, calls = _fake_pipeline(runs, sqlite_store, sets, wer)
        code = scheduled_run(PIPELINE, "tiny", sets, runs, "sqlite:///unused.db", run, force=force,
                             schedule_name="weekly")
        return code, calls

    code, calls = fire(wer=0.30)  # no champion yet: trains one
    assert code == 0 and len(calls) == 1
    first = _log(runs)[-1]
    assert first["status"] == "ran" and "no champion" in first["reason"] and first["gate"] == "promoted"
    assert ModelRegistry(sqlite_store, PIPELINE).champion() == "1"

    code, calls = fire(wer=0.10)  # same data: skipped, nothing runs
    assert code == 0 and calls == []
    skipped = _log(runs)[-1]
    assert skipped["status"] == "skipped" and "unchanged since champion v1" in skipped["reason"]
    assert skipped["data_sha256"] == first["data_sha256"] and "cache" in skipped["data_check"]
    assert "skipped" in capsys.readouterr().out

    code, calls = fire(wer=0.35, force=True)  # forced: runs, and the gate keeps the worse model out
    assert code == 0 and len(calls) == 1 and _log(runs)[-1]["gate"] == "kept_challenger"

    audio = manifest.parent / "audio" / "added.wav"
    sf.write(audio, tone(1.1, dbfs=-18, freq=300, seed=99), 16000)
    with open(manifest, "a") as f:
        f.write(json.dumps({"id": "added", "audio": "audio/added.wav", "text": "one more utterance",
                            "split": "train"}) + "\n")
    code, calls = fire(wer=0.20)  # new training utterance: retrains; same test split, so the gate compares
    assert code == 0 and len(calls) == 1
    grown = _log(runs)[-1]
    assert grown["status"] == "ran" and "changed since champion v1" in grown["reason"]
    assert grown["data_sha256"] != first["data_sha256"]
    assert grown["gate"] == "promoted" and "on the same evaluation set" in grown["gate_reason"]
    assert ModelRegistry(sqlite_store, PIPELINE).champion() == grown["model_version"] == "3"

    code, calls = fire(wer=0.10)  # and now unchanged again, relative to the new champion
    assert code == 0 and calls == [] and "unchanged since champion v3" in _log(runs)[-1]["reason"]


def test_scheduled_run_is_refused_while_the_pipeline_runs(tmp_path, lock_holder, sqlite_store):
    runs = tmp_path / "runs"
    calls: list[str] = []
    code = scheduled_run(PIPELINE, "tiny", [], runs, sqlite_store, lambda run_id: calls.append(run_id) or 0)
    assert code == EXIT_BUSY and calls == []
    record = _log(runs)[-1]
    assert record["status"] == "busy" and f"pid {lock_holder.pid}" in record["reason"]


@pytest.fixture
def sqlite_store(tmp_path):
    from tests.unit.test_promotion import fresh_sqlite_store

    return fresh_sqlite_store(tmp_path / "mlflow")
