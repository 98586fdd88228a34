"""Find and load a model for serving: a model folder, or a version from the MLflow registry.

From the registry, serving follows the promotion gate: ``models:/<name>@champion`` unless a version
or another alias is asked for. With no champion yet (no version passed the gate), the latest version
is served and the choice says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from steps.common.promotion import CHAMPION
from steps.tasks import get_task
from steps.tasks.base import read_model_card
from steps.tasks.io import Handler

log = logging.getLogger(__name__)

REGISTERED_MODEL_SUBDIR = "model"


@dataclass(frozen=True)
class RegistryChoice:
    """Which registered version to serve, and why."""

    name: str
    version: str
    alias: str | None  # the alias it was reached through, if any
    note: str = ""  # set when the default (champion) could not be followed

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        via = f"models:/{self.name}@{self.alias} = " if self.alias else ""
        return f"{via}{self.uri}"


def load_handler_from_dir(model_dir: Path) -> Handler:
    card = read_model_card(model_dir)
    return get_task(card["task"]).load_handler(Path(model_dir))


def choose_registered_version(tracking_uri: str, name: str, version: str | None = None,
                              alias: str | None = None) -> RegistryChoice:
    """``version`` or ``alias`` if given, else the champion, else the latest version (with a note)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if version is not None and alias is not None:
        raise ValueError("pass either a version or an alias, not both")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if version is not None:
        try:
            client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise LookupError(f"model {name!r} has no version {version} at {tracking_uri}") from exc
        return RegistryChoice(name, str(version), None)
    try:
        aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        raise LookupError(f"no registered model {name!r} at {tracking_uri}; "
                          f"run python pipelines/run.py --pipeline {name} first") from exc
    wanted = alias or CHAMPION
    if wanted in aliases:
        return RegistryChoice(name, aliases[wanted], wanted)
    if alias is not None:
        known = ", ".join(f"@{k} (v{v})" for k, v in sorted(aliases.items())) or "none"
        raise LookupError(f"model {name!r} has no alias {alias!r}; its aliases: {known}")
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise LookupError(f"no registered versions of model {name!r} at {tracking_uri}; "
                          f"run python pipelines/run.py --pipeline {name} first")
    latest = str(max(int(v.version) for v in versions))
    note = (f"model {name!r} has no @{CHAMPION} yet (no version passed the promotion gate); serving the latest, "
            f"v{latest}. Make one champion with: python pipelines/run.py promote --pipeline {name} "
            f"--version N --reason '...'")
    log.warning(note)
    return RegistryChoice(name, latest, None, note)


def registry_model_dir(tracking_uri: str, name: str, version: str | None = None,
                       alias: str | None = None) -> tuple[Path, str]:
    """Download (or locate) the model folder of a registered version; returns (folder, ``models:/name/N``)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    choice = choose_registered_version(tracking_uri, name, version, alias)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=choice.uri))
    return pyfunc_model_folder(local), choice.uri


def pyfunc_model_folder(local: Path) -> Path:
    """The task's model folder inside a downloaded pyfunc model, as its MLmodel file records it."""
    import yaml

    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    entry = artifacts.get(REGISTERED_MODEL_SUBDIR)
    if not entry:
        raise LookupError(f"{local} holds no '{REGISTERED_MODEL_SUBDIR}' artifact; was it registered by speechops?")
    return local / entry["path"]


def load_handler_from_registry(tracking_uri: str, name: str, version: str | None = None,
                                 alias: str | None = None) -> tuple[Handler, str]:
    folder, uri = registry_model_dir(tracking_uri, name, version, alias)
    return load_handler_from_dir(folder), uri
