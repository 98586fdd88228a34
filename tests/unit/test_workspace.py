"""The workspace (runs folder, tracking URI, cache, lock) and the one backend interface over it."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.backends import cache as cache_module
from pipelines.backends.base import Backend
from pipelines.backends.cache import StageCache
from pipelines.backends.compose import ComposeBackend
from pipelines.backends.local import LocalBackend
from pipelines.workspace import Workspace, default_runs_dir
from tests.conftest import REPO_ROOT


def test_runs_dir_and_tracking_uri_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEECHOPS_RUNS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_runs_dir() == tmp_path / "elsewhere"
    workspace = Workspace.at()
    assert workspace.runs_dir == (tmp_path / "elsewhere").resolve()
    assert workspace.tracking_uri == f"sqlite:///{workspace.runs_dir / 'mlflow' / 'mlflow.db'}"
    assert workspace.cache_dir == workspace.runs_dir / ".cache"
    assert workspace.run_dir("p", "r1") == workspace.runs_dir / "p" / "r1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert Workspace.at(tmp_path).tracking_uri == "http://mlflow.example:5000"


def test_the_lock_refuses_a_second_holder(tmp_path):
    workspace = Workspace.at(tmp_path)
    with workspace.lock("p", purpose="first"):
        script = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
                  "from pipelines.workspace import Workspace, PipelineBusy\n"
                  "try:\n"
                  f"    Workspace.at({str(tmp_path)!r}).lock('p').__enter__()\n"
                  "except PipelineBusy as exc:\n"
                  "    print('busy:', exc)\n")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("busy:") and "first" in out
    with workspace.lock("p"):
        pass  # released


def test_every_backend_has_the_one_interface():
    from pipelines.backends.sagemaker import SageMakerBackend

    for backend in (LocalBackend, ComposeBackend, SageMakerBackend):
        assert issubclass(backend, Backend)
        for method in ("plan", "run", "print_plan", "print_result", "config_overrides"):
            assert callable(getattr(backend, method))


def test_no_backend_imports_the_cli():
    script = ("import sys\n"
              "import pipelines.backends.local, pipelines.backends.compose, pipelines.backends.sagemaker\n"
              "import pipelines.backends.base, pipelines.workspace, pipelines.schedule\n"
              "print('pipelines.cli' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_local_backend_adds_the_workspace_tracking_uri(tmp_path):
    workspace = Workspace.at(tmp_path)
    backend = LocalBackend(workspace)
    assert backend.config_overrides(workspace, ["train.epochs=1"]) == [
        f"stages.register.tracking_uri={workspace.tracking_uri}", "train.epochs=1"]
    mine = ["register.tracking_uri=http://x"]
    assert backend.config_overrides(workspace, mine) == mine


def test_external_inputs_are_rehashed_only_when_they_change(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("one")
    os.utime(data / "a.txt", (1_700_000_000, 1_700_000_000))  # not just written (see the racy rule below)
    cache = StageCache(tmp_path / "cache")
    calls = []
    real = cache_module.hash_tree
    monkeypatch.setattr(cache_module, "hash_tree", lambda path: calls.append(path) or real(path))
    first = cache.hash_external(data)
    assert cache.hash_external(data) == first and len(calls) == 1, "unchanged: remembered"
    (data / "a.txt").write_text("two")
    second = cache.hash_external(data)
    assert second != first and second == real(data) and len(calls) == 2
    (data / "b.txt").write_text("new file")
    assert cache.hash_external(data) == real(data) and len(calls) == 3
    assert cache.hash_external(data) == real(data) and len(calls) == 4, "just modified: read again every time"


def test_cli_dry_run_goes_through_plan_and_writes_nothing(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["--pipeline", "whisper_intensity", "--dry-run", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "plan" in out and "prepare" in out
    assert not (tmp_path / "runs" / "whisper_intensity").exists()
