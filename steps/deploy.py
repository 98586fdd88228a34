"""Stage ``deploy``: bring the model up behind the SageMaker serving contract and prove it answers.

``target=local`` starts the serving app (``python -m serving``) on loopback, sends it one real
request from the test split and one malformed request, records both answers, and stops it. Keep a
model served with ``python pipelines/run.py serve --pipeline NAME``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import httpx
from pydantic import Field

from steps.common.audio import load_audio, to_wav_bytes
from steps.common.manifest import read_manifest, resolve_audio, split_path
from steps.common.stage import Params, StageSpec, run_stage

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


class DeployParams(Params):
    target: Literal["local"] = Field("local", description="local: serve on loopback and send a real request")
    host: str = Field("127.0.0.1", description="loopback address to bind")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    request_split: str = Field("test", description="split the sample request comes from")
    startup_timeout_s: float = Field(180.0, gt=0)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def deploy(params: DeployParams, model: Path, data: Path, registration: Path | None) -> dict:
    port = params.port or free_port(params.host)
    url = f"http://{params.host}:{port}"
    record = read_manifest(split_path(data, params.request_split))[0]
    audio = load_audio(resolve_audio(split_path(data, params.request_split), record.audio))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "serving", "--model-dir", str(model), "--host", params.host, "--port", str(port)]
    log.info("starting %s", " ".join(cmd))
    server = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
    try:
        started = time.time()
        with httpx.Client(base_url=url, timeout=60.0) as client:
            _wait_ready(client, server, params.startup_timeout_s)
            ready_s = time.time() - started
            t0 = time.perf_counter()
            answer = client.post("/invocations", content=to_wav_bytes(audio), headers={"Content-Type": "audio/wav"})
            latency = time.perf_counter() - t0
            answer.raise_for_status()
            bad = client.post("/invocations", content=b"not audio", headers={"Content-Type": "audio/wav"})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    response = answer.json()
    registered = {}
    if registration and (registration / "report.json").is_file():
        registered = json.loads((registration / "report.json").read_text())
    log.info("endpoint answered %s for %s", response, record.id)
    return {
        "endpoint": url,
        "request": f"{record.id} ({record.duration:.2f}s, audio/wav)",
        "reference": {"text": record.text, "intensity": record.intensity},
        "response": response,
        "malformed_request": {"status": bad.status_code, "body": bad.json()},
        "model_uri": registered.get("model_uri"),
        "metrics": {"latency_s": round(latency, 3), "ready_s": round(ready_s, 1),
                    "malformed_status": bad.status_code},
    }


def _wait_ready(client: httpx.Client, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the serving process exited with code {server.returncode} before it was ready")
        try:
            if client.get("/ping", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the endpoint did not answer /ping within {timeout:.0f}s")


SPEC = StageSpec(
    name="deploy",
    kind="processing",
    inputs=("model", "data", "registration"),
    optional_inputs=("registration",),
    outputs=(),
    params=lambda task: DeployParams,
    run=lambda p, task, io: deploy(p, io.inputs["model"], io.inputs["data"], io.inputs.get("registration")),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
