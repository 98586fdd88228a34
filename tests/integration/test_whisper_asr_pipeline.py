"""whisper_asr through the real CLI on a reduced setting of the bundled Hindi corpus.

The starting model is a tiny Whisper built from config and saved as a "pretrained" folder with a 30 s
window and a tokenizer that has the Hindi prompt, so every path of the real default runs: the window
cut to 6 s, the forced ``<|hi|><|transcribe|>`` prompt, the Seq2SeqTrainer scoring generated text,
zero-shot at 30 s and at the cut window against fine-tuned, ONNX parity, registration, and the served
endpoint answering ``{"text", "language", "duration_s"}``. A few training steps only: the figures are not a result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

HINDI_MANIFEST = REPO_ROOT / "steps/corpus/hindi/manifest.jsonl"


def _tiny_pretrained(folder):
    """A 30 s-window Whisper from config (d_model 64, one layer) with a BPE that knows <|hi|>, saved like a checkpoint."""
    import torch
    from transformers import WhisperFeatureExtractor

    from steps.models.whisper.build import build_whisper
    from steps.models.whisper.prompt import DecoderPrompt
    from steps.models.whisper.tokenizer import special_tokens, train_bpe

    texts = [" " + json.loads(line)["text"] for line in HINDI_MANIFEST.read_text().splitlines()[:200]]
    tokenizer = train_bpe(texts, vocab_size=400, min_frequency=1, specials=special_tokens(DecoderPrompt("hi", "transcribe")))
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    torch.manual_seed(0)
    model = build_whisper("scratch", tokenizer, extractor, d_model=64, layers=1, heads=2, ffn_dim=128)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("whisper_asr")
    start = _tiny_pretrained(tmp_path / "tiny-whisper")
    runs = tmp_path / "runs"
    reduced = [
        "--set", f"common.model_id={start}",
        "--set", "prepare.max_per_split=24",
        "--set", "train.max_steps=4", "--set", "train.max_eval_samples=4", "--set", "train.generation_max_length=24",
        "--set", "evaluate.max_items=8", "--set", "evaluate.max_new_tokens=16",
        "--set", "export.max_items=4", "--set", "export.max_new_tokens=8",
    ]
    env = dict(os.environ, SPEECHOPS_PROGRESS="0", MLFLOW_TRACKING_URI=f"sqlite:///{runs}/mlflow.db",
               SPEECHOPS_BASELINE_CACHE=str(tmp_path / "baselines"))
    done = subprocess.run([sys.executable, "pipelines/run.py", "--pipeline", "whisper_asr", *reduced,
                           "--runs-dir", str(runs), "--run-id", "smoke", "--quiet"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs


def test_whisper_asr_pipeline_end_to_end(smoke_run):
    runs = smoke_run
    stages = json.loads((runs / "whisper_asr/smoke/run.json").read_text())["stages"]
    assert list(stages) == ["prepare", "tokenizer", "train", "evaluate", "export", "register", "deploy"]
    assert [s["status"] for s in stages.values()] == ["ran"] * 7

    def report(stage):
        return json.loads((runs / "whisper_asr/smoke" / stage / "report.json").read_text())

    tokenizer = report("tokenizer")
    assert tokenizer["prompt"] == ["<|startoftranscript|>", "<|hi|>", "<|transcribe|>", "<|notimestamps|>"]
    train = report("train")
    # train + validation merged, the 4-utterance evaluation slice kept out and scored on generated text
    assert train["training_utterances"] > 24 and len(train["evaluation_slice"]) == 4
    assert any("eval_wer" in h for h in train["history"]) and train["metrics"]["val_wer"] is not None
    assert (runs / "whisper_asr/smoke/train/artifacts/loss_curve.png").is_file()
    card = json.loads((runs / "whisper_asr/smoke/train/model/speechops.json").read_text())
    assert (card["language"], card["whisper_task"], card["window_seconds"]) == ("hi", "transcribe", 6)
    generation = json.loads((runs / "whisper_asr/smoke/train/model/generation_config.json").read_text())
    assert (generation["language"], generation["task"], generation.get("forced_decoder_ids")) == ("hi", "transcribe", None)

    evaluation = report("evaluate")
    assert evaluation["split"] == "test" and evaluation["utterances"] == 8 and evaluation["language"] == "hi"
    assert 0 <= evaluation["wer"] and 0 <= evaluation["cer"]
    assert set(evaluation["asr"]["basic_normalizer"]) == {"wer", "cer"}
    base = evaluation["base_model"]
    assert base["kind"] == "zero_shot" and base["30s"]["window_seconds"] == 30 and base["6s"]["window_seconds"] == 6
    for key in ("wer", "cer", "zero_shot_30s_wer", "zero_shot_30s_cer", "zero_shot_6s_wer", "zero_shot_6s_cer"):
        assert key in evaluation["metrics"]
    assert {"reference", "hypothesis", "zero_shot_30s", "zero_shot_6s"} <= set(evaluation["samples"][0])
    # the forgetting guard: English guard clips with the English prompt, against the start at 30 s
    guard = evaluation["guard"]
    assert guard["utterances"] == 24 and guard["language"] == "en" and guard["base_model"]["window_s"] == 30
    assert evaluation["guard_wer_increase"] == pytest.approx(guard["wer"] - guard["base_model"]["wer"])
    assert {"guard_wer", "guard_base_wer", "guard_wer_increase"} <= set(evaluation["metrics"])

    export = report("export")
    assert export["parity"]["all_transcripts_identical"] and export["parity"]["max_logit_diff"] < 1e-3
    # a vocabulary trained from scratch puts special tokens first: CTranslate2 cannot run it, and says so
    assert "--runtime torch" in export["ctranslate2"]["skipped"]
    assert report("register")["model_version"] == "1"
    deploy = report("deploy")
    assert set(deploy["response"]) == {"text", "language", "duration_s"} and deploy["response"]["language"] == "hi"
    assert deploy["malformed_request"]["status"] == 400


@pytest.mark.browser
def test_the_demo_shows_the_transcript_and_language_of_an_upload(smoke_run, tmp_path):
    from tests.demo_driver import check_transcript_page

    check_transcript_page("whisper_asr", smoke_run, smoke_run / "whisper_asr/smoke", tmp_path, fields=("language",))
