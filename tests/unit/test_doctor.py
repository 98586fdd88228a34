"""The environment check: the lock, known-broken pairs and the import probe, with fake broken packages
shadowing the real ones through PYTHONPATH (as a wrong torchaudio on a user's machine would)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pipelines import doctor

REPO = Path(__file__).resolve().parents[2]


def fake_package(root: Path, name: str, version: str, body: str) -> Path:
    """A package ``name`` at ``version`` whose import runs ``body`` (e.g. raises like a broken .so)."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(textwrap.dedent(body))
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def run_cli(args: list[str], pythonpath: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "SPEECHOPS_RUNS_DIR": str(tmp_path / "runs")}
    return subprocess.run([sys.executable, str(REPO / "pipelines" / "run.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


BROKEN_SO = """
raise OSError("Could not load this library: libtorchaudio.so (undefined symbol: "
              "torch_exception_get_what_without_backtrace)")
"""


def test_the_lock_is_read_and_pins_torch_and_torchaudio_to_the_same_release():
    pins = doctor.read_lock()
    assert pins, "constraints.txt must exist at the repository root"
    assert pins["torch"] == pins["torchaudio"]
    assert doctor.lock_path() == REPO / "constraints.txt"


def test_a_torchaudio_of_another_release_fails_doctor_and_the_main_job_at_once(tmp_path):
    torch_version = doctor.installed_version("torch")
    site = fake_package(tmp_path / "site", "torchaudio", "2.11.1", BROKEN_SO)
    result = run_cli(["doctor"], site, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert f"torchaudio 2.11.1 does not match torch {torch_version}" in text
    assert f"the lock wants torchaudio {doctor.read_lock()['torchaudio']}" in text
    assert 'pip install -c constraints.txt -e ".[test]"' in text

    started = time.monotonic()
    result = run_cli(["--pipeline", "whisper_intensity", "--run-id", "broken"], site, tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "cannot run the stages: torchaudio 2.11.1" in text and "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runs" / "whisper_intensity" / "broken" / "prepare").exists(), "no stage may start"
    assert elapsed < 60


def test_a_package_that_does_not_import_is_named_with_the_version_the_lock_wants(tmp_path):
    """Same release as torch, still broken: only the import probe can tell, and it says which package."""
    version = doctor.installed_version("torch")
    site = fake_package(tmp_path / "site", "torchaudio", version, BROKEN_SO)
    result = run_cli(["doctor"], site, tmp_path)
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert f"torchaudio {version} does not import (OSError: Could not load this library" in text
    assert "import check: failed" in text


def test_a_passed_import_check_is_remembered_for_the_same_installed_set(tmp_path):
    first = doctor.check(memo_dir=tmp_path)
    assert first.import_check == "passed" and not first.errors
    second = doctor.check(memo_dir=tmp_path)
    assert second.import_check == "remembered"
    assert len(list(tmp_path.glob("environment-*.ok"))) == 1


def test_a_version_that_differs_from_the_lock_is_a_warning_not_an_error(tmp_path, monkeypatch):
    lock = tmp_path / "constraints.txt"
    pins = doctor.read_lock()
    pins["mlflow"] = "0.0.1"
    lock.write_text("\n".join(f"{k}=={v}" for k, v in pins.items()))
    monkeypatch.setattr(doctor, "LOCK_CANDIDATES", (lock,))
    report = doctor.check(imports=False)
    assert not report.errors
    assert any(w.package == "mlflow" and "the lock has 0.0.1" in w.message for w in report.warnings)


def test_a_missing_heavy_package_is_an_error(monkeypatch):
    missing = "onnxruntime"
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda name: None if name == missing else real(name))
    report = doctor.check(imports=False)
    assert [f.package for f in report.errors] == [missing]
    assert "is not installed" in report.errors[0].message
