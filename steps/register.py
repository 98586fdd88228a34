"""Stage ``register``: log the run to MLflow (params, metrics, artifacts, lineage), register a version.

The default store is a local SQLite file and needs no server; any tracking URI (an ``mlflow server``,
SageMaker's managed MLflow) is used as given.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from steps.common.audio import load_audio
from steps.common.stage import Params, StageSpec, run_stage
from steps.tasks.base import read_model_card

log = logging.getLogger(__name__)


class RegisterParams(Params):
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    model_name: str | None = Field(None, description="registered model name (default: the pipeline name)")
    experiment: str | None = Field(None, description="MLflow experiment (default: the pipeline name)")


def _load_mlflow_python_model():
    import mlflow.pyfunc

    class SpeechModel(mlflow.pyfunc.PythonModel):
        """MLflow wrapper of a task predictor: input rows carry base64 audio files."""

        def load_context(self, context: Any) -> None:
            from serving.loader import load_predictor_from_dir

            self.predictor = load_predictor_from_dir(Path(context.artifacts["model"]))

        def predict(self, context: Any, model_input: Any, params: dict | None = None) -> list[dict]:
            import base64

            rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
            return [self.predictor.predict(load_audio(base64.b64decode(r["base64"]))) for r in rows]

    return SpeechModel()


def _use_experiment(tracking_uri: str, name: str) -> None:
    """Select the experiment; with a local SQLite store, keep its artifacts beside the database
    (MLflow's default would be ./mlruns in whatever folder the stage happens to run in)."""
    import mlflow

    if mlflow.get_experiment_by_name(name) is None and tracking_uri.startswith("sqlite:///"):
        artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            mlflow.create_experiment(name, artifact_location=artifacts.resolve().as_uri())
        except mlflow.exceptions.MlflowException:  # created concurrently by another run
            pass
    mlflow.set_experiment(name)


def _read_json(folder: Path | None, name: str = "report.json") -> dict:
    if folder is None:
        return {}
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.is_file() else {}


def _flat(prefix: str, data: dict, out: dict[str, Any]) -> dict[str, Any]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flat(f"{name}.", value, out)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            out[name] = float(value)
    return out


def register(params: RegisterParams, model: Path, evaluation: Path, export: Path | None,
             data_report: Path | None, training: Path | None, artifacts: Path | None) -> dict:
    import mlflow
    from mlflow import MlflowClient

    pipeline = os.environ.get("SPEECHOPS_PIPELINE") or read_model_card(model)["task"]
    name = params.model_name or pipeline
    tracking_uri = params.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ValueError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _use_experiment(tracking_uri, params.experiment or pipeline)

    evaluation_report = _read_json(evaluation)
    training_report = _read_json(training)
    data_info = _read_json(data_report)
    card = read_model_card(model)
    commit = os.environ.get("SPEECHOPS_GIT_COMMIT", "unknown")
    lineage = {
        "speechops.pipeline": pipeline,
        "speechops.task": card["task"],
        "speechops.run_id": os.environ.get("SPEECHOPS_RUN_ID", ""),
        "speechops.git_commit": commit,
        "speechops.corpus_sha256": data_info.get("manifest_sha256", "unknown"),
        "speechops.data_source": str(data_info.get("source", "unknown")),
        "speechops.base_model": str(card.get("base_model", "")),
    }
    with mlflow.start_run(run_name=f"{pipeline}-{lineage['speechops.run_id']}") as run:
        mlflow.set_tags(lineage)
        train_params = training_report.get("params", {})
        mlflow.log_params({f"train.{k}": str(v)[:500] for k, v in train_params.items()})
        mlflow.log_params({f"prepare.{k}": str(v)[:500] for k, v in (data_info.get("params") or {}).items()})
        for step, row in enumerate(training_report.get("history", [])):
            mlflow.log_metrics({k: float(v) for k, v in row.items()
                                if isinstance(v, (int, float)) and k not in ("step", "epoch")},
                               step=int(row.get("step", step)))
        metrics = _flat("", evaluation_report.get("metrics", {}), {})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(evaluation_report, "evaluation/report.json")
        mlflow.log_dict(data_info, "data/prepare_report.json")
        samples = evaluation_report.get("samples") or []
        if samples:
            mlflow.log_table({k: [s.get(k) for s in samples] for k in samples[0]}, "evaluation/samples.json")
        if artifacts and artifacts.is_dir():
            mlflow.log_artifacts(str(artifacts), "training")
        if export and export.is_dir():
            mlflow.log_artifacts(str(export), "onnx")
        for config_name in ("preprocessor_config.json", "tokenizer_config.json", "config.json"):
            if (model / config_name).is_file():
                mlflow.log_artifact(str(model / config_name), "lineage")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_load_mlflow_python_model(),
            artifacts={"model": str(model)},
            registered_model_name=name,
            pip_requirements=["torch==2.11.*", "transformers>=5,<6", "soundfile", "numpy", "scipy"],
        )
        version = str(info.registered_model_version)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        for key, value in {**lineage, **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}}.items():
            client.set_model_version_tag(name, version, key, value)
    log.info("registered %s version %s (run %s)", name, version, run.info.run_id)
    return {
        "model_name": name,
        "model_version": version,
        "model_uri": f"models:/{name}/{version}",
        "mlflow_run_id": run.info.run_id,
        "tracking_uri": tracking_uri,
        "lineage": lineage,
        "metrics": {"model": f"{name} v{version}", "mlflow_run": run.info.run_id[:12]},
    }


SPEC = StageSpec(
    name="register",
    kind="processing",
    inputs=("model", "evaluation", "export", "data", "training", "artifacts"),
    optional_inputs=("export", "data", "training", "artifacts"),
    outputs=(),
    params=lambda task: RegisterParams,
    run=lambda p, task, io: register(p, io.inputs["model"], io.inputs["evaluation"], io.inputs.get("export"),
                                     io.inputs.get("data"), io.inputs.get("training"), io.inputs.get("artifacts")),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
