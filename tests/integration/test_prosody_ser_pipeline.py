"""prosody_ser through the real CLI, fed the seed's own manifest format (one JSONL per split, audio paths
relative to an audio folder, ``prosody_annotations``, emotions as class numbers), read without conversion.

Every stage runs for real on a few dozen bundled clips: SentencePiece with the seed's ids, a small Whisper
encoder from config with the three heads (a couple of epochs: the figures are not a result, the default
profile's are in the README), evaluation with both baselines and beam search, ONNX export with parity,
registration and the served endpoint answering a real clip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration
EMOTIONS = ["neutral", "happy", "sad", "angry"]


def _seed_manifests(folder):
    corpus = REPO_ROOT / "steps/corpus/sample"
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    wanted = {"train": 64, "validation": 12, "test": 16}
    files = {}
    for split, count in wanted.items():
        chosen = [r for r in rows if r["split"] == split][:count]
        files[split] = folder / f"ser_audio_features_wav_{split}.jsonl"
        files[split].write_text("".join(json.dumps({
            "audio_filepath": r["audio"], "words": r["words"], "prosody_annotations": r["emphasis"],
            "emotion": EMOTIONS.index(r["emotion"])}) + "\n" for r in chosen))
    return files, corpus


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    """The reduced pipeline on the seed's manifests: (runs folder, run folder, the split manifests)."""
    tmp_path = tmp_path_factory.mktemp("prosody_ser")
    runs = tmp_path / "runs"
    files, audio_root = _seed_manifests(tmp_path)
    reduced = [
        "--set", f"prepare.split_manifests.train={files['train']}",
        "--set", f"prepare.split_manifests.validation={files['validation']}",
        "--set", f"prepare.split_manifests.test={files['test']}",
        "--set", f"prepare.audio_root={audio_root}", "--set", "prepare.speaker_splits=null",
        "--set", "common.model_id=scratch", "--set", "tokenizer.vocab_size=120",
        "--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "train.head_lr=3e-3",
        "--set", "train.backbone_lr=1e-3", "--set", "train.detect_collapse=false",
        "--set", "evaluate.beam_width=4", "--set", "export.max_items=4",
    ]
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs}/mlflow.db")
    done = subprocess.run([sys.executable, "pipelines/run.py", "--pipeline", "prosody_ser", *reduced,
                           "--runs-dir", str(runs), "--run-id", "smoke", "--quiet"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs, runs / "prosody_ser/smoke", files


def test_prosody_ser_pipeline_on_the_seeds_manifest_format(seed_run):
    runs, run, files = seed_run

    def report(stage):
        return json.loads((run / stage / "report.json").read_text())

    assert report("prepare")["counts"] == {"train": 64, "validation": 12, "test": 16}
    tokenizer = report("tokenizer")
    assert tokenizer["specials"]["blank"] == 4 and tokenizer["vocab_size"] <= 120
    train = report("train")
    assert train["global_steps"] == 16 and "val_emotion_accuracy" in train["metrics"]
    assert any("eval_emotion_accuracy" in h and "eval_emphasis_f1" in h for h in train["history"])

    evaluation = report("evaluate")
    assert evaluation["utterances"] == 16
    emotion = evaluation["emotion"]
    assert emotion["model"]["labels"] == ["0", "1", "2", "3"] and len(emotion["model"]["confusion"]) == 4
    assert 0 <= evaluation["emotion_accuracy"] <= 1 and emotion["acoustic_statistics"]["trained_on"] == 64
    test_labels = [str(json.loads(line)["emotion"]) for line in files["test"].read_text().splitlines()]
    most = emotion["majority_class"]["class"]
    assert emotion["majority_class"]["accuracy"] == pytest.approx(test_labels.count(most) / 16)
    assert evaluation["emphasis"]["no_emphasis"]["f1"] == 0.0 and evaluation["emphasis"]["model"]["words"] > 0
    assert {"greedy", "beam_search"} <= set(evaluation["asr"])
    assert (run / "evaluate/evaluation/confusion.png").is_file()

    parity = json.loads((run / "export/onnx/parity.json").read_text())["parity"]
    assert parity["max_emotion_prob_diff"] < 1e-4 and parity["identical_emotions"] == 4

    deploy = report("deploy")
    answer = deploy["response"]
    assert answer["emotion"] in {"0", "1", "2", "3"} and set(answer["probabilities"]) == {"0", "1", "2", "3"}
    assert isinstance(answer["transcript"], str) and isinstance(answer["emphasis"], list)
    assert deploy["metrics"]["malformed_status"] == 400


@pytest.mark.browser
def test_the_demo_shows_the_emotion_transcript_and_emphasis_of_an_upload(seed_run, tmp_path):
    """``run.py demo --pipeline prosody_ser`` on the registered model, in headless Chromium: an uploaded test clip
    gets the endpoint's emotion (with its probabilities as bars), transcript and emphasised words."""
    from steps.tasks.io import Request
    from tests.demo_driver import demo_page, endpoint_answer

    runs, run, files = seed_run
    first = json.loads(files["test"].read_text().splitlines()[0])
    clip = REPO_ROOT / "steps/corpus/sample" / first["audio_filepath"]
    expected = endpoint_answer(run / "train/model", Request(clip.read_bytes(), "application/octet-stream")).json()
    with demo_page("prosody_ser", runs_dir=runs, tracking_uri=f"sqlite:///{runs}/mlflow.db",
                   log=tmp_path / "demo.log") as demo:
        assert "models:/prosody_ser" in demo.text("#speechops-model")
        assert demo.page.get_by_text("example0-0-").count() == 1  # test-split examples of the latest run
        demo.upload("clip", clip)
        demo.submit_and_wait()
        shown = [line.strip() for line in demo.wait_for_text("#speechops-probabilities").splitlines() if line.strip()]
        assert shown[:2] == ["Emotion", expected["emotion"]], shown  # the top class heads the bars
        bars = dict(zip(shown[2::2], shown[3::2]))  # each class with its probability in per cent
        assert bars == {k: f"{round(v * 100)}%" for k, v in expected["probabilities"].items()}, (bars, expected)
        assert demo.text("#speechops-transcript textarea") == expected["transcript"]
        emphasised = [w["word"] for w in expected["emphasis"]]
        shown = demo.text("#speechops-emphasis")
        assert all(word in shown for word in emphasised), (shown, emphasised)
        demo.screenshot(tmp_path / "demo_prosody_ser.png")
        assert not demo.foreign, demo.foreign[:5]
