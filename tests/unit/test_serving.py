"""The serving contract: /ping, /invocations through the task's handler, clear 4xx on bad input.

The app knows no task's shape: a one-clip JSON task and a two-clip task answering audio (the shape of
voice conversion) are served by the same app, each through its own handler."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from steps.common.audio import load_audio, to_wav_bytes
from steps.common.loudness import rms_dbfs
from steps.common.payload import Limits, RequestError, clip_from_base64, json_object, media_type
from steps.tasks.io import Answer, ClipHandler, Handler, Request
from tests.conftest import tone


class LevelHandler(ClipHandler):
    """Answers with the measured level of what it received, so the test sees the decoded audio."""

    def load(self, model_dir):
        pass

    def predict(self, audio: np.ndarray) -> dict:
        return {"transcript": "", "intensity_dbfs": round(rms_dbfs(audio), 2), "samples": int(audio.shape[0])}


class MixHandler(Handler):
    """Two named clips in (JSON), audio out: the shape of voice conversion."""

    request_types = ("application/json",)
    response_types = ("audio/wav", "application/json")

    def load(self, model_dir):
        pass

    def decode(self, body, content_type, limits):
        if media_type(content_type) != "application/json":
            raise RequestError("send application/json", 415)
        payload = json_object(body, '{"src_wav_b64": "...", "ref_wav_b64": "..."}')
        return clip_from_base64(payload, "src_wav_b64", limits, None), clip_from_base64(payload, "ref_wav_b64", limits, None)

    def predict(self, inputs):
        src, ref = inputs
        return (src[: ref.shape[0]] * 0.5).astype(np.float32)

    def encode(self, outputs, accept=None):
        chosen = self.check_accept(accept)
        wav = to_wav_bytes(outputs)
        if chosen == "audio/wav":
            return Answer(wav, "audio/wav")
        return Answer(json.dumps({"wav_b64": base64.b64encode(wav).decode()}).encode(), "application/json")

    @classmethod
    def sample_request(cls, manifest, record):
        raise NotImplementedError


@pytest.fixture
def client():
    return TestClient(create_app(LevelHandler("unused"), limits=Limits(max_body_bytes=2_000_000, max_seconds=5)))


def test_ping(client):
    assert client.get("/ping").status_code == 200
    assert TestClient(create_app(None)).get("/ping").status_code == 503


def test_wav_bytes(client):
    answer = client.post("/invocations", content=to_wav_bytes(tone(1.0, dbfs=-23)), headers={"Content-Type": "audio/wav"})
    assert answer.status_code == 200
    assert abs(answer.json()["intensity_dbfs"] + 23) < 0.1 and answer.json()["samples"] == 16000


def test_json_base64_file_and_raw_pcm(client):
    wav = base64.b64encode(to_wav_bytes(tone(0.5, rate=16000))).decode()
    assert client.post("/invocations", json={"base64": wav}).json()["samples"] == 8000
    pcm = (tone(1.0, rate=8000, dbfs=-20) * 32767).astype("<i2").tobytes()
    answer = client.post("/invocations", json={"base64": base64.b64encode(pcm).decode(), "sample_rate": 8000})
    assert answer.status_code == 200 and answer.json()["samples"] == 16000


@pytest.mark.parametrize("body,ctype,status,fragment", [
    (b"", "audio/wav", 400, "empty"),
    (b"RIFF....garbage", "audio/wav", 400, "not an audio file"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"\x00 not json", "application/json", 400, "Expecting value"),  # not read as UTF-16 because of the NUL
    ('{"audio": 1}'.encode("utf-16"), "application/json", 400, "not UTF-8 text"),
    (b'{"audio": 1}', "application/json", 400, "base64"),
    (b'{"base64": "@@@"}', "application/json", 400, "not valid base64"),
    (b'{"base64": "AAAA"}', "application/json", 400, "sample_rate"),
    (b'{"base64": "AAAA", "sample_rate": "fast"}', "application/json", 400, "sample_rate"),
    (b"hello", "text/plain", 415, "Content-Type"),
])
def test_malformed_requests_get_clear_4xx(client, body, ctype, status, fragment):
    answer = client.post("/invocations", content=body, headers={"Content-Type": ctype})
    assert answer.status_code == status
    assert fragment in answer.json()["error"]


def test_limits_refuse_large_bodies_and_long_clips_before_predicting(client):
    big = b"\0" * 2_000_001
    assert client.post("/invocations", content=big, headers={"Content-Type": "audio/wav"}).status_code == 413
    long = to_wav_bytes(tone(6.0))
    answer = client.post("/invocations", content=long, headers={"Content-Type": "audio/wav"})
    assert answer.status_code == 413 and "longer than 5 s" in answer.json()["error"]


def test_an_unanswerable_accept_header_is_a_406(client):
    answer = client.post("/invocations", content=to_wav_bytes(tone(0.5)),
                         headers={"Content-Type": "audio/wav", "Accept": "audio/wav"})
    assert answer.status_code == 406 and "application/json" in answer.json()["error"]


def test_the_same_app_serves_several_named_clips_in_and_audio_out():
    client = TestClient(create_app(MixHandler("unused")))
    src, ref = (base64.b64encode(to_wav_bytes(tone(d, dbfs=-20))).decode() for d in (1.0, 0.5))
    audio = client.post("/invocations", json={"src_wav_b64": src, "ref_wav_b64": ref}, headers={"Accept": "audio/wav"})
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert load_audio(audio.content).shape[0] == 8000
    as_json = client.post("/invocations", json={"src_wav_b64": src, "ref_wav_b64": ref},
                          headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"
    assert load_audio(base64.b64decode(as_json.json()["wav_b64"])).shape[0] == 8000
    missing = client.post("/invocations", json={"src_wav_b64": src})
    assert missing.status_code == 400 and "ref_wav_b64" in missing.json()["error"]


def test_a_handler_is_callable_without_a_server_as_mlflow_and_deploy_use_it():
    answer = LevelHandler("unused")(Request(to_wav_bytes(tone(1.0, dbfs=-23)), "audio/wav"))
    assert answer.content_type == "application/json" and abs(answer.json()["intensity_dbfs"] + 23) < 0.1
