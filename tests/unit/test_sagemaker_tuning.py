"""A pipeline with a ``tune`` stage compiles to a TuningStep around the train image.

No pipeline has a tune stage yet and there is no ``steps/tune.py``; a synthetic stage spec (the
train stage's inputs and outputs, its parameters plus ``TuningConfig``) stands in for it.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("sagemaker.core.workflow.parameters", reason="the SageMaker SDK (pip install -e '.[aws]')")

from pipelines import definition, images  # noqa: E402
from pipelines.backends.sagemaker_compile import TuningConfig, compile_pipeline  # noqa: E402
from pipelines.backends.sagemaker_settings import resolve_settings  # noqa: E402
from pipelines.definition import GPU, Pipeline, Stage  # noqa: E402
from steps.common.stage import StageSpec  # noqa: E402
from steps.registry import get_stage  # noqa: E402
from steps.tasks import get_task  # noqa: E402

TASK = "whisper_intensity"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def tune_stage(monkeypatch):
    train = get_stage("train")
    train_params = get_task(TASK).params_for("train")

    def params(task: str | None) -> type:
        return type("TuneParams", (train_params, TuningConfig), {"model_config": train_params.model_config})

    spec = StageSpec(name="tune", kind="training", inputs=train.inputs, outputs=train.outputs, params=params,
                     run=lambda p, task, io: {})
    monkeypatch.setattr(definition, "get_stage", lambda name: spec if name == "tune" else get_stage(name))


def test_tune_stage_becomes_a_tuning_step_and_feeds_the_best_model_on(tune_stage, tmp_path, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    pipeline = Pipeline(name="tuned", task=TASK, stages=(
        Stage("prepare", "prepare", params={"source": "bundled"}),
        Stage("tokenizer", "tokenizer", {"data": "prepare.data"}),
        Stage("tune", "tune", {"data": "prepare.data", "tokenizer": "tokenizer.tokenizer"},
              params={"epochs": 1.0, "objective_metric": "eval_loss", "max_jobs": 6, "max_parallel_jobs": 3,
                      "ranges": {"lr": {"min": 1e-5, "max": 1e-3, "scaling": "Logarithmic"},
                                 "batch_size": {"values": [8, 16]}, "grad_accum": {"min": 1, "max": 4}}},
              resources=GPU),
        Stage("evaluate", "evaluate", {"data": "prepare.data", "model": "tune.model"}),
    ))
    settings = resolve_settings({"parameters": ["tune.epochs"]}, {"sagemaker_image_registry": REGISTRY},
                                default_region="eu-west-1")
    compiled = compile_pipeline(pipeline, settings, dry_run=True)
    steps = {s["Name"]: s for s in compiled.definition()["Steps"]}
    tuning = steps["tune"]
    assert tuning["Type"] == "Tuning"
    config = tuning["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "eval_loss"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"][0]["Name"] == "lr"
    assert ranges["ContinuousParameterRanges"][0]["ScalingType"] == "Logarithmic"
    assert ranges["IntegerParameterRanges"][0] == {"Name": "grad_accum", "MinValue": "1", "MaxValue": "4",
                                                   "ScalingType": "Auto"}
    assert ranges["CategoricalParameterRanges"][0] == {"Name": "batch_size", "Values": ["8", "16"]}

    job = tuning["Arguments"]["TrainingJobDefinition"]
    assert job["AlgorithmSpecification"]["TrainingImage"] == images.image_uri("train", REGISTRY, "latest")
    static = job["StaticHyperParameters"]
    assert static["task"] == TASK, "tuning jobs cannot override the entrypoint: the task travels as a hyper-parameter"
    assert set(static) == {"task", "params_json", "epochs"}, "one JSON document, plus the pipeline parameters"
    document = json.loads(static["params_json"])
    assert not set(document) & set(TuningConfig.model_fields), "search settings are not passed to the training jobs"
    assert not set(document) & {"lr", "batch_size", "grad_accum"}, "each job gets the searched values on their own"
    assert set(document) <= set(get_task(TASK).params_for("train").model_fields)
    assert "Parameters.TuneEpochs" in json.dumps(static["epochs"])
    assert job["EnableManagedSpotTraining"] is True
    (metric,) = job["AlgorithmSpecification"]["MetricDefinitions"]
    line = "{'loss': 1.2, 'eval_loss': 0.4321, 'eval_runtime': 3.1, 'epoch': 1.0}"
    assert re.search(metric["Regex"], line).group(1) == "0.4321", "the objective is read from Trainer log lines"

    (model,) = [i for i in steps["evaluate"]["Arguments"]["ProcessingInputs"] if i["InputName"] == "model"]
    uri = json.dumps(model["S3Input"]["S3Uri"])
    assert "Steps.tune.BestTrainingJob.TrainingJobName" in uri and "model.tar.gz" in uri


def test_tune_stage_without_ranges_is_refused(tune_stage):
    from pipelines.definition import PipelineError

    pipeline = Pipeline(name="tuned", task=TASK, stages=(
        Stage("prepare", "prepare", params={"source": "bundled"}),
        Stage("tokenizer", "tokenizer", {"data": "prepare.data"}),
        Stage("tune", "tune", {"data": "prepare.data", "tokenizer": "tokenizer.tokenizer"},
              params={"ranges": {"learning_rate": {"min": 0.1, "max": 0.2}}}),
    ))
    settings = resolve_settings({}, {}, default_region="eu-west-1")
    with pytest.raises(PipelineError, match="learning_rate"):
        compile_pipeline(pipeline, settings, dry_run=True)
