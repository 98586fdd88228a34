"""A hub checkpoint pinned to a revision: the revision reaches every stage that loads the model, is
part of its cache key, and is what is downloaded; the model card records it and the register stage
tags the version with it (tests/unit/test_promotion.py). An upstream change cannot be served from
cache, or registered, unnoticed."""

from __future__ import annotations

import pytest

from pipelines.backends.cache import stage_key
from pipelines.registry import get_pipeline
from steps.models import resolve


@pytest.mark.parametrize("pipeline,profile", [("ctc_asr", "base960h"), ("whisper_intensity", "small")])
def test_common_revision_reaches_the_stages_that_load_the_model_and_their_cache_keys(pipeline, profile):
    pinned = get_pipeline(pipeline, profile, ["common.revision=0123abcd"]).validated_params()
    unpinned = get_pipeline(pipeline, profile, []).validated_params()
    for stage in ("tokenizer", "train"):
        assert pinned[stage].revision == "0123abcd" and unpinned[stage].revision is None
        keys = [stage_key(stage, pipeline, params[stage].model_dump(mode="json"), {}, code="c")
                for params in (pinned, unpinned)]
        assert keys[0] != keys[1], "another revision is another cache entry"


def test_a_revision_downloads_that_revision(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, revision=None: calls.append((repo, revision)) or "/snap/x")
    assert resolve.resolve_model_path("org/model", "0123abcd") == "/snap/x"
    assert calls == [("org/model", "0123abcd")]
    assert resolve.resolve_model_path("org/model") == "org/model", "unpinned: from_pretrained resolves it"


@pytest.mark.parametrize("model_id", ["scratch", "bundled:whisper-tiny.en", "."])
def test_a_revision_of_something_that_is_not_a_hub_id_is_an_error(model_id):
    with pytest.raises(ValueError, match="hub ids"):
        resolve.check_revision(model_id, "0123abcd")

