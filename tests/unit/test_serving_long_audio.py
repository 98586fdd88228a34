"""Whisper served on what users send: a clip several windows long is transcribed whole, silence gets no
invented sentence, raw PCM16 whose first sample is -1 is read as PCM. Whisper tiny.en as shipped (offline),
packaged as a ``whisper_intensity`` model folder with a 6 s window, through the task's handler."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from steps.common.audio import load_audio, to_wav_bytes
from steps.common.manifest import read_manifest, resolve_audio
from steps.common.metrics import error_rates
from steps.tasks.io import Request
from tests.conftest import REPO_ROOT, zero_shot_whisper_intensity

CORPUS = REPO_ROOT / "steps/corpus/sample/manifest.jsonl"


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    from steps.tasks.whisper_intensity.handler import HANDLER

    return HANDLER(zero_shot_whisper_intensity(tmp_path_factory.mktemp("tiny-en-6s")))


def _test_clips(count: int):
    records = [r for r in read_manifest(CORPUS) if r.split == "test"][:count]
    return records, [load_audio(resolve_audio(CORPUS, r.audio)) for r in records]


def test_a_clip_many_windows_long_is_transcribed_to_its_end(handler):
    records, clips = _test_clips(10)
    pause = np.zeros(6400, dtype=np.float32)
    long = np.concatenate([part for clip in clips for part in (clip, pause)])
    assert long.shape[0] / 16000 > 3 * 6  # several of the model's 6 s windows
    answer = handler.predict(long)
    assert answer["duration_s"] == pytest.approx(long.shape[0] / 16000, abs=1e-3)
    reference = " ".join(r.text for r in records)
    assert error_rates([reference], [answer["transcript"]])["wer"] < 0.6
    last = set(records[-1].text.lower().rstrip(".?!").split())
    assert last & set(answer["transcript"].lower().replace(".", " ").split())  # the end is there too


def test_silence_and_crumbs_get_no_invented_sentence(handler):
    for clip in (np.zeros(32000, dtype=np.float32), np.full(400, 0.2, dtype=np.float32)):
        answer = handler.predict(clip)
        assert answer["transcript"] == "" and answer["no_speech"]


def test_raw_pcm16_starting_with_minus_one_is_read_as_pcm(handler):
    records, clips = _test_clips(1)
    pcm = np.round(clips[0] * 32767).astype("<i2")
    pcm[0] = -1  # ff ff, the bytes of an MPEG frame sync
    body = json.dumps({"base64": base64.b64encode(pcm.tobytes()).decode(), "sample_rate": 16000}).encode()
    answer = handler(Request(body, "application/json")).json()
    as_wav = handler(Request(to_wav_bytes(pcm.astype(np.float32) / 32768), "audio/wav")).json()
    assert answer["transcript"] == as_wav["transcript"] and "meeting" in answer["transcript"]
    assert answer["duration_s"] == pytest.approx(pcm.size / 16000, abs=1e-3)


def test_a_batch_gets_the_answers_each_clip_gets_alone(handler):
    """Dynamic batching must not change an answer: the window is fixed, so padding is the same alone or together."""
    _, clips = _test_clips(4)
    together = handler.predict_batch(clips)
    alone = [handler.predict(clip) for clip in clips]
    assert [a["transcript"] for a in together] == [a["transcript"] for a in alone]
    assert np.allclose([a["intensity_dbfs"] for a in together], [a["intensity_dbfs"] for a in alone], atol=0.01)
