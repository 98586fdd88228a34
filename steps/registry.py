"""The stages this project has, by name: ``python -m steps.<name>`` runs each one."""

from __future__ import annotations

import importlib

from steps.common.stage import StageSpec

STAGES = ("prepare", "tokenizer", "train", "tune", "evaluate", "export", "register", "deploy")


def get_stage(name: str) -> StageSpec:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    try:
        module = importlib.import_module(f"steps.{name}")
    except ModuleNotFoundError as exc:
        raise KeyError(f"stage {name!r} is not implemented yet ({exc})") from exc
    return module.SPEC
