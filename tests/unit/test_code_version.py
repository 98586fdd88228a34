"""The cache's code version covers what a stage really imports, and nothing else.

Every test works on a copy of the repository's Python files (or a tiny synthetic tree) in a temporary
folder: no test touches the real files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.backends.stage_code import code_files, code_version, import_closure
from tests.conftest import REPO_ROOT

TASK = "whisper_intensity"


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")

    def data_files(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir()]

    for package in ("steps", "serving", "pipelines"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=data_files)
    return root


def versions(root: Path, *stages: tuple[str, str]) -> dict[tuple[str, str], str]:
    from pipelines.backends import stage_code

    stage_code._CODE_VERSIONS.clear()  # the per-process memo: these tests change files on purpose
    return {(step, task): code_version(step, task, root) for step, task in stages}


def touch(path: Path, line: str = "\n# changed\n") -> None:
    path.write_text(path.read_text() + line)


STAGES = [("prepare", TASK), ("train", TASK), ("evaluate", TASK), ("register", TASK), ("deploy", TASK),
          ("train", "ctc_asr")]


def test_promotion_code_retrains_nothing_but_changes_register(repo_copy):
    before = versions(repo_copy, *STAGES)
    touch(repo_copy / "steps/common/promotion.py")
    after = versions(repo_copy, *STAGES)
    assert after[("train", TASK)] == before[("train", TASK)]
    assert after[("prepare", TASK)] == before[("prepare", TASK)]
    assert after[("register", TASK)] != before[("register", TASK)]


def test_a_module_train_imports_changes_its_version(repo_copy):
    def files(step: str, task: str) -> set[str]:
        return {str(f.relative_to(repo_copy)) for f in code_files(step, task, repo_copy)}

    whisper_train = files("train", TASK)
    assert "steps/tasks/whisper_intensity/train.py" in whisper_train, "the task's train module (loaded by name)"
    assert "steps/common/promotion.py" not in whisper_train
    only_whisper = sorted(f for f in whisper_train - files("train", "ctc_asr") if f.startswith("steps/models/whisper/"))
    assert only_whisper, "the model family the task's training imports (and the other task's does not)"
    before = versions(repo_copy, *STAGES)
    touch(repo_copy / only_whisper[0])
    after = versions(repo_copy, *STAGES)
    assert after[("train", TASK)] != before[("train", TASK)]
    assert after[("train", "ctc_asr")] == before[("train", "ctc_asr")], "another model family: nothing re-runs"
    assert after[("prepare", TASK)] == before[("prepare", TASK)], "prepare does not use the model family"


def test_data_files_are_not_code(repo_copy):
    before = versions(repo_copy, *STAGES)
    (repo_copy / "steps/tasks/whisper_intensity/notes.yaml").write_text("a: 1\n")
    (repo_copy / "steps/common/table.json").write_text("{}\n")
    assert versions(repo_copy, *STAGES) == before


def test_deploy_covers_the_server_it_starts_and_the_predictor(repo_copy):
    files = {str(f.relative_to(repo_copy)) for f in code_files("deploy", TASK, repo_copy)}
    assert "serving/__main__.py" in files, "deploy runs python -m serving"
    assert "steps/tasks/whisper_intensity/inference.py" in files, "serving loads the task's predictor"


def test_imports_inside_functions_relative_imports_and_python_dash_m(tmp_path):
    steps = tmp_path / "steps"
    (steps / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "lazy.py", "sub/rel.py", "unused.py"):
        (steps / name).write_text("")
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving/__init__.py").write_text("")
    (tmp_path / "serving/__main__.py").write_text("")
    (steps / "sub/stage.py").write_text(
        "import os\n"
        "from . import rel\n"
        "def run():\n"
        "    from steps.lazy import thing\n"
        "    return ['python', '-m', 'serving']\n")
    found = set(import_closure(["steps.sub.stage"], tmp_path))
    assert found == {"steps", "steps.sub", "steps.sub.stage", "steps.sub.rel", "steps.lazy", "serving",
                     "serving.__main__"}
