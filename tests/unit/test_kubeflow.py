"""The Kubeflow backend's compiled spec, checked against the definition the local backend runs: components,
images, commands, parameters, the gate's condition, resources and caching; kfp's own loader accepts it.
The gate check itself, schedules and option errors. (The kfp.local run is in the integration tier.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from pipelines import images
from pipelines.backends.local import LocalBackend
from pipelines.registry import get_pipeline
from steps.common.gate import Gate, GateMetric
from steps.common.gate_check import check
from steps.common.gate_check import main as gate_check_main
from tests.conftest import REPO_ROOT

kfp = pytest.importorskip("kfp")


def _cli(*args: str, runs_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHOPS_PROGRESS="0")
    return subprocess.run([sys.executable, "pipelines/run.py", *args, "--runs-dir", str(runs_dir)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("kfp")
    done = _cli("--pipeline", "whisper_intensity", "--backend", "kubeflow", "--dry-run",
                "--kfp-image-registry", "registry.example.org/ml", "--kfp-image-tag", "abc123def456", runs_dir=runs)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = runs / "whisper_intensity" / "kubeflow" / "speechops-whisper-intensity.yaml"
    return spec, yaml.safe_load(spec.read_text()), done.stdout


def _executor(document: dict, task: str, dag: dict | None = None) -> dict:
    dag = dag or document["root"]["dag"]
    component = dag["tasks"][task]["componentRef"]["name"]
    executor = document["components"][component]["executorLabel"]
    return document["deploymentSpec"]["executors"][executor]["container"]


def test_the_spec_is_what_kfp_loads(dry_run):
    from kfp import components

    spec, _, out = dry_run
    loaded = components.load_component_from_file(str(spec))
    assert loaded.name == "speechops-whisper-intensity"
    assert "quality gate: wer <= max_wer" in out and "pipeline parameters" in out


def test_components_run_the_stage_commands_of_the_local_backend(dry_run, tmp_path):
    """Same images (the stage's, at the pinned tag), same entrypoints, same parameter documents."""
    _, document, _ = dry_run
    pipeline = get_pipeline("whisper_intensity", "tiny", [])
    params = {n: p.model_dump(mode="json") for n, p in pipeline.validated_params().items()}
    local = LocalBackend(tmp_path)
    gated = document["root"]["dag"]["tasks"]["condition-1"]["componentRef"]["name"]
    condition_dag = document["components"][gated]["dag"]
    for stage in pipeline.order():
        expected = local.stage_command(pipeline, stage, params[stage.name])[1:]  # without the interpreter
        inside = stage.name in condition_dag["tasks"]
        container = _executor(document, stage.name, condition_dag if inside else None)
        image = "train" if stage.step == "tune" else stage.step
        assert container["image"] == f"registry.example.org/ml/speechops-{image}:abc123def456"
        argv = container["command"] + container["args"]
        assert argv[:2] == [images.JOB_ENTRYPOINT, "python"] and argv[2:len(expected) + 2] == expected, stage.name
        # every wired input and every output reaches the stage as a path (the stage contract)
        for name in stage.inputs:
            i = argv.index(name, argv.index("--input-path"))
            assert argv[i - 1] == "--input-path" and argv[i + 1] == f"{{{{$.inputs.artifacts['{name}'].path}}}}"
        for name in stage.spec.all_outputs:
            assert f"{{{{$.outputs.artifacts['{name}'].path}}}}" in argv
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["SPEECHOPS_PIPELINE"] == "whisper_intensity"
        resources = container["resources"]
        assert resources["cpuLimit"] == stage.resources.cpus and resources["memoryLimit"] == stage.resources.memory_gb
        if stage.resources.gpus:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert int(resources["accelerator"]["resourceCount"]) == stage.resources.gpus
        else:
            assert "accelerator" not in resources
    # per-run values override the document: --epochs / --lr after it, from pipeline parameters
    train = _executor(document, "train")
    args = train["command"] + train["args"]
    assert args[args.index("--epochs") + 1] == "{{$.inputs.parameters['train_epochs']}}"


def test_register_and_deploy_run_only_when_the_gate_passes(dry_run):
    _, document, _ = dry_run
    root = document["root"]
    condition = root["dag"]["tasks"]["condition-1"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--quality-gate-passed'] == 'pass'")
    assert set(document["components"][condition["componentRef"]["name"]]["dag"]["tasks"]) == {"register", "deploy"}
    assert {"register", "deploy"}.isdisjoint(root["dag"]["tasks"])
    gate = _executor(document, "quality-gate")
    argv = gate["command"] + gate["args"]
    assert argv[:4] == [images.JOB_ENTRYPOINT, "python", "-m", "steps.common.gate_check"]
    gate_json = json.loads(argv[argv.index("--gate-json") + 1])
    assert [m["name"] for m in gate_json["metrics"]] == ["wer", "intensity_rmse", "guard_wer_increase"]
    limits = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--limit"]
    assert limits == [("wer", "{{$.inputs.parameters['max_wer']}}"),
                      ("intensity_rmse", "{{$.inputs.parameters['max_intensity_rmse']}}"),
                      ("guard_wer_increase", "{{$.inputs.parameters['max_guard_wer_increase']}}")]
    parameters = root["inputDefinitions"]["parameters"]
    assert {k: v["defaultValue"] for k, v in parameters.items()} == {
        "max_wer": 0.5, "max_intensity_rmse": 3.0, "max_guard_wer_increase": 0.01, "train_epochs": 1.0,
        "train_lr": 0.0001}


def test_caching_follows_the_definition(dry_run):
    _, document, _ = dry_run
    tasks = dict(document["root"]["dag"]["tasks"])
    gated = document["components"][tasks.pop("condition-1")["componentRef"]["name"]]["dag"]["tasks"]
    cache = {name: task["cachingOptions"].get("enableCache", False) for name, task in {**tasks, **gated}.items()}
    assert cache == {"prepare": True, "tokenizer": True, "train": True, "evaluate": True, "export": True,
                     "quality-gate": False, "register": False, "deploy": False}


@pytest.mark.parametrize("pipeline,profile", [("ctc_asr", "tiny"), ("whisper_asr", "tiny"), ("prosody_ser", "tiny"),
                                              ("voice_conversion", "tiny"), ("whisper_intensity", "scratch")])
def test_every_pipeline_compiles_and_loads(pipeline, profile, tmp_path):
    from kfp import components

    from pipelines.backends.kubeflow_compile import compile_spec, plan_pipeline

    built = get_pipeline(pipeline, profile, ["tune.enabled=true"] if pipeline == "ctc_asr" else [])
    params = {n: p.model_dump(mode="json") for n, p in built.validated_params().items()}
    plan = plan_pipeline(built, params, "localhost", "t1", ["train.epochs"])
    spec = compile_spec(plan, tmp_path / "spec.yaml")
    assert components.load_component_from_file(str(spec)).name == plan.name
    if pipeline == "ctc_asr":  # the tune stage is one component, in the train image
        assert plan.stage("tune").image == "localhost/speechops-train:t1"
    if pipeline == "whisper_intensity":  # scratch sets no absolute limit: no gate, nothing conditional
        assert plan.gate is None and plan.gated == []


def test_schedule_and_parameters(tmp_path):
    done = _cli("--pipeline", "ctc_asr", "--backend", "kubeflow", "--dry-run", "--schedule", "0 3 * * 0",
                "--param", "max_wer=0.7", runs_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    request = json.loads(done.stdout[done.stdout.index("{"): done.stdout.rindex("}") + 1])
    assert request["cron_expression"] == "0 0 3 * * 0" and request["params"]["max_wer"] == 0.7
    assert request["max_concurrency"] == 1 and request["job_name"] == "speechops-ctc-asr-retrain"

    bad = _cli("--pipeline", "ctc_asr", "--backend", "kubeflow", "--dry-run", "--schedule", "every sunday",
               "--param", "max_wer=low", runs_dir=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr
    assert "max_wer is a float" in bad.stdout + bad.stderr


def test_options_belong_to_their_backend_and_a_run_needs_a_target(tmp_path):
    wrong = _cli("--pipeline", "ctc_asr", "--kfp-local", runs_dir=tmp_path)
    assert wrong.returncode == 2 and "--kfp-local need --backend kubeflow" in wrong.stdout + wrong.stderr
    nowhere = _cli("--pipeline", "ctc_asr", "--backend", "kubeflow", runs_dir=tmp_path)
    assert nowhere.returncode == 2 and "--kfp-host URL" in nowhere.stdout + nowhere.stderr
    assert "Traceback" not in wrong.stderr + nowhere.stderr
    latest = _cli("--pipeline", "ctc_asr", "--backend", "kubeflow", "--dry-run", "--kfp-image-tag", "latest",
                  runs_dir=tmp_path)
    assert latest.returncode == 2 and "moves with every push" in latest.stdout + latest.stderr


def test_gate_check_in_each_direction(tmp_path):
    gate = Gate(metrics=(GateMetric(name="wer", limit=0.5), GateMetric(name="uar", direction="higher", limit=0.6)))
    assert check(gate, {"wer": 0.4, "uar": 0.7}, {})[0]
    assert not check(gate, {"wer": 0.4, "uar": 0.5}, {})[0]
    assert check(gate, {"wer": 0.4, "uar": 0.5}, {"uar": 0.45})[0]  # the run's limit wins
    ok, lines = check(gate, {"wer": float("nan"), "uar": 0.9}, {})
    assert not ok and "no finite value" in lines[0]

    (tmp_path / "report.json").write_text(json.dumps({"metrics": {"wer": 0.3, "uar": 0.65}}))
    argv = ["--gate-json", gate.model_dump_json(), "--report", str(tmp_path), "--result", str(tmp_path / "r")]
    assert gate_check_main(argv) == 0 and (tmp_path / "r").read_text() == "pass"
    assert gate_check_main([*argv, "--limit", "wer", "0.2"]) == 0 and (tmp_path / "r").read_text() == "fail"
    assert gate_check_main([*argv, "--limit", "cer", "0.2"]) == 2  # not a gate metric
