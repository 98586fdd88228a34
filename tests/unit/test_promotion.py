"""The promotion gate, aliases, manual overrides and serving from the registry.

Registry tests run against both stores the project supports: the local SQLite store and a real
``mlflow server`` process on loopback (started once for the module). Versions are tiny synthetic
model folders (a ``speechops.json`` card) with a fake evaluation report: the register stage's real
code logs, registers and gates them; nothing loads a model.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from steps.common.promotion import (
    CHALLENGER,
    CHAMPION,
    TAG_PREVIOUS_CHAMPION,
    Evaluated,
    ModelRegistry,
    PromotionError,
    PromotionLockTimeout,
    RegistryMutex,
    decide,
)
from steps.common.gate import Gate, GateError, GateMetric
from tests.conftest import tone

THRESHOLDS = Gate(metrics=(GateMetric(name="wer", min_improvement=0.005, limit=0.5),
                           GateMetric(name="intensity_rmse", max_regression=0.2, limit=3.0)))


# -- the pure decision ---------------------------------------------------------------------------------

def test_first_version_needs_only_the_absolute_limits_and_all_violations_are_listed():
    ok = decide(Evaluated("1", {"wer": 0.3, "intensity_rmse": 1.0}, "set"), None, THRESHOLDS)
    assert ok.promote and ok.champion_before is None and "first version" in ok.reason
    bad = decide(Evaluated("1", {"wer": 0.7, "intensity_rmse": 4.0}, "set"), None, THRESHOLDS)
    assert not bad.promote
    assert len(bad.violations) == 2 and "wer <= 0.5" in bad.reason and "intensity_rmse <= 3" in bad.reason
    missing = decide(Evaluated("1", {"wer": 0.3}, "set"), None, THRESHOLDS)
    assert not missing.promote and "intensity_rmse is missing" in missing.reason


def test_challenger_must_beat_the_champion_by_the_thresholds():
    champion = Evaluated("1", {"wer": 0.30, "intensity_rmse": 1.0}, "set")
    better = decide(Evaluated("2", {"wer": 0.29, "intensity_rmse": 1.15}, "set"), champion, THRESHOLDS)
    assert better.promote and better.champion_before == "1" and better.like_for_like
    assert better.compared["wer"]["delta"] == pytest.approx(-0.01)
    too_small = decide(Evaluated("2", {"wer": 0.298, "intensity_rmse": 1.0}, "set"), champion, THRESHOLDS)
    assert not too_small.promote and "gate.wer.min_improvement" in too_small.reason
    regressed = decide(Evaluated("2", {"wer": 0.2, "intensity_rmse": 1.3}, "set"), champion, THRESHOLDS)
    assert not regressed.promote and "gate.intensity_rmse.max_regression" in regressed.reason
    both = decide(Evaluated("2", {"wer": 0.31, "intensity_rmse": 1.5}, "set"), champion, THRESHOLDS)
    assert len(both.violations) == 2  # every violation, not just the first


def test_without_improvement_thresholds_a_challenger_must_still_be_better_somewhere():
    lenient = Gate(metrics=(GateMetric(name="wer", max_regression=0.0),))
    champion = Evaluated("1", {"wer": 0.30}, "set")
    assert not decide(Evaluated("2", {"wer": 0.30}, "set"), champion, lenient).promote
    assert decide(Evaluated("2", {"wer": 0.29}, "set"), champion, lenient).promote


def test_the_forgetting_guard_refuses_a_model_worse_than_its_base_on_general_speech():
    from steps.tasks import get_task

    gate = get_task("whisper_intensity").gate
    assert gate.metric("guard_wer_increase").limit == 0.01
    champion = Evaluated("1", {"wer": 0.02, "intensity_rmse": 0.5}, "set")  # registered before the guard existed
    good = {"wer": 0.01, "intensity_rmse": 0.5, "guard_wer_increase": -0.02}
    assert decide(Evaluated("1", good, "set"), None, gate).promote
    assert decide(Evaluated("2", good, "set"), champion, gate).promote, "a champion without the guard is no obstacle"
    forgot = decide(Evaluated("2", {**good, "guard_wer_increase": 0.09}, "set"), champion, gate)
    assert not forgot.promote and "guard_wer_increase 0.09 does not meet the limit" in forgot.reason
    assert "general-speech guard set" in forgot.reason
    unmeasured = decide(Evaluated("1", {"wer": 0.01, "intensity_rmse": 0.5}, "set"), None, gate)
    assert not unmeasured.promote and "guard_wer_increase is missing" in unmeasured.reason
    switched_off = gate.configured({"guard_wer_increase": {"limit": None}})
    assert decide(Evaluated("1", {"wer": 0.01, "intensity_rmse": 0.5}, "set"), None, switched_off).promote


def test_a_higher_is_better_metric_is_decided_in_its_own_direction():
    gate = Gate(metrics=(GateMetric(name="accuracy", direction="higher", limit=0.5, min_improvement=0.01),
                         GateMetric(name="wer", direction="lower", max_regression=0.05)))
    assert not decide(Evaluated("1", {"accuracy": 0.4, "wer": 0.2}, "s"), None, gate).promote  # below the minimum
    assert decide(Evaluated("1", {"accuracy": 0.6, "wer": 0.2}, "s"), None, gate).promote
    champion = Evaluated("1", {"accuracy": 0.60, "wer": 0.20}, "s")
    better = decide(Evaluated("2", {"accuracy": 0.65, "wer": 0.22}, "s"), champion, gate)
    assert better.promote, better.reason
    worse = decide(Evaluated("2", {"accuracy": 0.55, "wer": 0.10}, "s"), champion, gate)
    assert not worse.promote and "at least 0.01 higher" in worse.reason
    assert "accuracy 0.4 does not meet the limit accuracy >= 0.5" in decide(
        Evaluated("1", {"accuracy": 0.4, "wer": 0.2}, "s"), None, gate).reason


def test_a_profile_changes_thresholds_not_directions_and_typos_are_named():
    task_gate = Gate(metrics=(GateMetric(name="wer", limit=0.5),))
    assert task_gate.configured({"wer": {"limit": 0.2}}).metric("wer").limit == 0.2
    with pytest.raises(GateError, match="did you mean 'wer'"):
        task_gate.configured({"wre": {"limit": 0.2}})
    with pytest.raises(GateError, match="did you mean 'min_improvement'.*the direction is the task's"):
        task_gate.configured({"wer": {"min_improvment": 0.1}})
    with pytest.raises(GateError, match="direction"):
        task_gate.configured({"wer": {"direction": "higher"}})
    with pytest.raises(GateError, match="greater than or equal to 0"):
        task_gate.configured({"wer": {"min_improvement": -1}})


def test_a_different_evaluation_set_is_never_compared():
    champion = Evaluated("1", {"wer": 0.30, "intensity_rmse": 1.0}, "set-a")
    decision = decide(Evaluated("2", {"wer": 0.10, "intensity_rmse": 0.5}, "set-b"), champion, THRESHOLDS)
    assert not decision.promote and decision.like_for_like is False
    assert "not like-for-like" in decision.reason and "promote" in decision.reason
    unknown = decide(Evaluated("2", {"wer": 0.10, "intensity_rmse": 0.5}, None), champion, THRESHOLDS)
    assert not unknown.promote


# -- stores: a real mlflow server on loopback, and local SQLite -------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{uri}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail("mlflow server did not answer /health within 120 s")
            time.sleep(0.25)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@functools.lru_cache(maxsize=1)
def _sqlite_template() -> Path:
    """An initialised MLflow SQLite database (creating one runs its migrations: seconds), copied per store."""
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="speechops-mlflow-template-"))
    atexit.register(shutil.rmtree, folder, True)
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri, uri).search_registered_models()
    return folder / "mlflow.db"


def fresh_sqlite_store(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template(), folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    return fresh_sqlite_store(tmp_path_factory.mktemp("mlflow-sqlite"))


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.integration)])
def store(request):
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "mlflow_server")


@pytest.fixture
def model_name():
    return f"m-{uuid.uuid4().hex[:8]}"  # one registered model per test: stores are shared by the module


def register_version(root: Path, store: str, name: str, wer: float, rmse: float, test_set: str = "same",
                     dataset: Path | None = None, data_report: Path | None = None, **params) -> dict:
    """The register stage on a synthetic model folder and fake reports (``data_report``: a real prepare report)."""
    from steps.register import RegisterParams, register

    folder = root / uuid.uuid4().hex[:8]
    for sub in ("model", "evaluation", "data"):
        (folder / sub).mkdir(parents=True)
    (folder / "model/speechops.json").write_text(json.dumps({"task": "whisper_intensity", "base_model": "synthetic",
                                                                  "base_model_revision": "0123abcd"}))
    (folder / "evaluation/report.json").write_text(json.dumps({
        "split": "test", "utterances": 3, "wer": wer, "intensity_rmse": rmse, "metrics": {"wer": wer},
        "params": {"split": "test"},
        "samples": [{"id": f"t{i}", "reference": "a b", "hypothesis": "a b", "intensity": -20.0, "predicted": -21.0}
                    for i in range(3)]}))
    (folder / "data/report.json").write_text(json.dumps({"manifest_sha256": f"corpus-{test_set}", "source": "synthetic"}))
    stage_params = RegisterParams(tracking_uri=store, model_name=name, gate=THRESHOLDS, **params)
    return register(stage_params, folder / "model", folder / "evaluation", None, data_report or folder / "data", None, None,
                    dataset)


def _tags(store: str, name: str, version: str) -> dict[str, str]:
    return ModelRegistry(store, name).tags(version)


def test_gate_first_worse_better_then_rollback(store, model_name, tmp_path):
    registry = ModelRegistry(store, model_name)
    first = register_version(tmp_path, store, model_name, wer=0.30, rmse=1.0)
    assert first["metrics"]["decision"] == "champion" and "first version" in first["notes"][0]
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "1"}

    worse = register_version(tmp_path, store, model_name, wer=0.31, rmse=1.0)
    assert (worse["metrics"]["decision"], worse["metrics"]["champion"]) == ("challenger", "v1")
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    tags = _tags(store, model_name, "2")
    assert tags["speechops.gate.decision"] == "kept_challenger"
    assert "gate.wer.min_improvement" in tags["speechops.gate.reason"]
    assert json.loads(tags["speechops.gate.compared"])["wer"]["champion"] == pytest.approx(0.30)
    assert json.loads(tags["speechops.gate.thresholds"])["wer"]["min_improvement"] == 0.005
    assert tags["speechops.gate.champion_before"] == "1"

    better = register_version(tmp_path, store, model_name, wer=0.20, rmse=1.1)
    assert better["metrics"]["decision"] == "champion"
    assert registry.aliases() == {CHAMPION: "3", CHALLENGER: "3"}
    assert _tags(store, model_name, "3")[TAG_PREVIOUS_CHAMPION] == "1"
    assert _tags(store, model_name, "3")["speechops.gate.decision"] == "promoted"

    other_split = register_version(tmp_path, store, model_name, wer=0.05, rmse=0.5, test_set="other")
    assert other_split["metrics"]["decision"] == "challenger"
    assert "not like-for-like" in other_split["promotion"]["reason"]
    assert registry.champion() == "3"

    back = registry.rollback(None, "v3 mis-transcribes names in production")
    assert back["version"] == "1" and registry.champion() == "1"
    assert _tags(store, model_name, "1")["speechops.manual.action"] == "rollback"
    assert _tags(store, model_name, "1")["speechops.manual.reason"] == "v3 mis-transcribes names in production"
    assert _tags(store, model_name, "3")["speechops.rolled_back.to_version"] == "1"
    with pytest.raises(PromotionError, match="no previous champion"):
        registry.rollback(None, "v1 was the first champion")  # v1 replaced nobody

    forward = registry.promote("4", "the new test split is the one we trust now")
    assert forward["changed"] and registry.champion() == "4"
    assert _tags(store, model_name, "4")[TAG_PREVIOUS_CHAMPION] == "1"
    assert registry.rollback(None, "undo")["version"] == "1"
    with pytest.raises(PromotionError, match="reason"):
        registry.promote("3", "  ")


@pytest.mark.integration
def test_two_concurrent_registrations_leave_exactly_one_champion(store, model_name, tmp_path):
    register_version(tmp_path, store, model_name, wer=0.30, rmse=1.0)  # champion v1
    barrier = threading.Barrier(2)

    def register_at_once(i: int) -> tuple[str, str]:
        barrier.wait(timeout=60)
        report = register_version(tmp_path / f"t{i}", store, model_name, wer=0.20, rmse=1.0)
        return report["model_version"], report["promotion"]["outcome"]

    with ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(register_at_once, range(2)))
    # both beat v1 equally; under the lock the second compares with the first, which it does not beat
    assert sorted(results.values()) == ["kept_challenger", "promoted"]
    winner = next(v for v, outcome in results.items() if outcome == "promoted")
    loser = next(v for v, outcome in results.items() if outcome == "kept_challenger")
    registry = ModelRegistry(store, model_name)
    assert registry.champion() == winner
    assert _tags(store, model_name, winner)[TAG_PREVIOUS_CHAMPION] == "1"
    assert _tags(store, model_name, loser)["speechops.gate.champion_before"] == winner


@pytest.mark.integration
def test_registry_mutex_refuses_a_second_holder_and_breaks_an_expired_lock(mlflow_server, model_name):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server, mlflow_server)
    with RegistryMutex(client, model_name, timeout_s=5) as held:
        with pytest.raises(PromotionLockTimeout, match=held.owner.split(":")[0]):
            with RegistryMutex(client, model_name, timeout_s=0.5):
                pass
    with RegistryMutex(client, model_name, timeout_s=5):  # released: free again
        pass
    stale = RegistryMutex(client, model_name, ttl_s=0.0)
    stale.__enter__()  # a holder that died without releasing
    with RegistryMutex(client, model_name, timeout_s=5):
        pass
    names = [m.name for m in client.search_registered_models()]
    assert f"{model_name}{RegistryMutex.SUFFIX}" not in names


def test_register_logs_audio_examples_lineage_and_the_split_hash(sqlite_store, model_name, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    dataset = tmp_path / "dataset"
    (dataset / "audio").mkdir(parents=True)
    rows = []
    for i in range(3):
        sf.write(dataset / f"audio/t{i}.wav", tone(0.5, dbfs=-20 - i, seed=i), 16000)
        rows.append({"id": f"t{i}", "audio": f"audio/t{i}.wav", "text": "a b", "split": "test", "duration": 0.5})
    (dataset / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SPEECHOPS_IMAGE_DIGESTS", json.dumps({"train": "sha256:" + "ab" * 32}))
    report = register_version(tmp_path, sqlite_store, model_name, wer=0.3, rmse=1.0, dataset=dataset,
                              num_audio_examples=2)
    assert report["audio_examples"] == 2
    assert report["evaluation_set"]["basis"] == "split"
    client = MlflowClient(sqlite_store, sqlite_store)
    listed = {Path(a.path).name for a in client.list_artifacts(report["mlflow_run_id"], "evaluation/audio_examples")}
    assert listed == {"t0.wav", "t1.wav", "predictions.json"}
    tags = _tags(sqlite_store, model_name, "1")
    assert tags["speechops.image.train"] == "sha256:" + "ab" * 32
    assert tags["speechops.base_model"] == "synthetic" and tags["speechops.base_model_revision"] == "0123abcd"
    assert tags["speechops.eval_set_basis"] == "split" and float(tags["speechops.eval.wer"]) == 0.3
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["speechops.gate.decision"] == "promoted"
    # the split's own hash: a changed corpus whose test split is unchanged is still comparable
    again = register_version(tmp_path, sqlite_store, model_name, wer=0.2, rmse=1.0, test_set="grown", dataset=dataset)
    assert again["promotion"]["like_for_like"] is True and again["metrics"]["decision"] == "champion"


def test_serving_follows_the_champion(sqlite_store, model_name, tmp_path):
    from serving.loader import choose_registered_version

    register_version(tmp_path, sqlite_store, model_name, wer=0.9, rmse=1.0)  # above the wer limit: no champion
    fallback = choose_registered_version(sqlite_store, model_name)
    assert fallback.version == "1" and fallback.alias is None and "no @champion" in fallback.note
    register_version(tmp_path, sqlite_store, model_name, wer=0.3, rmse=1.0)  # first to pass: champion
    register_version(tmp_path, sqlite_store, model_name, wer=0.4, rmse=1.0)  # worse: challenger
    chosen = choose_registered_version(sqlite_store, model_name)
    assert (chosen.version, chosen.alias, chosen.note) == ("2", CHAMPION, "")
    assert chosen.label == f"models:/{model_name}@champion = models:/{model_name}/2"
    assert choose_registered_version(sqlite_store, model_name, alias=CHALLENGER).version == "3"
    assert choose_registered_version(sqlite_store, model_name, version="1").version == "1"
    with pytest.raises(LookupError, match="@champion"):
        choose_registered_version(sqlite_store, model_name, alias="production")


def test_cli_promote_and_rollback_record_the_reason(sqlite_store, tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    name = "whisper_intensity"  # the CLI's model name is the pipeline name; no other test uses it
    store = sqlite_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    register_version(tmp_path, store, name, wer=0.30, rmse=1.0)
    register_version(tmp_path, store, name, wer=0.31, rmse=1.0)
    assert main(["promote", "--pipeline", name, "--version", "2", "--reason", "A/B test winner"]) == 0
    assert "champion is now v2" in capsys.readouterr().out
    tags = _tags(store, name, "2")
    assert (tags["speechops.manual.action"], tags["speechops.manual.reason"]) == ("promote", "A/B test winner")
    assert main(["rollback", "--pipeline", name, "--reason", "latency regression"]) == 0
    assert "rolled back from v2 to v1" in capsys.readouterr().out
    assert ModelRegistry(store, name).champion() == "1"
    assert main(["promote", "--pipeline", name, "--version", "9", "--reason", "typo"]) == 2
    assert "no version 9" in capsys.readouterr().out


def test_every_shipped_profile_carries_one_gate_to_the_register_stage():
    from pipelines.config import profiles
    from pipelines.definition import PipelineError
    from pipelines.registry import get_pipeline

    for profile in profiles("whisper_intensity"):
        pipeline = get_pipeline("whisper_intensity", profile)
        params = pipeline.validated_params()["register"]
        assert params.gate == pipeline.gate, "the register stage gets the pipeline's one gate"
        assert pipeline.gate.metric("wer").min_improvement == 0.005
        assert pipeline.gate.metric("intensity_rmse").max_regression == 0.2
    assert get_pipeline("whisper_intensity", "tiny", ["gate.wer.limit=0.2"]).gate.metric("wer").limit == 0.2
    with pytest.raises(PipelineError, match="gate.cer: not a gate metric"):
        get_pipeline("whisper_intensity", "tiny", ["gate.cer.limit=0.1"])
    with pytest.raises(PipelineError, match="gate.wer.min_improvement"):
        get_pipeline("whisper_intensity", "tiny", ["gate.wer.min_improvement=-1"])
