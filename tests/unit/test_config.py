"""Configs: every shipped profile loads and validates; bad values fail fast with all problems listed."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError, apply_overrides, profiles
from pipelines.definition import PipelineError
from pipelines.registry import PIPELINES, get_pipeline


@pytest.mark.parametrize("pipeline,profile", [(p, f) for p in PIPELINES for f in profiles(p)])
def test_every_shipped_profile_validates(pipeline, profile):
    built = get_pipeline(pipeline, profile)
    assert built.order()[0].name == "prepare"
    assert [s.name for s in built.order()][-1] == "deploy"


def test_overrides_parse_yaml_values_and_short_form():
    config = apply_overrides({"stages": {"train": {"epochs": 1}}},
                             ["train.epochs=3", "common.model_id=scratch", "stages.train.lr=1e-3", "evaluate.max_items=null"])
    assert config["stages"]["train"]["epochs"] == 3
    assert config["common"]["model_id"] == "scratch"
    assert config["stages"]["train"]["lr"] == pytest.approx(1e-3)
    assert config["stages"]["evaluate"]["max_items"] is None


def test_bad_override_syntax_is_refused():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="stage parameter"):
        apply_overrides({}, ["train=3"])


def test_invalid_values_are_all_reported_before_running():
    with pytest.raises(PipelineError) as err:
        get_pipeline("whisper_intensity", "tiny", ["train.epochs=-1", "train.batch_size=many", "prepare.intensity=loud",
                                                   "train.no_such_option=1"])
    text = str(err.value)
    for fragment in ("stages.train.epochs", "stages.train.batch_size", "stages.prepare.intensity", "no_such_option"):
        assert fragment in text


def test_unused_common_key_is_an_error():
    with pytest.raises(PipelineError, match="common.typo_key"):
        get_pipeline("whisper_intensity", "tiny", ["common.typo_key=1"])


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="tiny"):
        get_pipeline("whisper_intensity", "nope")
