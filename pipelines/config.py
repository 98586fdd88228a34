"""One configuration mechanism: a YAML file per pipeline profile plus ``--set key=value`` overrides.

``pipelines/configs/<pipeline>/<profile>.yaml`` holds ``description``, ``common`` (values shared by
every stage that accepts them, e.g. ``model_id``) and ``stages.<stage>`` (that stage's parameters).
Overrides address any key with dots: ``--set stages.train.epochs=3`` or ``--set common.model_id=X``;
``train.epochs=3`` is accepted as a short form of ``stages.train.epochs=3``. Values are parsed as YAML
(``3`` is an int, ``true`` a bool, ``[a, b]`` a list). Validation happens when the pipeline is built.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TOP_LEVEL_KEYS = {"description", "common", "stages", "gate", "sagemaker", "compose", "kubeflow"}


class ConfigError(ValueError):
    pass


def profiles(pipeline: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / pipeline).glob("*.yaml"))


def config_path(pipeline: str, profile: str) -> Path:
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = CONFIG_DIR / pipeline / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(profiles(pipeline)) or "none"
        raise ConfigError(f"no profile {profile!r} for pipeline {pipeline!r} (known: {known}); "
                          f"or pass the path of a .yaml file")
    return path


def load_config(pipeline: str, profile: str, overrides: list[str] | None = None) -> dict[str, Any]:
    path = config_path(pipeline, profile)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        hints = []
        for key in sorted(unknown, key=str):
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, 1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise ConfigError(f"{path}: unknown top-level keys {', '.join(hints)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    config = apply_overrides(config, overrides or [])
    config.setdefault("common", {})
    config.setdefault("stages", {})
    return config


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL_KEYS:
            parts = ["stages", *parts]
        if parts[0] == "stages" and len(parts) < 3:
            raise ConfigError(f"--set {item!r}: name a stage parameter, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        value = _number(value)
        node = config
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return config


def _number(value: Any) -> Any:
    """YAML 1.1 reads '1e-3' as a string; a user typing it means a number."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            return value
    return value


def unused_common_keys(config: dict[str, Any], accepted: set[str]) -> list[str]:
    return sorted(set(config.get("common") or {}) - accepted)
