"""Fault injection: processes killed with SIGKILL at random points (prepare, training, a checkpoint while it is
being written, the runner itself), each followed by the same command, which must then finish with what a run that
was never killed gives: prepare's outputs identical, training's final scores within TOLERANCE (a resumed training
replays the data order and random states saved in its checkpoint, so it lands where the uninterrupted one does;
seen here: identical to the 4 decimals the reports keep, but once 0.0012 dB apart on the intensity RMSE).

The points are drawn at random; the seed is printed with every failure and ``SPEECHOPS_FAULT_SEED`` replays it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SEED = int(os.environ.get("SPEECHOPS_FAULT_SEED") or random.SystemRandom().randrange(1 << 16))
SCORES = ("eval_loss", "val_wer", "val_cer", "val_intensity_rmse")
# largest difference allowed between a resumed and an uninterrupted training's final scores. Usually they are
# identical; one CI run under load (seed 17256; its replay on an idle machine passed) ended 0.0012 dB apart on
# the intensity RMSE (0.3758 vs 0.3746), the other scores equal: a resume is not always bit-exact there, cause
# not found yet. 0.01 dB stays far below anything a listener or the gate could tell apart.
TOLERANCE = {"eval_loss": 1e-3, "val_wer": 1e-3, "val_cer": 1e-3, "val_intensity_rmse": 0.01}
CONFIG = [
    "--pipeline", "whisper_intensity", "--profile", "scratch",
    "--set", "prepare.max_per_split=48", "--set", "tokenizer.vocab_size=400",
    "--set", "train.epochs=6", "--set", "train.batch_size=8", "--set", "train.d_model=64",
    "--set", "train.layers=1", "--set", "train.heads=2", "--set", "train.ffn_dim=128",
    "--set", "train.max_eval_samples=8", "--set", "train.checkpoint_steps=1", "--set", "train.save_total_limit=3",
]
COMPLETE = "speechops-complete.json"  # steps/common/training.py CHECKPOINT_COMPLETE


def _why(message: str) -> str:
    return f"{message} (replay with SPEECHOPS_FAULT_SEED={SEED})"


def _command(runs: Path, run_id: str, only: str) -> list[str]:
    return [sys.executable, "pipelines/run.py", *CONFIG, "--runs-dir", str(runs), "--run-id", run_id, "--only", only,
            "--quiet"]


def _env(runs: Path) -> dict[str, str]:
    return dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs}/mlflow.db")


def _run(runs: Path, run_id: str, only: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(runs, run_id, only), cwd=REPO_ROOT, env=_env(runs), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, _why(done.stdout[-3000:] + done.stderr[-3000:])
    return done


def _start(runs: Path, run_id: str, only: str) -> subprocess.Popen:
    return subprocess.Popen(_command(runs, run_id, only), cwd=REPO_ROOT, env=_env(runs), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _record(runs: Path, run_id: str) -> dict:
    return json.loads((runs / "whisper_intensity" / run_id / "run.json").read_text())


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            kids = []
        found += kids
        queue += kids
    return found


def _stage_process(runner: subprocess.Popen, step: str, timeout: float = 120) -> int:
    """The pid of the runner's ``python -m steps.<step>`` child, once it exists."""
    deadline = time.time() + timeout
    while time.time() < deadline and runner.poll() is None:
        for pid in _children(runner.pid):
            try:
                if f"steps.{step}" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return pid
            except OSError:
                continue
        time.sleep(0.02)
    pytest.fail(_why(f"no steps.{step} process appeared: {runner.communicate()[0][-3000:] if runner.poll() is not None else 'timeout'}"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, OSError):
        return False


def _finish_killed(runner: subprocess.Popen) -> str:
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode != 0, _why("the runner did not notice its stage was killed:\n" + output[-3000:])
    return output


def _checkpoints(runs: Path) -> list[Path]:
    return sorted(runs.glob(".checkpoints/train-*/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _scores(report: dict) -> dict[str, float]:
    return {name: report["metrics"][name] for name in SCORES}


def _assert_close(resumed: dict[str, float], uninterrupted: dict[str, float]) -> None:
    far = {n: (resumed[n], uninterrupted[n]) for n in SCORES if abs(resumed[n] - uninterrupted[n]) > TOLERANCE[n]}
    assert not far, _why(f"resumed training differs from the uninterrupted one by more than {TOLERANCE}: {far}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """prepare, tokenizer and train of CONFIG, never killed: what every faulted run must reproduce."""
    runs = tmp_path_factory.mktemp("uninterrupted") / "runs"
    for stage in ("prepare", "tokenizer", "train"):
        _run(runs, stage, stage)
    prepare, train = _record(runs, "prepare")["stages"]["prepare"], _record(runs, "train")["stages"]["train"]
    report = json.loads((runs / "whisper_intensity/train/train/report.json").read_text())
    assert report["resumed_from"] is None
    return {"prepare": prepare, "prepare_seconds": prepare["seconds"], "train_seconds": train["seconds"],
            "scores": _scores(report), "steps": report["global_steps"]}


def _prepared(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for stage in ("prepare", "tokenizer"):
        _run(runs, stage, stage)
    return runs


def test_prepare_killed_at_a_random_point_publishes_nothing_and_the_rerun_matches(tmp_path, uninterrupted):
    runs = tmp_path / "runs"
    runner = _start(runs, "killed", "prepare")
    stage = _stage_process(runner, "prepare")
    delay = random.Random(SEED).uniform(0.05, 0.6) * uninterrupted["prepare_seconds"]
    time.sleep(delay)
    assert _alive(stage), _why(f"prepare finished within {delay:.1f} s, before the kill")
    os.kill(stage, signal.SIGKILL)
    output = _finish_killed(runner)
    assert "stage 'prepare' failed" in output, _why(output[-3000:])
    assert _record(runs, "killed")["status"] == "failed"
    cache = runs / ".cache"
    assert not [p for p in cache.glob("prepare-*") if (p / "_complete.json").is_file()], _why("a killed prepare published")
    assert not list(cache.glob(".tmp-*")), _why("a staging folder was left in the cache")

    _run(runs, "again", "prepare")
    again = _record(runs, "again")["stages"]["prepare"]
    assert again["status"] == "ran"
    for output_name in ("data", "rejects"):
        assert again["output_hashes"][output_name] == uninterrupted["prepare"]["output_hashes"][output_name], \
            _why(f"prepare's {output_name} after a kill at {delay:.1f} s differs from an uninterrupted run's")


def test_training_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path, uninterrupted):
    runs = _prepared(tmp_path)
    skip = random.Random(SEED + 1).randrange(1, uninterrupted["steps"] // 3)  # checkpoints let through first
    runner = _start(runs, "killed", "train")
    stage = _stage_process(runner, "train")
    seen: set[str] = set()
    cut: Path | None = None
    while cut is None and runner.poll() is None:
        for folder in _checkpoints(runs):
            if folder.name in seen:
                continue
            if (folder / COMPLETE).is_file():  # written between two looks
                seen.add(folder.name)
                continue
            os.kill(stage, signal.SIGSTOP)  # frozen: the folder's state cannot change between the look and the kill
            if folder.is_dir() and not (folder / COMPLETE).is_file() and len(seen) >= skip:
                os.kill(stage, signal.SIGKILL)
                cut = folder
                break
            seen.add(folder.name)
            os.kill(stage, signal.SIGCONT)
        time.sleep(0.002)
    assert cut is not None, _why(f"training finished before a checkpoint write could be cut ({len(seen)} seen)")
    _finish_killed(runner)
    assert cut.is_dir() and not (cut / COMPLETE).is_file()
    step = int(cut.name.rsplit("-", 1)[1])

    again = _run(runs, "again", "train")
    report = json.loads((runs / "whisper_intensity/again/train/report.json").read_text())
    assert report["resumed_from"], _why("the re-run did not resume:\n" + again.stderr[-3000:])
    resumed_step = int(Path(report["resumed_from"]).name.rsplit("-", 1)[1])
    assert resumed_step < step, _why(f"resumed from {report['resumed_from']}, the checkpoint that was cut was {step}")
    assert step - resumed_step <= 1, _why(f"lost {step - resumed_step} steps with a checkpoint every step")
    log = (runs / "whisper_intensity/again/train/log.txt").read_text()
    assert f"checkpoint {cut.name} is incomplete" in log and f"moved aside to incomplete-{cut.name}-" in log, \
        _why("the cut checkpoint was not reported and set aside:\n" + log[-3000:])
    assert not cut.parent.exists(), "the stage's checkpoints outlived its published output"
    assert report["global_steps"] == uninterrupted["steps"]
    _assert_close(_scores(report), uninterrupted["scores"])


def test_runner_killed_at_a_random_point_of_training_is_found_and_the_rerun_resumes(tmp_path, uninterrupted):
    runs = _prepared(tmp_path)
    runner = _start(runs, "killed", "train")
    stage = _stage_process(runner, "train")
    deadline = time.time() + 300
    while time.time() < deadline and runner.poll() is None and not any(
            (c / COMPLETE).is_file() for c in _checkpoints(runs)):
        time.sleep(0.05)
    delay = random.Random(SEED + 2).uniform(0, 0.4) * uninterrupted["train_seconds"]
    time.sleep(delay)
    assert runner.poll() is None, _why(f"the run ended within {delay:.1f} s, before the kill")
    runner.kill()  # SIGKILL: the runner can record nothing
    runner.communicate(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and _alive(stage):
        time.sleep(0.1)
    assert not _alive(stage), _why("the training stage outlived its runner (an orphan writing checkpoints)")
    assert _record(runs, "killed")["status"] == "running"  # what a SIGKILL leaves: found by the next run

    again = _run(runs, "again", "train")
    assert "'killed' was left running by a runner that is gone" in again.stderr, _why(again.stderr[-3000:])
    assert _record(runs, "killed")["status"] == "abandoned"
    assert not list((runs / ".cache").glob(".tmp-*")), _why("the dead runner's staging folder is still in the cache")
    report = json.loads((runs / "whisper_intensity/again/train/report.json").read_text())
    assert report["resumed_from"], _why(f"killed {delay:.1f} s after a complete checkpoint, yet the re-run started over")
    assert report["global_steps"] == uninterrupted["steps"]
    _assert_close(_scores(report), uninterrupted["scores"])
