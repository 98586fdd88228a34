"""Every pipeline and profile compiles to a definition that AWS's published JSON schema accepts, except
for an explicit list of schema gaps: fields the SageMaker SDK emits and AWS documents, which the schema
(a snapshot of 2025-04-03) does not know. A deviation not on the list fails the test, and so does an
entry of the list that no definition needs any more.

The schema is AWS's, from the repository ``aws-sagemaker-mlops/sagemaker-model-building-pipeline-
definition-JSON-schema`` (``schema/pipeline-definition.schema.json``). It carries no licence, so it is
read from outside this tree: ``$SPEECHOPS_SAGEMAKER_SCHEMA``, else ``../shared/schemas/`` beside the
checkout; the test is skipped, saying so, when neither exists.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sagemaker.core.workflow.parameters", reason="the SageMaker SDK (pip install -e '.[aws]')")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (pip install -e '.[test]')")

from pipelines.backends.sagemaker_compile import compile_pipeline  # noqa: E402
from pipelines.backends.sagemaker_settings import resolve_settings  # noqa: E402
from pipelines.config import profiles  # noqa: E402
from pipelines.registry import PIPELINES, get_pipeline  # noqa: E402
from tests.unit.test_sagemaker_definition import block_network  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(os.environ.get("SPEECHOPS_SAGEMAKER_SCHEMA")
              or REPO.parent / "shared" / "schemas" / "sagemaker-pipeline-definition.schema.json")
CASES = [(p, f) for p in PIPELINES for f in profiles(p)]
STEP_LISTS = ("Steps", "IfSteps", "ElseSteps")


@dataclass(frozen=True)
class Gap:
    """A deviation that is the schema's gap, not the definition's defect. ``where`` is
    ``<step type>:<path inside the step>`` (``Pipeline:`` for the top level; list indices are
    digits), matched with ``re.fullmatch``, as is ``message`` against the validator's message."""

    where: str
    validator: str
    message: str
    why: str


_JOIN = r"\{'Std:Join': .* is not valid under any of the given schemas"
SCHEMA_GAPS = (
    Gap("Pipeline:", "additionalProperties",
        r"Additional properties are not allowed \('MlflowConfig', 'PipelineExperimentConfig' were unexpected\)",
        "SDK v3 Pipeline.definition() always writes both keys (null when unset; sagemaker/mlops/workflow/"
        "pipeline.py, request_dict['PipelineExperimentConfig'] and ['MlflowConfig']); PipelineExperimentConfig "
        "has been in SDK definitions since 2021 (pipeline_experiment_config, documented in the SDK), "
        "MlflowConfig came with SDK v3 (2025), after the schema snapshot"),
    Gap(r"(Processing|Training|RegisterModel):RetryPolicies/\d+/ExceptionType", "type|enum",
        r"\[.*\] is not (of type 'string'|one of .*)",
        "AWS's 'Retry Policy for Pipeline Steps' page gives ExceptionType as a JSON list of exception types "
        "(the SDK's StepRetryPolicy/SageMakerJobStepRetryPolicy write one); the schema wants one string. "
        "Every listed value is one of the schema's own enum"),
    Gap(r"(Processing|Training):Arguments/(ProcessingOutputConfig/Outputs/\d+/S3Output/S3Uri|"
        r"ProcessingInputs/\d+/S3Input/S3Uri|"
        r"OutputDataConfig/S3OutputPath|CheckpointConfig/S3Uri|HyperParameters/\w+)", "oneOf", _JOIN,
        "Std:Join (the SDK's Join, documented with pipeline functions/ExecutionVariables) where the schema's "
        "StringArgumentValue allows only a string or Get: the schema defines JoinFunction but never references "
        "it, and its Std:Join sub-schema (no 'type'/'properties') cannot match any object"),
    Gap(r"RegisterModel:Arguments/ModelMetrics/ModelQuality/Statistics/S3Uri", "oneOf", _JOIN, "as above"),
    Gap(r"Fail:Arguments/ErrorMessage", "oneOf", _JOIN,
        "as above; the SDK documents FailStep(error_message=Join(...)) with parameter values"),
    Gap(r"Condition:Arguments/Conditions/\d+/LeftValue", "anyOf",
        r"\{'Std:JsonGet': \{'PropertyFile': .* is not valid under any of the given schemas",
        "Std:JsonGet on a PropertyFile is how AWS documents reading a processing report in a condition "
        "(JsonGet(step_name, property_file, json_path)); the schema's argument values allow no Std:JsonGet"),
    Gap(r"Processing:", "additionalProperties",
        r"Additional properties are not allowed \('PropertyFiles' was unexpected\)",
        "the SDK writes ProcessingStep(property_files=...) as the step's PropertyFiles, which AWS documents "
        "under 'Property files' of Pipelines steps; the schema's ProcessingStep lacks it"),
    Gap(r"Training:Arguments/AlgorithmSpecification", "additionalProperties",
        r"Additional properties are not allowed \('ContainerArguments', 'ContainerEntrypoint' were unexpected\)",
        "CreateTrainingJob's AlgorithmSpecification documents ContainerEntrypoint and ContainerArguments "
        "(API_AlgorithmSpecification); the stage's own entrypoint runs as on every other backend"),
    Gap(r"Training:Arguments/OutputDataConfig", "additionalProperties",
        r"Additional properties are not allowed \('CompressionType' was unexpected\)",
        "OutputDataConfig.CompressionType (GZIP|NONE) is documented in API_OutputDataConfig; the SDK's "
        "ModelTrainer writes it"),
    Gap(r"Training:Arguments", "additionalProperties",
        r"Additional properties are not allowed \('Environment' was unexpected\)",
        "CreateTrainingJob documents Environment (map of up to 100 variables); the code version and pipeline "
        "name travel in it"),
    Gap(r"RegisterModel:Arguments/InferenceSpecification/Containers/\d+", "additionalProperties",
        r"Additional properties are not allowed \('Environment' was unexpected\)",
        "ModelPackageContainerDefinition.Environment is documented in CreateModelPackage"),
    Gap(r"RegisterModel:Arguments", "additionalProperties",
        r"Additional properties are not allowed \('CustomerMetadataProperties', 'ModelApprovalStatus', "
        r"'SkipModelValidation' were unexpected\)",
        "CreateModelPackage documents CustomerMetadataProperties, ModelApprovalStatus and SkipModelValidation; "
        "the SDK's create_model_package_from_containers writes them"),
)


@dataclass(frozen=True)
class Deviation:
    where: str
    validator: str
    message: str

    def gap(self) -> Gap | None:
        for gap in SCHEMA_GAPS:
            if re.fullmatch(gap.where, self.where) and re.fullmatch(gap.validator, self.validator) \
                    and re.fullmatch(gap.message, self.message, flags=re.S):
                return gap
        return None


def _where(definition: dict[str, Any], path: list[Any]) -> str:
    """``<type of the innermost step>:<path inside it>`` for an absolute path into the definition."""
    kind, start, node = "Pipeline", 0, definition
    for i, key in enumerate(path):
        if isinstance(node, list) and i and path[i - 1] in STEP_LISTS and isinstance(node[key], dict):
            kind, start = node[key].get("Type", "?"), i + 1
        node = node[key]
    return f"{kind}:" + "/".join(str(k) for k in path[start:])


def _leaves(errors: list[Any]) -> list[Any]:
    """Errors as deep as they go: under oneOf/anyOf, follow the one branch whose kind matches (a step's
    Type, or an object rather than a string); when no single branch matches, the union itself is the
    error."""
    found = []
    for error in errors:
        if error.validator in ("oneOf", "anyOf") and error.context:
            branches = defaultdict(list)
            for sub in error.context:
                branches[sub.schema_path[0]].append(sub)
            matching = [b for b, subs in branches.items()
                        if not any(list(s.relative_path)[-1:] == ["Type"] or
                                   (not s.relative_path and s.validator in ("type", "required"))
                                   for s in subs)]
            if len(matching) == 1:
                found += _leaves(branches[matching[0]])
                continue
        found.append(error)
    return found


def deviations(definition: dict[str, Any], schema: dict[str, Any]) -> list[Deviation]:
    validator = jsonschema.Draft7Validator(schema)
    return [Deviation(_where(definition, list(e.absolute_path)), e.validator, e.message)
            for e in _leaves(list(validator.iter_errors(definition)))]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not SCHEMA.is_file():
        pytest.skip(f"AWS's pipeline definition schema is not at {SCHEMA} (set SPEECHOPS_SAGEMAKER_SCHEMA)")
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def definitions() -> dict[str, dict[str, Any]]:
    """Every pipeline and profile, compiled with every stage (MLflow configured), offline."""
    mp = pytest.MonkeyPatch()
    found = {}
    try:
        block_network(mp)
        cli = {"sagemaker_role": "arn:aws:iam::123456789012:role/speechops-sagemaker-execution",
               "sagemaker_bucket": "speechops-unit", "sagemaker_region": "eu-west-1",
               "sagemaker_mlflow_uri": "https://mlflow.example.com", "sagemaker_image_tag": "abc1234"}
        for name, profile in CASES:
            pipeline = get_pipeline(name, profile, [])
            settings = resolve_settings(pipeline.config.get("sagemaker"), cli)
            found[f"{name}/{profile}"] = compile_pipeline(pipeline, settings, dry_run=True).definition()
    finally:
        mp.undo()
    return found


@pytest.mark.parametrize("case", [f"{p}/{f}" for p, f in CASES])
def test_definition_matches_the_published_schema_but_for_known_gaps(case, definitions, schema):
    unexplained = [d for d in deviations(definitions[case], schema) if d.gap() is None]
    assert not unexplained, "fix these, or show they are schema gaps and add them to SCHEMA_GAPS:\n" + \
        "\n".join(f"  {d.where} [{d.validator}] {d.message[:300]}" for d in unexplained)


def test_every_schema_gap_on_the_list_is_still_needed(definitions, schema):
    used = {d.gap() for definition in definitions.values() for d in deviations(definition, schema)}
    stale = [gap.where for gap in SCHEMA_GAPS if gap not in used]
    assert not stale, f"no definition deviates this way any more; drop from SCHEMA_GAPS: {stale}"


def test_display_names_and_step_names_follow_the_schema_pattern(definitions):
    """The one real deviation found (a display name with spaces and brackets) stays fixed, checked
    directly: names are what the console shows and what properties refer to."""
    pattern = re.compile(r"[A-Za-z0-9\-_]{1,64}")

    def walk(steps: list[dict[str, Any]]):
        for step in steps:
            yield step
            for key in ("IfSteps", "ElseSteps"):
                yield from walk(step.get("Arguments", {}).get(key, []))

    for case, definition in definitions.items():
        for step in walk(definition["Steps"]):
            for key in ("Name", "DisplayName"):
                if key in step:
                    assert pattern.fullmatch(step[key]), f"{case}: {step['Type']} {key} {step[key]!r}"


def test_a_new_deviation_is_not_mistaken_for_a_known_gap(definitions, schema):
    """The allow-list is keyed tightly: a nested condition step, a display name with spaces or an
    unknown field is reported, even beside listed gaps."""
    definition = json.loads(json.dumps(definitions["whisper_intensity/tiny"]))
    condition = next(s for s in definition["Steps"] if s["Type"] == "Condition")
    nested = json.loads(json.dumps(condition))
    nested["Name"] = nested["DisplayName"] = "nested-gate"
    condition["Arguments"]["IfSteps"].append(nested)
    definition["Steps"][0]["DisplayName"] = "prepare (data)"
    definition["Steps"][0]["Arguments"]["Unknown"] = 1
    unexplained = [d for d in deviations(definition, schema) if d.gap() is None]
    assert any(d.validator == "oneOf" and "'nested-gate'" in d.message for d in unexplained), unexplained
    assert any(d.where == "Processing:DisplayName" for d in unexplained), unexplained
    assert any("'Unknown' was unexpected" in d.message for d in unexplained), unexplained
