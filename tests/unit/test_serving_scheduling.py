"""The server under load and hostile input: inference off the event loop, backpressure (503 with Retry-After),
per-request time limits, dynamic batching, limits checked before work, lenient base64, raw PCM never read as a
file, JSON bombs refused, and SIGTERM as a clean exit. A real uvicorn server on loopback, a handler whose
``predict_batch`` waits on an event the test controls (so nothing here depends on timing)."""

from __future__ import annotations

import base64
import io
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn

from serving.app import create_app
from serving.limits import Scheduling
from steps.common.audio import to_wav_bytes
from steps.common.payload import Limits
from steps.tasks.io import ClipHandler
from tests.conftest import REPO_ROOT, free_port, tone, wait_for_ping


class GatedHandler(ClipHandler):
    """Answers each clip's sample count once ``gate`` is open; records the size of every batch it ran."""

    def load(self, model_dir):
        self.gate, self.batches, self.started = threading.Event(), [], threading.Event()

    def predict(self, audio):
        return self.predict_batch([audio])[0]

    def predict_batch(self, clips):
        self.started.set()
        self.gate.wait(10)
        if any(clip.shape[0] == 777 for clip in clips):
            raise RuntimeError("this clip breaks the model")
        self.batches.append(len(clips))
        return [{"samples": int(clip.shape[0])} for clip in clips]


class Server:
    def __init__(self, handler, scheduling: Scheduling, limits: Limits | None = None):
        config = uvicorn.Config(create_app(handler, limits=limits or Limits(max_body_bytes=3_000_000, max_seconds=5),
                                           scheduling=scheduling), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def _wav(samples: int = 16000) -> bytes:
    return to_wav_bytes(tone(samples / 16000, seed=samples))


def _post_later(url: str, body: bytes, results: list, index: int) -> threading.Thread:
    def send():
        results[index] = httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": "audio/wav"},
                                    timeout=30)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_ping_answers_while_inference_is_busy_and_overload_gets_503_with_retry_after():
    handler = GatedHandler("unused")
    with Server(handler, Scheduling(max_pending=2, max_batch=1)) as url:
        results = [None, None]
        threads = [_post_later(url, _wav(16000 + i), results, i) for i in range(2)]
        assert handler.started.wait(10)
        assert httpx.get(f"{url}/ping", timeout=5).status_code == 200  # the model is still busy
        deadline = time.time() + 10
        while time.time() < deadline:  # both held requests admitted: the next one is refused at once
            refused = httpx.post(f"{url}/invocations", content=_wav(), headers={"Content-Type": "audio/wav"},
                                 timeout=5)
            if refused.status_code == 503:
                break
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]
        handler.gate.set()
        for thread in threads:
            thread.join(30)
        assert sorted(r.json()["samples"] for r in results) == [16000, 16001]


def test_requests_arriving_together_are_answered_in_one_batch():
    handler = GatedHandler("unused")
    with Server(handler, Scheduling(max_pending=16, max_batch=8, batch_wait_ms=200)) as url:
        results = [None] * 4
        first = _post_later(url, _wav(8000), results, 0)
        assert handler.started.wait(10)  # the first batch holds the worker
        rest = [_post_later(url, _wav(8000 + i), results, i) for i in range(1, 4)]
        time.sleep(0.5)  # let the three queue up behind it
        handler.gate.set()
        for thread in [first, *rest]:
            thread.join(30)
    assert [r.status_code for r in results] == [200] * 4
    assert handler.batches == [1, 3]


def test_one_bad_clip_does_not_fail_the_others_in_its_batch():
    handler = GatedHandler("unused")
    handler.gate.set()
    with Server(handler, Scheduling(max_batch=8, batch_wait_ms=300)) as url:
        results = [None] * 3
        threads = [_post_later(url, _wav(n), results, i) for i, n in enumerate((9000, 777, 9001))]
        for thread in threads:
            thread.join(30)
    assert sorted(r.status_code for r in results) == [200, 200, 500]


def test_a_request_past_its_time_limit_gets_503_and_frees_its_slot_when_done():
    handler = GatedHandler("unused")
    app_scheduling = Scheduling(max_pending=1, request_timeout_s=0.3)
    with Server(handler, app_scheduling) as url:
        late = httpx.post(f"{url}/invocations", content=_wav(), headers={"Content-Type": "audio/wav"}, timeout=10)
        assert late.status_code == 503 and "no answer within 0.3 s" in late.json()["error"]
        handler.gate.set()
        deadline = time.time() + 10
        while time.time() < deadline:
            answer = httpx.post(f"{url}/invocations", content=_wav(), headers={"Content-Type": "audio/wav"},
                                timeout=10)
            if answer.status_code == 200:
                break
        assert answer.status_code == 200


def _flac(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="FLAC")
    return buffer.getvalue()


def _wav_claiming_rate(rate: int) -> bytes:
    wav = bytearray(_wav(1600))
    wav[24:28] = rate.to_bytes(4, "little")
    return bytes(wav)


def _raw_pcm_starting_with_minus_one() -> bytes:
    pcm = (tone(0.5, seed=2) * 32767).astype("<i2")
    pcm[0] = -1  # ff ff: the bytes of an MPEG frame sync
    return pcm.tobytes()


HOSTILE = [
    ("a 10 s FLAC over a 5 s limit", _flac(10), "audio/flac", 413, "longer than 5 s"),
    ("a WAV header claiming 2,147,483,647 Hz", _wav_claiming_rate(2_147_483_647), "audio/wav", 400, "sample rate"),
    ("JSON arrays nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested"),
    ("JSON objects nested 5,000 deep", b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "nested"),
    ("a sample_rate of 5,000 digits", b'{"base64": "AAAA", "sample_rate": ' + b"9" * 5000 + b"}", "application/json",
     400, "not valid JSON"),
    ("raw PCM sent as audio/wav", _raw_pcm_starting_with_minus_one(), "audio/wav", 400, "not an audio file"),
    ("a truncated WAV header", _wav()[:30], "audio/wav", 400, "audio"),
    ("an empty body", b"", "audio/wav", 400, "empty"),
    ("a body over the limit", b"RIFF" + b"\0" * 3_100_000, "audio/wav", 413, "limit"),
    ("no content type", _wav(), "", 415, "Content-Type"),
    ("binary garbage as JSON", bytes(range(256)) * 8, "application/json", 400, "JSON"),
]


@pytest.mark.parametrize("name,body,ctype,status,fragment", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_a_4xx_that_says_why(name, body, ctype, status, fragment, monkeypatch):
    from fastapi.testclient import TestClient

    import steps.common.payload as payload

    def must_not_decode(*args, **kwargs):
        raise AssertionError("audio was decoded before its header was checked")

    if status == 413 and ctype == "audio/flac":
        monkeypatch.setattr(payload, "load_audio", must_not_decode)
    handler = GatedHandler("unused")
    handler.gate.set()
    client = TestClient(create_app(handler, limits=Limits(max_body_bytes=3_000_000, max_seconds=5),
                                   scheduling=Scheduling()))
    answer = client.post("/invocations", content=body, headers={"Content-Type": ctype} if ctype else {})
    assert answer.status_code == status, answer.text[:300]
    assert fragment in answer.json()["error"]
    assert client.get("/ping").status_code == 200


def test_base64_with_line_breaks_url_safe_and_raw_pcm_that_looks_like_mpeg():
    from fastapi.testclient import TestClient

    handler = GatedHandler("unused")
    handler.gate.set()
    client = TestClient(create_app(handler, limits=Limits(), scheduling=Scheduling()))
    wav = _wav(12345)
    wrapped = base64.encodebytes(wav).decode()  # 76-character lines, as the base64 command prints
    url_safe = base64.urlsafe_b64encode(wav).decode().rstrip("=")
    for encoded in (wrapped, url_safe):
        answer = client.post("/invocations", json={"base64": encoded})
        assert answer.status_code == 200 and answer.json()["samples"] == 12345
    pcm = _raw_pcm_starting_with_minus_one()
    answer = client.post("/invocations", json={"base64": base64.b64encode(pcm).decode(), "sample_rate": 16000})
    assert answer.status_code == 200 and answer.json()["samples"] == len(pcm) // 2


SERVER_SCRIPT = """
import logging
import sys
sys.path.insert(0, {root!r})
logging.basicConfig(level=logging.INFO)
from serving.server import serve_forever
from steps.tasks.io import ClipHandler

class Echo(ClipHandler):
    def load(self, model_dir):
        pass

    def predict(self, audio):
        return {{"samples": int(audio.shape[0])}}

serve_forever(Echo("unused"), port={port})
"""


def test_sigterm_stops_the_server_cleanly_with_exit_status_0(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT.format(root=str(REPO_ROOT), port=port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_ping(f"http://127.0.0.1:{port}", 60)
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", content=_wav(), headers={"Content-Type": "audio/wav"})
        assert answer.status_code == 200
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output[-2000:]
    assert "POST /invocations 200, 1.00 s of audio" in output
