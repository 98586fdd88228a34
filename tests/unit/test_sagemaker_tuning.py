"""The declared ``stages.tune`` space compiles to a TuningStep around the train image, unchanged.

The pipeline is the one the local backend runs (``ctc_asr`` with ``tune.enabled``): the tuning job's
ranges, objective (the task's metric as the Trainer logs it, in the gate's direction), job counts and
static hyper-parameters all come from the profile; the train step after it takes the best job's values.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("sagemaker.core.workflow.parameters", reason="the SageMaker SDK (pip install -e '.[aws]')")

from pipelines import images  # noqa: E402
from pipelines.backends.sagemaker_compile import compile_pipeline  # noqa: E402
from pipelines.backends.sagemaker_settings import resolve_settings  # noqa: E402
from pipelines.definition import PipelineError  # noqa: E402
from pipelines.registry import get_pipeline  # noqa: E402
from steps.tasks import get_task  # noqa: E402

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SPACE = ["tune.space={lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}, "
         "batch_size: {type: categorical, choices: [8, 16]}, layers: {type: int, low: 1, high: 4}}"]


def _compile(overrides: list[str], monkeypatch) -> dict:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    pipeline = get_pipeline("ctc_asr", "tiny", ["tune.enabled=true", *overrides])
    settings = resolve_settings({}, {"sagemaker_image_registry": REGISTRY}, default_region="eu-west-1")
    compiled = compile_pipeline(pipeline, settings, dry_run=True)
    return {s["Name"]: s for s in compiled.definition()["Steps"]}, pipeline


def test_tuning_step_ranges_equal_the_declared_space(monkeypatch):
    steps, pipeline = _compile([*SPACE, "tune.n_trials=6", "tune.parallelism=3"], monkeypatch)
    tuning = steps["tune"]
    assert tuning["Type"] == "Tuning"
    config = tuning["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "eval_wer"}, \
        "the task's metric, in its gate direction (wer: lower is better)"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    ranges = config["ParameterRanges"]
    space = pipeline.validated_params()["tune"].space
    (lr,) = ranges["ContinuousParameterRanges"]
    assert lr == {"Name": "lr", "MinValue": str(space["lr"].low), "MaxValue": str(space["lr"].high),
                  "ScalingType": "Logarithmic"}
    assert ranges["IntegerParameterRanges"] == [{"Name": "layers", "MinValue": "1", "MaxValue": "4",
                                                 "ScalingType": "Linear"}]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "batch_size", "Values": ["8", "16"]}]

    job = tuning["Arguments"]["TrainingJobDefinition"]
    image = job["AlgorithmSpecification"]["TrainingImage"]
    assert image.startswith(images.image_uri("train", REGISTRY, "x")[:-1]) and \
        image == steps["train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"], "the train image"
    static = job["StaticHyperParameters"]
    assert static["task"] == "ctc_asr", "tuning jobs cannot override the entrypoint: the task is a hyper-parameter"
    document = json.loads(static["params_json"])
    assert not set(document) & {"lr", "batch_size", "layers"}, "each job gets the searched values on their own"
    assert set(document) <= set(get_task("ctc_asr").params_for("train").model_fields), "train parameters only"
    assert document["epochs"] == 3 and document["eval_every_epochs"] == 1, "the trial budget of the profile"
    (metric,) = job["AlgorithmSpecification"]["MetricDefinitions"]
    line = "{'eval_loss': 3.1, 'eval_wer': 0.4321, 'eval_cer': 0.2, 'epoch': 1.0}"
    assert re.search(metric["Regex"], line).group(1) == "0.4321", "the objective is read from Trainer log lines"

    train = steps["train"]["Arguments"]
    assert "tune" not in {c["ChannelName"] for c in train["InputDataConfig"]}
    tuned = json.dumps(train["HyperParameters"]["lr"])
    assert "Steps.tune.BestTrainingJob.TunedHyperParameters['lr']" in tuned, "train uses the best job's values"
    assert "TunedHyperParameters['batch_size']" in json.dumps(train["HyperParameters"]["batch_size"])


def test_an_ablation_grid_compiles_to_a_grid_search_of_categorical_ranges(monkeypatch):
    steps, _ = _compile(["tune.sampler=grid", "tune.space={lr: {type: float, low: 0.001, high: 0.003, step: 0.001}, "
                                              "batch_size: {type: categorical, choices: [8, 16]}}"], monkeypatch)
    config = steps["tune"]["Arguments"]["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6, "n_trials is capped at the grid's size"
    values = {r["Name"]: r["Values"] for r in config["ParameterRanges"]["CategoricalParameterRanges"]}
    assert values == {"lr": ["0.001", "0.002", "0.003"], "batch_size": ["8", "16"]}


def test_a_combined_objective_is_refused_on_sagemaker(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    pipeline = get_pipeline("whisper_intensity", "tiny", ["tune.enabled=true"])
    settings = resolve_settings({}, {}, default_region="eu-west-1")
    with pytest.raises(PipelineError, match="combined objective"):
        compile_pipeline(pipeline, settings, dry_run=True)
