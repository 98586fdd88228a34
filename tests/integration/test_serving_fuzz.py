"""The fuzz tier: hostile requests against the real server process (``python -m serving``) holding a real model
(Whisper tiny.en as shipped, as a ``whisper_intensity`` folder). Every one gets a 4xx that says why, never a
5xx; the server stays up, its memory after the hostile cases stays within 100 MB of before, and SIGTERM stops
it with exit status 0."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf

from steps.common.audio import to_wav_bytes
from tests.conftest import REPO_ROOT, free_port, tone, wait_for_ping, zero_shot_whisper_intensity
from tests.unit.test_serving_scheduling import HOSTILE

pytestmark = pytest.mark.integration


def _long_flac(minutes: float, rate: int = 48000) -> bytes:
    """A FLAC of ``minutes`` of silence, written in blocks (small file, long audio)."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=rate, channels=2, format="FLAC") as out:
        block = np.zeros((rate * 10, 2), dtype=np.float32)
        for _ in range(int(minutes * 6)):
            out.write(block)
    return buffer.getvalue()


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _truncated_wav() -> bytes:
    wav = to_wav_bytes(tone(1.0))
    return wav[: len(wav) // 3]


MORE = [
    ("an hour-long header: 20 min of 48 kHz stereo FLAC", _long_flac(20), "audio/flac", 413),
    ("a 1-sample WAV", to_wav_bytes(np.array([0.1], dtype=np.float32)), "audio/wav", 200),
    ("a truncated WAV", _truncated_wav(), "audio/wav", 200),
    ("JSON null", b"null", "application/json", 400),
    ("JSON with a huge base64 string of junk", json.dumps({"base64": "@" * 100_000}).encode(), "application/json", 400),
    ("a NaN sample rate", b'{"base64": "AAAA", "sample_rate": NaN}', "application/json", 400),
    ("an unknown accept type", to_wav_bytes(tone(0.5)), "audio/wav", 406),
]


# the limits the hostile cases are written for (tests/unit/test_serving_scheduling.py): 3,000,000 bytes, 5 s
LIMITS = {"SPEECHOPS_MAX_BODY_MB": str(3_000_000 / 2**20), "SPEECHOPS_MAX_SECONDS": "5"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = zero_shot_whisper_intensity(tmp_path_factory.mktemp("model"))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "serving", "--model-dir", str(model), "--host", "127.0.0.1",
                                "--port", str(port)], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **LIMITS},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_ping(url, 180)
    yield url, process
    if process.poll() is None:
        process.kill()


def test_hostile_requests_never_get_a_5xx_and_the_server_survives(server):
    url, process = server
    warm = httpx.post(f"{url}/invocations", content=to_wav_bytes(tone(1.0)), headers={"Content-Type": "audio/wav"},
                      timeout=60)
    assert warm.status_code == 200
    before = _rss_mb(process.pid)
    cases = [(name, body, ctype, status) for name, body, ctype, status, _ in HOSTILE] + MORE
    seen = {}
    for name, body, ctype, expected in cases:
        headers = {"Content-Type": ctype} if ctype else {}
        if name == "an unknown accept type":
            headers["Accept"] = "text/html"
        answer = httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)
        seen[name] = answer.status_code
        assert answer.status_code == expected, f"{name}: {answer.status_code} {answer.text[:200]}"
        if answer.status_code >= 400:
            assert answer.json()["error"]
        assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    assert all(status < 500 for status in seen.values())
    growth = _rss_mb(process.pid) - before
    assert growth < 100, f"the server grew by {growth:.0f} MB over the hostile cases"
    tiny = httpx.post(f"{url}/invocations", content=to_wav_bytes(np.array([0.1], dtype=np.float32)),
                      headers={"Content-Type": "audio/wav"}, timeout=60).json()
    assert tiny["transcript"] == "" and "too short" in tiny["no_speech"]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-2000:]
    assert "POST /invocations 413" in output and "POST /invocations 200" in output
