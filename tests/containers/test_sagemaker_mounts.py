"""The train image under SageMaker's mounts: ``/opt/ml`` (channels, config, model, output,
checkpoints) owned by root, as SageMaker mounts them for training jobs, and the image's own user
and entrypoint (``containers/train/Dockerfile``). The reduced setting's ``train`` must complete as
uid 1000 (the model in ``/opt/ml/model`` owned by 1000), and a failing job must leave its reason in
``/opt/ml/output/failure``.

Run first on 2026-12-01 with uid 1000 as the image's USER: it failed ("PermissionError: /opt/ml/output/data").
Since then the job images start as root and ``containers/base/job-entrypoint.sh`` hands the output folders
to uid 1000 and drops to it before any Python runs; this test passes.

Containers tier (``python -m pytest -m containers``); builds the train image if it is missing (about
5 minutes here: the Debian base from Debian's packages, then torch's CUDA wheels).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import images
from tests.conftest import REPO_ROOT
from tests.containers.test_pipeline_in_containers import DEBIAN_BASE, _missing
from tests.integration.test_whisper_intensity_pipeline import REDUCED

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(_missing() is not None, reason=str(_missing())),
    pytest.mark.skipif(os.geteuid() != 0, reason="root-owned mounts need a root test process (as SageMaker's host)"),
]
TRAIN_IMAGE = images.image_uri("train", images.LOCAL_REGISTRY, "latest")
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # carries a TLS-inspecting proxy's CA where there is one


def _podman(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def _upstream_outputs(runs: Path) -> Path:
    """prepare and tokenizer of the reduced setting, on the local backend (the train job's channels)."""
    from pipelines.cli import main

    overrides = [a for a in REDUCED[2:] if a != "--set"]
    for stage in ("prepare", "tokenizer"):
        args = ["--pipeline", "whisper_intensity", "--profile", REDUCED[1], "--runs-dir", str(runs),
                "--run-id", "sm-mounts", "--only", stage, "--quiet"]
        for item in overrides:
            args += ["--set", item]
        assert main(args) == 0, stage
    return runs / "whisper_intensity" / "sm-mounts"


def test_train_completes_as_uid_1000_under_root_owned_opt_ml(tmp_path):
    if _podman("image", "exists", TRAIN_IMAGE).returncode != 0:  # built as containers/run_e2e.sh builds: offline
        if _podman("image", "exists", DEBIAN_BASE).returncode != 0:
            base = subprocess.run(["containers/debian_base.sh", "--name", DEBIAN_BASE], cwd=REPO_ROOT,
                                  capture_output=True, text=True, timeout=1800)
            assert base.returncode == 0, base.stdout[-3000:] + base.stderr[-3000:]
        ca = ["--ca-bundle", str(SYSTEM_CA)] if SYSTEM_CA.is_file() else []
        build = subprocess.run([sys.executable, "containers/build.py", "--only", "train", "--engine", "podman",
                                "--base-image", DEBIAN_BASE, *ca], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=3600)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = _upstream_outputs(tmp_path / "runs")
    ml = tmp_path / "opt_ml"
    for sub in ("input/config", "model", "output", "checkpoints"):
        (ml / sub).mkdir(parents=True)
    shutil.copytree(run / "prepare" / "data", ml / "input/data/data")
    shutil.copytree(run / "tokenizer" / "tokenizer", ml / "input/data/tokenizer")
    from pipelines.registry import get_pipeline

    params = get_pipeline("whisper_intensity", REDUCED[1], [a for a in REDUCED[2:] if a != "--set"])
    train = params.validated_params()["train"].model_dump(mode="json")
    (ml / "input/config/hyperparameters.json").write_text(json.dumps({"params_json": json.dumps(train)}))
    for path in [ml, *ml.rglob("*")]:  # what SageMaker hands the container: root's, 0755
        os.chown(path, 0, 0)
        path.chmod(0o755 if path.is_dir() else 0o644)
    from pipelines.containers import detect

    engine = detect("podman")  # the runtime and limits every podman call here needs (pipelines/containers.py)
    proc = subprocess.run(engine.command("run", "--rm", *engine.run_flags(), "--network", "none",
                                         "-v", f"{ml}:/opt/ml", TRAIN_IMAGE, "--task", "whisper_intensity"),
                          capture_output=True, text=True, timeout=3600)
    failure = ml / "output" / "failure"
    assert proc.returncode == 0, (failure.read_text() if failure.is_file() else "") + proc.stderr[-4000:]
    assert (ml / "model" / "speechops.json").is_file(), "uid 1000 wrote the model into root's /opt/ml/model"
    assert (ml / "model" / "speechops.json").stat().st_uid == 1000, "the stage ran as uid 1000, not as root"
    assert not failure.exists()

    # a failing job still says why where SageMaker looks, written by uid 1000
    bad = subprocess.run(engine.command("run", "--rm", *engine.run_flags(), "--network", "none", "-v", f"{ml}:/opt/ml",
                                        TRAIN_IMAGE, "--task", "whisper_intensity", "--epochs", "many"),
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "epochs" in failure.read_text() and failure.stat().st_uid == 1000
