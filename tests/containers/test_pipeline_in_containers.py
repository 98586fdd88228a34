"""The `containers` tier: build every image with podman and run a pipeline in containers, end to end.

Slow (the first build downloads torch into the bases: about 8 minutes here; later builds reuse the
layers) and skipped where podman or podman-compose is missing. Run it with
``python -m pytest -m containers``; ``.ci/run`` does when podman is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_whisper_intensity_pipeline import REDUCED  # the same reduced setting

DEBIAN_BASE = "localhost/speechops-debian:bookworm"


def _missing() -> str | None:
    """Why this machine cannot run the tier, or None."""
    for tool in ("podman", "podman-compose", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman debootstrap curl; pip install podman-compose)"
    if shutil.which("debootstrap") is None:
        from pipelines.containers import detect

        if not detect("podman").image_exists(DEBIAN_BASE):
            return f"debootstrap is not installed and there is no {DEBIAN_BASE} image to build on"
    return None


pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(_missing() is not None, reason=str(_missing())),
]



def test_whisper_intensity_runs_in_containers_and_the_serving_container_answers(tmp_path):
    args = ["containers/run_e2e.sh", "--runs-dir", str(tmp_path / "runs"), "--profile", REDUCED[1]]
    for i in range(2, len(REDUCED), 2):
        args += ["--set", REDUCED[i + 1]]
    proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=3600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    runs = list((tmp_path / "runs" / "whisper_intensity").glob("containers-*"))
    assert len(runs) == 1
    run = json.loads((runs[0] / "run.json").read_text())
    assert run["status"] == "succeeded"
    assert {name: s["status"] for name, s in run["stages"].items()} == {
        name: "ran" for name in ("prepare", "tokenizer", "train", "evaluate", "export", "register", "deploy")}
    assert (runs[0] / "compose.yaml").is_file()
    evaluation = json.loads((runs[0] / "evaluate" / "report.json").read_text())
    assert 0.0 <= evaluation["metrics"]["wer"] <= 2.0
    assert re.search(r"GET /ping -> .*\(HTTP 200\)", out), out[-3000:]
    answer = re.search(r"  -> (\{.*\}) \(HTTP 200\)", out)
    assert answer, out[-3000:]
    body = json.loads(answer.group(1))
    assert "transcript" in body and isinstance(body["intensity_dbfs"], float)
    assert re.search(r"malformed request -> .*\(HTTP 4\d\d\)", out)
