"""The serving contract: /ping, /invocations with audio/wav or JSON base64, clear 4xx on bad input."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from steps.common.audio import to_wav_bytes
from steps.common.loudness import rms_dbfs
from steps.tasks.base import Predictor
from tests.conftest import tone


class LevelPredictor(Predictor):
    """Answers with the measured level of what it received, so the test sees the decoded audio."""

    def predict(self, audio: np.ndarray) -> dict:
        return {"transcript": "", "intensity_dbfs": round(rms_dbfs(audio), 2), "samples": int(audio.shape[0])}


@pytest.fixture
def client():
    return TestClient(create_app(LevelPredictor()))


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
    (b"RIFF....garbage", "audio/wav", 400, "could not read"),
    (b"{not json", "application/json", 400, "not valid JSON"),
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
