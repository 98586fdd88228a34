"""Configuration fails fast and loses nothing: misspelt names get the closest valid one, values reach
the stage exactly as validated (null included), and a stage's --help shows types, choices and bounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.backends.local import LocalBackend
from pipelines.config import ConfigError, load_config
from pipelines.definition import PipelineError
from pipelines.registry import get_pipeline
from steps.common.stage import build_params, run_stage, stage_values
from steps.registry import get_stage
from tests.conftest import REPO_ROOT


def problems(*overrides: str) -> str:
    with pytest.raises(PipelineError) as err:
        get_pipeline("whisper_intensity", "tiny", list(overrides))
    return str(err.value)


def test_unknown_stage_section_names_the_closest_stage_and_parameter():
    text = problems("trian.epochs=3")
    assert "stages.trian.epochs" in text and "did you mean train.epochs?" in text
    assert "no stage 'xyz'" in problems("xyz.a=1") and "its stages: prepare" in problems("xyz.a=1")


def test_unknown_parameter_names_the_closest_one():
    assert "did you mean train.epochs?" in problems("train.epohcs=3")
    assert "did you mean common.model_id?" in problems("common.modle_id=scratch")


def test_all_problems_are_listed_at_once():
    text = problems("trian.epochs=3", "train.epohcs=3", "common.modle_id=x", "train.lr=-1")
    for fragment in ("train.epochs?", "common.model_id?", "stages.train.lr"):
        assert fragment in text


def test_unknown_top_level_key_is_suggested(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("stagse: {}\n")
    with pytest.raises(ConfigError, match="did you mean 'stages'"):
        load_config("whisper_intensity", str(profile))


def test_dry_run_fails_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "pipelines/run.py", "--pipeline", "whisper_intensity", "--dry-run",
                           "--runs-dir", str(tmp_path), "--set", "trian.epochs=3"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "train.epochs" in proc.stdout + proc.stderr
    assert not list(tmp_path.iterdir()), "nothing ran, nothing was written"


def test_null_reaches_the_stage_as_null():
    pipeline = get_pipeline("whisper_intensity", "tiny", ["train.max_eval_samples=null", "evaluate.max_items=null"])
    validated = pipeline.validated_params()
    local = LocalBackend(Path("/nonexistent"), echo=False)
    for name in ("train", "evaluate"):
        stage = pipeline.stage(name)
        command = local.stage_command(pipeline, stage, validated[name].model_dump(mode="json"))
        values = stage_values(command[3:])
        task = values.pop("task")
        received = build_params(get_stage(stage.step), task, values)
        assert received == validated[name], "the stage validates exactly what the pipeline validated"
    assert validated["train"].max_eval_samples is None
    assert get_stage("train").params(pipeline.task)().max_eval_samples == 200, "not the default: null itself"


def test_stage_help_shows_types_choices_and_bounds(capsys):
    assert run_stage(get_stage("train"), ["--help", "--task", "whisper_intensity"]) == 0
    text = capsys.readouterr().out
    unit = next(line for line in text.splitlines() if "--intensity-unit" in line)
    assert "dBFS" in unit and "LUFS" in unit
    epochs = next(line for line in text.splitlines() if "--epochs" in line)
    assert "number" in epochs and "> 0" in epochs and "default" in epochs
    samples = next(line for line in text.splitlines() if "--max-eval-samples" in line)
    assert "null" in samples and ">= 1" in samples


def test_stage_help_without_task_lists_the_tasks(capsys):
    assert run_stage(get_stage("train"), ["--help"]) == 0
    text = capsys.readouterr().out
    assert "whisper_intensity" in text and "ctc_asr" in text and "None" not in text
    assert run_stage(get_stage("prepare"), ["--help"]) == 0, "a stage without a task shows its parameters"
    assert "--max-duration" in capsys.readouterr().out
