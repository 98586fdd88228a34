"""Stage ``deploy``: bring the model up behind the SageMaker serving contract and prove it answers.

``target=local`` starts the serving app (``python -m serving``) on loopback, sends it one real
request from the test split (built by the task's handler: ``sample_request``) and one malformed
request, records both answers (``describe``), and stops it. Keep a
model served with ``python pipelines/run.py serve --pipeline NAME``.

``target=sagemaker`` (what the SageMaker backend compiles) deploys a Model Registry version (or an
image plus a model.tar.gz) to a real-time endpoint through ``steps.common.sagemaker_endpoint``: a new
endpoint configuration each time, so an existing endpoint is updated without downtime, and a
target-tracking autoscaling policy on invocations per instance; or to a serverless endpoint when
``serverless_memory_mb`` is set. It then sends the endpoint one real request from the test split.
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
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from steps.common.manifest import read_manifest, split_path
from steps.common.stage import Params, StageSpec, run_stage
from steps.tasks import get_task
from steps.tasks.base import read_model_card
from steps.tasks.io import Answer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


class DeployParams(Params):
    target: Literal["local", "sagemaker"] = Field(
        "local", description="local: serve on loopback and send a real request; sagemaker: an autoscaled endpoint")
    host: str = Field("127.0.0.1", description="loopback address to bind")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    request_split: str = Field("test", description="split the sample request comes from")
    startup_timeout_s: float = Field(180.0, gt=0)
    request_timeout_s: float = Field(120.0, gt=0, description="local: wait at most this long for the sample answer")
    # target=sagemaker (the SageMaker backend fills the names, the role, the image and the model)
    endpoint_name: str | None = Field(None, description="sagemaker: endpoint name (the backend: its pipeline name)")
    model_package_arn: str | None = Field(None, description="sagemaker: Model Registry version to deploy")
    image_uri: str | None = Field(None, description="sagemaker: serving image (with model_data_url, without a package)")
    model_data_url: str | None = Field(None, description="sagemaker: model.tar.gz in S3 (without a package)")
    execution_role_arn: str | None = Field(None, description="sagemaker: role the endpoint's model runs as")
    region: str | None = Field(None, description="sagemaker: AWS region (default: the job's)")
    instance_type: str = Field("ml.m5.xlarge", description="sagemaker: endpoint instance type")
    initial_instance_count: int = Field(1, ge=1, description="sagemaker: instances when the endpoint starts")
    min_capacity: int = Field(1, ge=1, description="sagemaker: autoscaling minimum instances")
    max_capacity: int = Field(4, ge=1, description="sagemaker: autoscaling maximum instances")
    target_invocations_per_instance: float = Field(
        100.0, gt=0, description="sagemaker: target of SageMakerVariantInvocationsPerInstance (per minute)")
    scale_in_cooldown_s: int = Field(300, ge=0, description="sagemaker: seconds between scale-in activities")
    scale_out_cooldown_s: int = Field(60, ge=0, description="sagemaker: seconds between scale-out activities")
    serverless_memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] | None = Field(
        None, description="sagemaker: serverless inference with this memory (no instances, no autoscaling policy)")
    serverless_max_concurrency: int = Field(5, ge=1, le=200, description="sagemaker: serverless concurrent requests")
    endpoint_timeout_s: float = Field(3600.0, gt=0, description="sagemaker: wait at most this long for InService")

    @model_validator(mode="after")
    def _capacity(self) -> DeployParams:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity ({self.min_capacity}) must not exceed max_capacity ({self.max_capacity})")
        return self


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def deploy(params: DeployParams, model: Path, data: Path, registration: Path | None, task: str | None = None) -> dict:
    if params.target == "sagemaker":
        check_sagemaker_params(params)
    handler = get_task(task or read_model_card(model)["task"]).handler_class()
    manifest = split_path(data, params.request_split)  # the sample request, read before anything starts
    record = read_manifest(manifest)[0]
    if params.target == "sagemaker":
        json_type = "application/json" if "application/json" in handler.request_types else None
        return deploy_sagemaker(params, handler, record, handler.sample_request(manifest, record, json_type))
    request = handler.sample_request(manifest, record)
    import httpx

    port = params.port or free_port(params.host)
    url = f"http://{params.host}:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "serving", "--model-dir", str(model), "--host", params.host, "--port", str(port)]
    log.info("starting %s", " ".join(cmd))
    server = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
    bad_request = handler.malformed_request()
    try:
        started = time.time()
        with httpx.Client(base_url=url, timeout=params.request_timeout_s) as client:
            _wait_ready(client, server, params.startup_timeout_s)
            ready_s = time.time() - started
            t0 = time.perf_counter()
            answer = client.post("/invocations", content=request.body,
                                 headers={"Content-Type": request.content_type, "Accept": request.accept})
            latency = time.perf_counter() - t0
            if answer.status_code != 200:
                raise RuntimeError(f"the endpoint answered the sample request {record.id} with {answer.status_code}: "
                                   f"{answer.text[:500]}")
            bad = client.post("/invocations", content=bad_request.body,
                              headers={"Content-Type": bad_request.content_type})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    if not 400 <= bad.status_code < 500:
        raise RuntimeError(f"the endpoint answered a malformed request with {bad.status_code}, not a 4xx: "
                           f"{bad.text[:300]}")
    described = handler.describe(Answer(answer.content, answer.headers.get("content-type", "").split(";")[0]), record)
    registered = {}
    if registration and (registration / "report.json").is_file():
        registered = json.loads((registration / "report.json").read_text())
    log.info("endpoint answered %s for %s", described["response"], record.id)
    return {
        "endpoint": url,
        "request": f"{record.id} ({record.duration:.2f}s, {request.content_type})",
        **described,
        "malformed_request": {"status": bad.status_code, "body": bad.json()},
        "model_uri": registered.get("model_uri"),
        "metrics": {"latency_s": round(latency, 3), "ready_s": round(ready_s, 1),
                    "malformed_status": bad.status_code},
    }


def deploy_sagemaker(params: DeployParams, handler: type, record, request) -> dict:
    """Deploy to a SageMaker endpoint (create or update, autoscaling), then ask it one real question."""
    import boto3

    from steps.common import sagemaker_endpoint as endpoints

    session = boto3.Session(region_name=params.region) if params.region else boto3.Session()
    sagemaker, autoscaling = session.client("sagemaker"), session.client("application-autoscaling")
    if params.model_package_arn:
        status = sagemaker.describe_model_package(ModelPackageName=params.model_package_arn)["ModelApprovalStatus"]
        if status != "Approved":
            note = (f"not deployed: model package {params.model_package_arn} is {status}; approve it "
                    "(aws sagemaker update-model-package --model-approval-status Approved) and run deploy again")
            log.warning(note)
            return {"deployed": False, "model_package_arn": params.model_package_arn, "notes": [note],
                    "metrics": {"deployed": False}}
    spec = endpoints.EndpointSpec(
        endpoint_name=params.endpoint_name, execution_role_arn=params.execution_role_arn,
        model_package_arn=params.model_package_arn, image_uri=None if params.model_package_arn else params.image_uri,
        model_data_url=None if params.model_package_arn else params.model_data_url,
        instance_type=params.instance_type, initial_instance_count=params.initial_instance_count,
        serverless_memory_mb=params.serverless_memory_mb, serverless_max_concurrency=params.serverless_max_concurrency,
        autoscaling=endpoints.Autoscaling(params.min_capacity, params.max_capacity,
                                          params.target_invocations_per_instance, params.scale_in_cooldown_s,
                                          params.scale_out_cooldown_s))
    result = endpoints.deploy_endpoint(sagemaker, autoscaling, spec, timeout_s=params.endpoint_timeout_s)
    answer = endpoints.invoke(session.client("sagemaker-runtime"), params.endpoint_name, request.body,
                              request.content_type, request.accept)
    described = handler.describe(Answer(answer["body"], answer["content_type"] or request.accept), record)
    log.info("endpoint %s answered %s for %s", params.endpoint_name, described["response"], record.id)
    return {
        "deployed": True,
        **result,
        "endpoint": result["endpoint_arn"],
        "model_package_arn": params.model_package_arn,
        "request": f"{record.id} ({record.duration:.2f}s, {request.content_type})",
        **described,
        "metrics": {"endpoint": f"{params.endpoint_name} ({result['action']})", "latency_s": answer["latency_s"],
                    "serverless": result["serverless"]},
    }


def check_sagemaker_params(params: DeployParams) -> None:
    missing = [name for name in ("endpoint_name", "execution_role_arn") if not getattr(params, name)]
    if not params.model_package_arn and not (params.image_uri and params.model_data_url):
        missing.append("model_package_arn (or image_uri and model_data_url)")
    if missing:
        raise ValueError(f"target=sagemaker needs {', '.join(missing)}: run the pipeline with --backend sagemaker, "
                         "which fills them, or pass them as --set deploy.<name>=...")


def _wait_ready(client: httpx.Client, server: subprocess.Popen, timeout: float) -> None:
    import httpx

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
    run=lambda p, task, io: deploy(p, io.inputs["model"], io.inputs["data"], io.inputs.get("registration"), task),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
