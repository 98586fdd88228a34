"""Stage ``register``: log the run to MLflow (params, metrics, artifacts, lineage), register a version,
and run the promotion gate.

The default store is a local SQLite file and needs no server; any tracking URI (an ``mlflow server``,
SageMaker's managed MLflow) is used as given. Every new version gets the ``challenger`` alias;
``champion`` moves to it only if it beats the current champion on the same evaluation set by the
pipeline's one quality gate (``steps/common/gate.py``: per gate metric of the task its direction, an
absolute ``limit`` the first version must meet too, ``min_improvement`` and ``max_regression``), which
the pipeline passes as this stage's ``gate`` parameter (``steps/common/promotion.py`` decides).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from steps.common.gate import Gate
from steps.common.audio import AudioError, load_audio, to_wav_bytes
from steps.common.manifest import ManifestError, read_manifest, resolve_audio, split_path
from steps.common.promotion import (
    CHAMPION,
    TAG_EVAL_SET,
    ModelRegistry,
    evaluation_set_fingerprint,
    metric_tags,
)
from steps.common.stage import Params, StageSpec, run_stage
from steps.tasks import get_task
from steps.tasks.base import read_model_card

log = logging.getLogger(__name__)

IMAGE_DIGESTS_ENV = "SPEECHOPS_IMAGE_DIGESTS"  # JSON {"stage or image": "sha256:..."} or "a=sha256:..,b=.."


class RegisterParams(Params):
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    model_name: str | None = Field(None, description="registered model name (default: the pipeline name)")
    experiment: str | None = Field(None, description="MLflow experiment (default: the pipeline name)")
    num_audio_examples: int = Field(4, ge=0, le=50, description="test clips logged as WAV with their predictions")
    lock_timeout_s: float = Field(300.0, gt=0, description="how long to wait for a concurrent promotion")
    gate: Gate | None = Field(None, description="the pipeline's quality gate (the pipeline fills it from the task's "
                                                "gate and the profile's gate: section; default: the task's)")


def image_digests() -> dict[str, str]:
    """Container image digests of the run, when the backend ran images and said so; else nothing."""
    raw = os.environ.get(IMAGE_DIGESTS_ENV, "").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        data = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{IMAGE_DIGESTS_ENV} must be a JSON object {{\"stage\": \"sha256:...\"}} or "
                         f"stage=digest pairs separated by commas; got {raw[:200]!r}")
    return {str(k): str(v) for k, v in data.items()}


def _load_mlflow_python_model():
    import mlflow.pyfunc

    class SpeechModel(mlflow.pyfunc.PythonModel):
        """MLflow wrapper of the task's handler: each input row is one JSON request of the task (for a
        one-clip task ``{"base64": ...}``); each answer is the task's JSON answer, or
        ``{"content_type", "base64"}`` for a task that answers with audio."""

        def load_context(self, context):  # no type hints: MLflow would try to infer a schema from them
            from serving.loader import load_handler_from_dir

            self.handler = load_handler_from_dir(Path(context.artifacts["model"]))

        def predict(self, context, model_input, params=None):
            from steps.common.payload import JSON, b64
            from steps.tasks.io import Request

            rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
            answers = []
            for row in rows:
                answer = self.handler(Request(json.dumps(row).encode(), JSON, accept="*/*"))
                answers.append(answer.json() if answer.content_type == JSON
                               else {"content_type": answer.content_type, "base64": b64(answer.body)})
            return answers

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


def evaluation_set(evaluation_report: dict, data_info: dict, dataset: Path | None) -> dict[str, Any]:
    """What the evaluation ran on: the evaluated split's manifest hash when the prepared data is wired in,
    else the whole corpus manifest hash (stricter: any corpus change makes versions incomparable)."""
    split = evaluation_report.get("split")
    utterances = evaluation_report.get("utterances")
    manifest = split_path(dataset, split) if dataset is not None and split else None
    if manifest is not None and manifest.is_file():
        digest, basis = hashlib.sha256(manifest.read_bytes()).hexdigest(), "split"
    else:
        digest, basis = data_info.get("manifest_sha256"), "corpus"
    return {"split": split, "utterances": utterances, "manifest_sha256": digest, "basis": basis,
            "fingerprint": evaluation_set_fingerprint(split, utterances, digest, basis)}


def write_audio_examples(dataset: Path, split: str, samples: list[dict], limit: int, out: Path) -> int:
    """A few evaluated clips as 16 kHz WAV next to what the model said about them (``predictions.json``)."""
    manifest = split_path(dataset, split)
    if limit <= 0 or not samples or not manifest.is_file():
        return 0
    records = {r.id: r for r in read_manifest(manifest)}
    rows: list[dict] = []
    for sample in samples:
        record = records.get(str(sample.get("id")))
        if record is None:
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", record.id) + ".wav"
        try:
            (out / name).write_bytes(to_wav_bytes(load_audio(resolve_audio(manifest, record.audio))))
        except (AudioError, ManifestError, OSError) as exc:
            log.warning("audio example %s skipped: %s", record.id, exc)
            continue
        rows.append({"audio": name, **sample})
        if len(rows) >= limit:
            break
    if rows:
        (out / "predictions.json").write_text(json.dumps(rows, indent=2, default=str))
    return len(rows)


def register(params: RegisterParams, model: Path, evaluation: Path, export: Path | None,
             data_report: Path | None, training: Path | None, artifacts: Path | None,
             dataset: Path | None = None, tuning: Path | None = None, evaluation_files: Path | None = None) -> dict:
    import mlflow

    card = read_model_card(model)
    task = get_task(card["task"])
    pipeline = os.environ.get("SPEECHOPS_PIPELINE") or card["task"]
    name = params.model_name or pipeline
    tracking_uri = params.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ValueError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    gate = params.gate or task.gate
    digests = image_digests()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _use_experiment(tracking_uri, params.experiment or pipeline)

    evaluation_report = _read_json(evaluation)
    training_report = _read_json(training)
    data_info = _read_json(data_report)
    commit = os.environ.get("SPEECHOPS_GIT_COMMIT", "unknown")
    eval_set = evaluation_set(evaluation_report, data_info, dataset)
    gate_values = {m: float(evaluation_report[m]) for m in gate.names
                   if isinstance(evaluation_report.get(m), (int, float)) and np.isfinite(evaluation_report[m])}
    lineage = {
        "speechops.pipeline": pipeline,
        "speechops.task": card["task"],
        "speechops.run_id": os.environ.get("SPEECHOPS_RUN_ID", ""),
        "speechops.git_commit": commit,
        "speechops.corpus_sha256": data_info.get("manifest_sha256", "unknown"),
        "speechops.data_source": str(data_info.get("source", "unknown")),
        "speechops.base_model": str(card.get("base_model", "")),
        "speechops.base_model_revision": str(card.get("base_model_revision") or ""),
        **{f"speechops.image.{k}": v for k, v in digests.items()},
    }
    eval_tags = {
        TAG_EVAL_SET: eval_set["fingerprint"] or "unknown",
        "speechops.eval_split": str(eval_set["split"]),
        "speechops.eval_utterances": str(eval_set["utterances"]),
        "speechops.eval_manifest_sha256": str(eval_set["manifest_sha256"]),
        "speechops.eval_set_basis": eval_set["basis"],
        **metric_tags(gate_values),
    }
    with mlflow.start_run(run_name=f"{pipeline}-{lineage['speechops.run_id']}") as run:
        mlflow.set_tags({**lineage, **eval_tags})
        for section, values in (("train", training_report.get("params")), ("prepare", data_info.get("params")),
                                ("evaluate", evaluation_report.get("params"))):
            mlflow.log_params({f"{section}.{k}": str(v)[:500] for k, v in (values or {}).items()})
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
        examples = 0
        if dataset is not None and eval_set["split"]:
            with tempfile.TemporaryDirectory() as tmp:
                examples = write_audio_examples(dataset, eval_set["split"], samples, params.num_audio_examples, Path(tmp))
                if examples:
                    mlflow.log_artifacts(tmp, "evaluation/audio_examples")
        if evaluation_files and evaluation_files.is_dir():  # the evaluation's plots, predictions and audio
            mlflow.log_artifacts(str(evaluation_files), "evaluation")
        if artifacts and artifacts.is_dir():
            mlflow.log_artifacts(str(artifacts), "training")
        if export and export.is_dir():
            mlflow.log_artifacts(str(export), "onnx")
        if tuning and tuning.is_dir():  # the tune stage's trials table, plots and study (when it ran)
            mlflow.log_artifacts(str(tuning), "tune")
            tuned = training_report.get("tuned") or {}
            mlflow.log_params({f"tuned.{k}": v for k, v in (tuned.get("values") or {}).items()})
        for config_name in ("preprocessor_config.json", "tokenizer_config.json", "config.json",
                            "generation_config.json", "speechops.json"):
            if (model / config_name).is_file():
                mlflow.log_artifact(str(model / config_name), "lineage")
        if digests:
            mlflow.log_dict(digests, "lineage/image_digests.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_load_mlflow_python_model(),
            artifacts={"model": str(model)},
            registered_model_name=name,
            pip_requirements=["torch==2.11.*", "transformers>=5,<6", "soundfile", "numpy", "scipy"],
        )
        version = str(info.registered_model_version)
        registry = ModelRegistry(tracking_uri, name, params.lock_timeout_s)
        registry.set_tags(version, {**lineage, **eval_tags, **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}})
        decision = registry.gate(version, gate)
        mlflow.set_tags(decision.tags())
        mlflow.log_dict(decision.to_dict(), "promotion/decision.json")
    aliases = registry.aliases()
    champion = aliases.get(CHAMPION)
    log.info("registered %s version %s (run %s): %s", name, version, run.info.run_id, decision.reason)
    return {
        "model_name": name,
        "model_version": version,
        "model_uri": f"models:/{name}/{version}",
        "champion_uri": f"models:/{name}@{CHAMPION}" if champion else None,
        "aliases": aliases,
        "mlflow_run_id": run.info.run_id,
        "tracking_uri": tracking_uri,
        "lineage": lineage,
        "evaluation_set": eval_set,
        "audio_examples": examples,
        "promotion": decision.to_dict(),
        "metrics": {"model": f"{name} v{version}",
                    "decision": "champion" if decision.promote else "challenger",
                    "champion": f"v{champion}" if champion else "none",
                    "mlflow_run": run.info.run_id[:12]},
        "notes": [f"{name} v{version}: {decision.reason}"],
    }


SPEC = StageSpec(
    name="register",
    kind="processing",
    inputs=("model", "evaluation", "export", "data", "training", "artifacts", "dataset", "tuning", "evaluation_files"),
    optional_inputs=("export", "data", "training", "artifacts", "dataset", "tuning", "evaluation_files"),
    outputs=(),
    params=lambda task: RegisterParams,
    run=lambda p, task, io: register(p, io.inputs["model"], io.inputs["evaluation"], io.inputs.get("export"),
                                     io.inputs.get("data"), io.inputs.get("training"), io.inputs.get("artifacts"),
                                     io.inputs.get("dataset"), io.inputs.get("tuning"), io.inputs.get("evaluation_files")),
)

if __name__ == "__main__":
    raise SystemExit(run_stage(SPEC))
