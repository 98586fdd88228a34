"""The SageMaker dry run: the definition the CLI writes is the local pipeline, step for step.

Checked structurally against the ``Pipeline`` object the local backend runs (``get_pipeline``) and
the local backend's own stage commands, not against a golden file. The dry run must not open a
network connection.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sagemaker.core.workflow.parameters", reason="the SageMaker SDK (pip install -e '.[aws]')")

from pipelines import images  # noqa: E402
from pipelines.backends.local import LocalBackend  # noqa: E402
from pipelines.cli import main  # noqa: E402
from pipelines.registry import get_pipeline  # noqa: E402
from steps.common import contract  # noqa: E402
from steps.common.stage import PARAMS_JSON, PARAMS_JSON_OPTION, MAX_CONTAINER_ARGUMENT  # noqa: E402
from steps.tasks import get_task  # noqa: E402

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/speechops-sagemaker-execution"
MLFLOW = "https://mlflow.example.com"


def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt (AWS, telemetry, DNS) fails the test; no AWS credentials are set."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the dry run tried to open a network connection: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def no_network(monkeypatch):
    block_network(monkeypatch)


def dry_run(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any] | None]:
    out = tmp_path / "definition.json"
    code = main(["--pipeline", "whisper_intensity", "--backend", "sagemaker", "--dry-run", "--runs-dir",
                 str(tmp_path / "runs"), "--definition-out", str(out), *extra])
    return code, (json.loads(out.read_text()) if out.is_file() else None)


def all_steps(steps: list[dict[str, Any]], branch: str = "top") -> dict[str, tuple[dict[str, Any], str]]:
    """Step name -> (step, where it sits: top | if:<condition> | else:<condition>)."""
    found = {}
    for step in steps:
        found[step["Name"]] = (step, branch)
        if step["Type"] == "Condition":
            found |= all_steps(step["Arguments"].get("IfSteps", []), f"if:{step['Name']}")
            found |= all_steps(step["Arguments"].get("ElseSteps", []), f"else:{step['Name']}")
    return found


def get(name: str) -> dict[str, str]:
    return {"Get": name}


def join(*values: Any) -> dict[str, Any]:
    return {"Std:Join": {"On": "", "Values": list(values)}}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Any]:
    """One dry run with every stage compiled (MLflow configured), shared by the structural checks."""
    tmp = tmp_path_factory.mktemp("sm")
    mp = pytest.MonkeyPatch()
    try:
        block_network(mp)
        code, definition = dry_run(tmp, "--sagemaker-role", ROLE, "--sagemaker-bucket", "speechops-unit",
                                   "--sagemaker-region", "eu-west-1", "--sagemaker-image-registry", REGISTRY,
                                   "--sagemaker-image-tag", "t1", "--sagemaker-mlflow-uri", MLFLOW)
    finally:
        mp.undo()
    assert code == 0
    pipeline = get_pipeline("whisper_intensity", "tiny", [])
    return {"definition": definition, "steps": all_steps(definition["Steps"]), "pipeline": pipeline,
            "params": pipeline.validated_params()}


def test_dry_run_needs_no_credentials_and_opens_no_connection(tmp_path, no_network, capsys):
    code, definition = dry_run(tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert definition["Steps"], "a definition with steps was written"
    assert "nothing was sent to AWS" in out
    assert "placeholders" in out and "--sagemaker-role" in out, "the plan says what a real run still needs"
    names = set(all_steps(definition["Steps"]))
    assert {"prepare", "tokenizer", "train", "evaluate", "export", "deploy", "register-model-package"} <= names
    assert "register" not in names, "no MLflow server configured: the MLflow stage is left out, and said so"
    assert "register: MLflow logging is off" in out


def test_every_stage_is_a_step_of_the_right_type_with_its_image(compiled):
    steps, pipeline = compiled["steps"], compiled["pipeline"]
    for stage in pipeline.stages:
        step, _ = steps[stage.name]
        expected = "Training" if stage.spec.kind == "training" else "Processing"
        assert step["Type"] == expected, stage.name
        args = step["Arguments"]
        image = args["AlgorithmSpecification"]["TrainingImage"] if expected == "Training" else \
            args["AppSpecification"]["ImageUri"]
        assert image == images.image_uri(stage.step, REGISTRY, "t1")
        assert image.split("/")[-1].startswith(f"speechops-{stage.step}:")
        assert args["RoleArn"] == ROLE
    registered, _ = steps["register-model-package"]
    assert registered["Type"] == "RegisterModel"
    container = registered["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == images.image_uri("serve", REGISTRY, "t1")
    assert container["ModelDataUrl"] == get("Steps.train.ModelArtifacts.S3ModelArtifacts")


def _command(step: dict[str, Any]) -> list[str]:
    """The effective command of a processing step (through the unpacking wrapper, if any)."""
    app = step["Arguments"]["AppSpecification"]
    entry = app["ContainerEntrypoint"]
    if entry[:2] == ["/bin/sh", "-c"]:
        script = entry[2]
        assert f'exec {images.JOB_ENTRYPOINT} python -m' in script and script.endswith('"$@"')
        entry = shlex.split(script.rsplit("exec ", 1)[1])[:-1]
    assert entry[0] == images.JOB_ENTRYPOINT, "the job entrypoint hands root's output mounts to uid 1000"
    return [*entry[1:], *app["ContainerArguments"]]


def stage_arguments(arguments: list[Any]) -> dict[str, Any]:
    """What a stage makes of its arguments: ``--params-json`` (joined from its pieces) decoded, then the
    ``--key value`` options (pipeline variables stay as their JSON expressions)."""
    document, options, i = "", {}, 0
    while i < len(arguments):
        arg = arguments[i]
        if isinstance(arg, str) and arg.startswith(PARAMS_JSON_OPTION + "="):
            document += arg.split("=", 1)[1]
            i += 1
        elif arg == PARAMS_JSON_OPTION:
            document += arguments[i + 1]
            i += 2
        else:
            options[arg[2:].replace("-", "_")] = arguments[i + 1]
            i += 2
    return {**(json.loads(document) if document else {}), **options}


def test_processing_steps_run_the_local_backends_command(compiled):
    steps, pipeline, params = compiled["steps"], compiled["pipeline"], compiled["params"]
    local = LocalBackend(Path("/nonexistent"), echo=False)
    for stage in pipeline.stages:
        if stage.spec.kind != "processing":
            continue
        arguments = _command(steps[stage.name][0])
        container_arguments = steps[stage.name][0]["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert all(len(a) <= MAX_CONTAINER_ARGUMENT for a in container_arguments if isinstance(a, str)), \
            "SageMaker refuses container arguments over 256 characters"
        if stage.step in ("register", "deploy"):
            continue
        command = local.stage_command(pipeline, stage, params[stage.name].model_dump(mode="json"))
        assert arguments[:5] == ["python", *command[1:5]], stage.name
        assert stage_arguments(arguments[5:]) == stage_arguments(command[5:]), stage.name
        assert stage_arguments(command[5:]) == params[stage.name].model_dump(mode="json"), "exactly as validated"


def test_processing_inputs_and_outputs_follow_the_stage_contract(compiled):
    steps, pipeline = compiled["steps"], compiled["pipeline"]
    kinds = {s.name: s.spec.kind for s in pipeline.stages}
    for stage in pipeline.stages:
        step, _ = steps[stage.name]
        if step["Type"] != "Processing":
            continue
        args = step["Arguments"]
        inputs = {i["InputName"]: i["S3Input"] for i in args.get("ProcessingInputs", [])}
        assert set(inputs) == set(stage.inputs), stage.name
        for name, ref in stage.inputs.items():
            src, _, out = ref.partition(".")
            assert inputs[name]["LocalPath"] == str(contract.container_input_path("processing", name))
            uri = json.dumps(inputs[name]["S3Uri"])
            if kinds[src] == "training":  # a tarball of the training job, unpacked before the stage runs
                assert f"Steps.{src}." in uri
                archive = "model.tar.gz" if out == "model" else "output.tar.gz"
                script = step["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
                match = re.search(rf"tar -xzf {contract.container_input_path('processing', name)}/{archive} -C ([^;\s]+)",
                                  script)
                assert match, script
                env = args["Environment"][contract.input_env("processing", name)]
                expected = match.group(1) if out == "model" else f"{match.group(1)}/{out}"
                assert env == expected, "the stage is pointed at the unpacked folder (of its output)"
            else:
                expected = get(f"Steps.{src}.ProcessingOutputConfig.Outputs['{out}'].S3Output.S3Uri")
                assert inputs[name]["S3Uri"] == expected
        outputs = {o["OutputName"]: o["S3Output"] for o in args["ProcessingOutputConfig"]["Outputs"]}
        assert set(outputs) == set(stage.spec.all_outputs), stage.name
        for name, output in outputs.items():
            assert output["LocalPath"] == str(contract.container_output_path("processing", name))
            values = output["S3Uri"]["Std:Join"]["Values"]
            assert values[:3] == ["s3:/", "speechops-unit", "speechops"]
            assert get("Execution.PipelineExecutionId") in values and stage.name in values and name in values


def test_train_is_a_spot_training_job_with_checkpoints_and_the_stage_params(compiled):
    steps, pipeline, params = compiled["steps"], compiled["pipeline"], compiled["params"]
    step, _ = steps["train"]
    args = step["Arguments"]
    algorithm = args["AlgorithmSpecification"]
    assert algorithm["ContainerEntrypoint"] == images.job_command("train")
    assert algorithm["ContainerArguments"] == ["--task", pipeline.task]
    hyper = dict(args["HyperParameters"])
    assert hyper.pop("epochs") == join(get("Parameters.TrainEpochs"))
    assert hyper.pop("lr") == join(get("Parameters.TrainLr"))
    assert set(hyper) == {PARAMS_JSON}, "the other parameters travel as one JSON document"
    expected = params["train"].model_dump(mode="json")
    assert json.loads(hyper[PARAMS_JSON]) == {k: v for k, v in expected.items() if k not in ("epochs", "lr")}
    assert args["EnableManagedSpotTraining"] is True
    assert args["StoppingCondition"]["MaxWaitTimeInSeconds"] >= args["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert args["CheckpointConfig"]["LocalPath"] == str(contract.container_output_path("training", "checkpoints"))
    checkpoint = args["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"]
    assert "checkpoints" in checkpoint and get("Steps.prepare.ProcessingJobName") in checkpoint
    assert get("Execution.PipelineExecutionId") not in checkpoint, "the checkpoint key must not defeat the cache"
    assert args["ResourceConfig"]["InstanceType"] == get("Parameters.TrainInstanceType")
    default = next(p for p in compiled["definition"]["Parameters"] if p["Name"] == "TrainInstanceType")["DefaultValue"]
    assert default == pipeline.stage("train").resources.instance_type
    assert pipeline.stage("train").resources.gpus >= 1 and default.startswith(("ml.g", "ml.p"))
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]}
    assert set(channels) == set(pipeline.stage("train").inputs)


def test_typed_parameters_for_per_run_values(compiled):
    params = {p["Name"]: p for p in compiled["definition"]["Parameters"]}
    tiny = compiled["params"]
    assert params["TrainEpochs"] == {"Name": "TrainEpochs", "Type": "Float", "DefaultValue": tiny["train"].epochs}
    assert params["TrainLr"]["Type"] == "Float" and params["TrainLr"]["DefaultValue"] == tiny["train"].lr
    for stage in compiled["pipeline"].stages:
        name = "".join(w.capitalize() for w in stage.name.split("_")) + "InstanceType"
        assert params[name]["Type"] == "String" and params[name]["DefaultValue"] == stage.resources.instance_type
    for metric in compiled["pipeline"].gate.metrics:
        name = "Max" + "".join(w.capitalize() for w in metric.name.split("_"))
        assert params[name] == {"Name": name, "Type": "Float", "DefaultValue": metric.limit}
    assert params["ModelApprovalStatus"]["Type"] == "String"
    prepare = compiled["steps"]["prepare"][0]["Arguments"]["Environment"]
    assert prepare["SPEECHOPS_DATA_SNAPSHOT"] == get("Parameters.DataSnapshot"), "source stages: in the cache key"
    assert "SPEECHOPS_DATA_SNAPSHOT" not in compiled["steps"]["train"][0]["Arguments"]["Environment"]


def test_quality_gate_reads_the_evaluate_report_and_gates_register_and_deploy(compiled):
    steps = compiled["steps"]
    evaluate, where = steps["evaluate"]
    assert where == "top"
    (prop,) = evaluate["PropertyFiles"]
    assert prop["OutputName"] == contract.REPORT_OUTPUT and prop["FilePath"] == contract.REPORT_FILE
    metrics = compiled["pipeline"].gate.names
    assert metrics == get_task("whisper_intensity").gate.names and len(metrics) == 3
    assert "guard_wer_increase" in metrics, "the forgetting guard gates SageMaker too"
    # one condition step with every metric (SageMaker does not nest condition steps)
    gate, where = steps["gate-" + "-".join(m.replace("_", "-") for m in metrics)]
    assert where == "top"
    assert not [s for s, branch in steps.values() if s["Type"] == "Condition" and branch != "top"]
    conditions = gate["Arguments"]["Conditions"]
    assert len(conditions) == len(metrics)
    (fail,) = gate["Arguments"]["ElseSteps"]
    assert fail["Type"] == "Fail"
    message = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    for metric, condition in zip(metrics, conditions):
        name = "Max" + "".join(w.capitalize() for w in metric.split("_"))
        assert condition["Type"] == "LessThanOrEqualTo"
        assert condition["LeftValue"] == {"Std:JsonGet": {
            "PropertyFile": get(f"Steps.evaluate.PropertyFiles.{prop['PropertyFileName']}"), "Path": metric}}
        assert condition["RightValue"] == get(f"Parameters.{name}")
        assert any(isinstance(v, str) and metric in v and name in v for v in message)
        assert get(f"Parameters.{name}") in message
    innermost = gate
    gated = {s["Name"] for s in innermost["Arguments"]["IfSteps"]}
    assert gated == {"register-model-package", "register", "deploy"}
    for name in ("prepare", "tokenizer", "train", "evaluate", "export"):
        assert steps[name][1] == "top", f"{name} runs whatever the gate says"


def test_deploy_targets_an_autoscaled_sagemaker_endpoint_of_the_registered_package(compiled):
    step, where = compiled["steps"]["deploy"]
    assert where.startswith("if:")
    command = _command(step)
    assert command[:3] == ["python", "-m", "steps.deploy"]
    args = stage_arguments(command[3:])
    assert args["target"] == "sagemaker"
    assert args["model_package_arn"] == get("Steps.register-model-package.ModelPackageArn")
    assert args["image_uri"] == images.image_uri("serve", REGISTRY, "t1")
    # the endpoint's model runs as infra/iam.yaml's endpoint role of the account, not as the job role
    assert args["execution_role_arn"] == ROLE.replace("speechops-sagemaker-execution", "speechops-sagemaker-endpoint")
    assert args["region"] == "eu-west-1"
    assert {"min_capacity", "max_capacity", "target_invocations_per_instance"} <= set(args)
    register, _ = compiled["steps"]["register"]
    assert stage_arguments(_command(register)[3:])["tracking_uri"] == MLFLOW


def test_retry_policies_and_caching_per_step(compiled):
    for name, (step, _) in compiled["steps"].items():
        if step["Type"] in ("Processing", "Training"):
            kinds = {e for policy in step["RetryPolicies"] for e in policy["ExceptionType"]}
            assert {"SageMaker.CAPACITY_ERROR", "Step.THROTTLING", "Step.SERVICE_FAULT"} <= kinds, name
            if name in ("register", "deploy"):
                assert "CacheConfig" not in step, f"{name} has side effects: never cached"
            else:
                assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}, name
            code = step["Arguments"]["Environment"]["SPEECHOPS_CODE_VERSION"]
            assert len(code) >= 8, "the stage code version is part of the cache key"
        elif step["Type"] == "RegisterModel":
            assert step["RetryPolicies"][0]["ExceptionType"] == ["Step.SERVICE_FAULT", "Step.THROTTLING"]


def test_set_overrides_become_parameter_defaults_and_bad_input_is_refused(tmp_path, no_network, capsys):
    code, definition = dry_run(tmp_path, "--set", "train.epochs=3", "--set", "gate.wer.limit=0.25",
                               "--sagemaker-instance-type", "train=ml.g5.2xlarge", "--param", "TrainLr=0.0003")
    assert code == 0
    params = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert params["TrainEpochs"] == 3.0 and params["MaxWer"] == 0.25 and params["TrainInstanceType"] == "ml.g5.2xlarge"
    assert "0.0003" in capsys.readouterr().out, "the plan shows this run's parameter value"

    code, _ = dry_run(tmp_path, "--param", "TrainEpoch=3", "--param", "TrainLr=fast")
    out = capsys.readouterr().out
    assert code == 2 and "TrainEpoch=3" in out and "TrainLr is a Float" in out
    code, _ = dry_run(tmp_path, "--sagemaker-role", "admin", "--set", "sagemaker.bucket=UPPER", "--set",
                      "sagemaker.colour=blue")
    out = capsys.readouterr().out
    assert code == 2 and "sagemaker.role" in out and "sagemaker.bucket" in out and "sagemaker.colour" in out


def test_local_files_and_local_only_options_are_refused_with_what_to_do(tmp_path, no_network, capsys):
    code, _ = dry_run(tmp_path, "--set", f"prepare.source={tmp_path}")
    out = capsys.readouterr().out
    assert code == 2 and "sagemaker.inputs.prepare.raw=s3://" in out
    code, definition = dry_run(tmp_path, "--set", "prepare.source=input", "--set",
                               "sagemaker.inputs.prepare.raw=s3://corpus-bucket/librispeech/")
    assert code == 0
    prepare = all_steps(definition["Steps"])["prepare"][0]
    (raw,) = prepare["Arguments"]["ProcessingInputs"]
    assert raw["InputName"] == "raw" and raw["S3Input"]["S3Uri"] == get("Parameters.PrepareRawUri")
    code, _ = dry_run(tmp_path, "--only", "evaluate")
    assert code == 2 and "local-backend options" in capsys.readouterr().out
    code = main(["--pipeline", "whisper_intensity", "--runs-dir", str(tmp_path), "--sagemaker-role", "x", "--wait"])
    assert code == 2 and "--sagemaker-role, --wait need --backend sagemaker" in capsys.readouterr().out


def test_a_real_run_without_role_and_bucket_stops_before_any_aws_call(tmp_path, no_network, capsys):
    code = main(["--pipeline", "whisper_intensity", "--backend", "sagemaker", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and "--sagemaker-role" in out and "--sagemaker-bucket" in out


def test_a_higher_is_better_gate_metric_compiles_to_a_minimum_condition(tmp_path, no_network, monkeypatch):
    """The condition steps compile the pipeline's one gate in each metric's direction (>= for accuracy)."""
    from steps.common.gate import Gate, GateMetric

    task = get_task("ctc_asr")
    monkeypatch.setattr(task, "gate", Gate(metrics=(GateMetric(name="accuracy", direction="higher", limit=0.6),
                                                    GateMetric(name="wer", direction="lower", limit=None))))
    out = tmp_path / "definition.json"
    code = main(["--pipeline", "ctc_asr", "--backend", "sagemaker", "--dry-run", "--runs-dir", str(tmp_path / "runs"),
                 "--definition-out", str(out), "--set", "gate.accuracy.limit=0.7", "--set", "gate.wer.limit=null",
                 "--set", "gate.wer.min_improvement=0.01"])
    assert code == 0
    definition = json.loads(out.read_text())
    params = {p["Name"]: p for p in definition["Parameters"]}
    assert params["MinAccuracy"]["DefaultValue"] == 0.7 and "MaxWer" not in params
    steps = all_steps(definition["Steps"])
    gate, _ = steps["gate-accuracy"]
    (condition,) = gate["Arguments"]["Conditions"]
    assert condition["Type"] == "GreaterThanOrEqualTo" and condition["RightValue"] == get("Parameters.MinAccuracy")
    assert "gate-wer" not in steps, "a metric without an absolute limit has no condition step"
    assert re.fullmatch(r"[A-Za-z0-9\-_]{1,64}", gate["DisplayName"]), "the published schema's DisplayName pattern"


def test_images_run_by_immutable_tag_or_digest_and_latest_needs_consent(tmp_path, no_network, capsys):
    code, _ = dry_run(tmp_path, "--sagemaker-image-tag", "latest")
    assert code == 2 and "--sagemaker-allow-mutable-tag" in capsys.readouterr().out
    code, definition = dry_run(tmp_path, "--sagemaker-image-tag", "latest", "--sagemaker-allow-mutable-tag")
    assert code == 0
    steps = all_steps(definition["Steps"])
    assert steps["prepare"][0]["Arguments"]["AppSpecification"]["ImageUri"].endswith("speechops-prepare:latest")
    code, definition = dry_run(tmp_path)
    tag = images.commit_tag()
    image = all_steps(definition["Steps"])["prepare"][0]["Arguments"]["AppSpecification"]["ImageUri"]
    assert tag is None or image.endswith(f"speechops-prepare:{tag}"), "default: the git commit push_images.sh pushes"
    digest = "sha256:" + "ab" * 32
    code, definition = dry_run(tmp_path, "--sagemaker-mlflow-uri", MLFLOW, "--set",
                               f"sagemaker.image_digests.train={digest}", "--set",
                               f"sagemaker.image_digests.serve={digest}")
    assert code == 0
    steps = all_steps(definition["Steps"])
    assert steps["train"][0]["Arguments"]["AlgorithmSpecification"]["TrainingImage"].endswith(
        f"speechops-train@{digest}")
    assert _command(steps["deploy"][0])[3:] and stage_arguments(_command(steps["deploy"][0])[3:])["image_uri"] \
        .endswith(f"speechops-serve@{digest}")
    lineage = json.loads(steps["register"][0]["Arguments"]["Environment"]["SPEECHOPS_IMAGE_DIGESTS"])
    assert lineage == {"serve": digest, "train": digest}, "register records the digests (steps/register.py)"


def test_an_explicit_endpoint_role_reaches_the_deploy_stage(tmp_path, no_network):
    endpoint_role = "arn:aws:iam::123456789012:role/my-endpoint"
    code, definition = dry_run(tmp_path, "--sagemaker-role", ROLE, "--sagemaker-endpoint-role", endpoint_role)
    assert code == 0
    deploy = all_steps(definition["Steps"])["deploy"][0]
    assert stage_arguments(_command(deploy)[3:])["execution_role_arn"] == endpoint_role
    assert deploy["Arguments"]["RoleArn"] == ROLE, "the deploy job itself runs as the execution role"
