"""Find and load a model for serving: a model folder, or a version from the MLflow registry."""

from __future__ import annotations

from pathlib import Path

from steps.tasks import get_task
from steps.tasks.base import Predictor, read_model_card

REGISTERED_MODEL_SUBDIR = "model"


def load_predictor_from_dir(model_dir: Path) -> Predictor:
    card = read_model_card(model_dir)
    return get_task(card["task"]).load_predictor(Path(model_dir))


def registry_model_dir(tracking_uri: str, name: str, version: str | None = None) -> tuple[Path, str]:
    """Download (or locate) the model folder of a registered version; returns (folder, uri)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if version is None:
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise LookupError(f"no registered versions of model {name!r} at {tracking_uri}; "
                              f"run python pipelines/run.py --pipeline {name} first")
        version = str(max(int(v.version) for v in versions))
    uri = f"models:/{name}/{version}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    return pyfunc_model_folder(local), uri


def pyfunc_model_folder(local: Path) -> Path:
    """The task's model folder inside a downloaded pyfunc model, as its MLmodel file records it."""
    import yaml

    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    entry = artifacts.get(REGISTERED_MODEL_SUBDIR)
    if not entry:
        raise LookupError(f"{local} holds no '{REGISTERED_MODEL_SUBDIR}' artifact; was it registered by speechops?")
    return local / entry["path"]


def load_predictor_from_registry(tracking_uri: str, name: str, version: str | None = None) -> tuple[Predictor, str]:
    folder, uri = registry_model_dir(tracking_uri, name, version)
    return load_predictor_from_dir(folder), uri
