"""The browser tier's driver: ``python pipelines/run.py demo`` started on loopback, opened in headless Chromium
(Debian's ``chromium`` package, driven by Playwright; no browser download), with every request the page makes
recorded, so a test can check that the page stays on loopback (works offline).

Tests using it are marked ``browser`` and skip, saying why, where Chromium or Playwright is missing
(``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO_ROOT, free_port


def endpoint_answer(model_dir: Path, request) -> object:
    """What the endpoint answers: the model folder's handler, in this process, for a ``Request``."""
    from serving.loader import load_handler_from_dir

    return load_handler_from_dir(model_dir)(request)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# what a sandboxed root process needs, and no background traffic to hosts this machine cannot reach
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 # a fake microphone (a beep), allowed without a prompt: recording can be tested headless
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
SCREENSHOTS_ENV = "SPEECHOPS_SCREENSHOTS"  # a folder to copy the tests' screenshots to (the README's comes from here)


def chromium() -> str:
    """The system Chromium, or skip the test saying how to get it."""
    found = os.environ.get("SPEECHOPS_CHROMIUM") or next((p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None)
    if not found:
        pytest.skip("no Chromium here: apt-get install chromium (the browser tier uses the system browser)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    return found


@dataclass
class DemoPage:
    page: object  # playwright.sync_api.Page
    url: str
    process: subprocess.Popen
    foreign: list[str] = field(default_factory=list)  # requests to anything but the demo's own host

    def submit_and_wait(self, selector: str = "#speechops-answer", timeout_s: float = 120) -> str:
        """Click Submit, then wait until ``selector`` shows new text (a textarea's value, or an element's text;
        default: the answer panel, which every task fills)."""
        before = self.text(selector)
        self.page.click("#speechops-submit")
        return self.wait_for_text(selector, timeout_s, other_than=before)

    def text(self, selector: str) -> str:
        element = self.page.locator(selector).first
        tag = element.evaluate("e => e.tagName") if element.count() else ""
        return element.input_value() if tag in ("TEXTAREA", "INPUT") else (element.inner_text() if tag else "")

    def busy(self) -> bool:
        """Whether an answer is still coming (Gradio's progress timer is shown in the outputs)."""
        return self.page.locator(".eta-bar, .progress-text").count() > 0

    def wait_for_text(self, selector: str, timeout_s: float = 120, other_than: str | None = None) -> str:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            assert self.process.poll() is None, "the demo process died"
            text = self.text(selector)
            if text.strip() and text != other_than and not self.busy():
                return text
            self.page.wait_for_timeout(250)
        raise AssertionError(f"nothing (new) appeared in {selector} within {timeout_s} s")

    def upload(self, name: str, path: Path) -> None:
        """Give the clip input ``name`` a file, as a user choosing it in the file dialog (the clip already there,
        if any, is cleared first, with the component's own button)."""
        clear = self.page.locator(f"#speechops-input-{name} button[aria-label='Clear']")
        if clear.count():
            clear.first.click()
        source = self.page.locator(f"#speechops-input-{name} button[aria-label='Upload file']")
        if source.count():  # the input may be in recording mode
            source.first.click()
        self.page.locator(f"#speechops-input-{name} input[type=file]").first.set_input_files(str(path))
        self.wait_loaded(name)

    def wait_loaded(self, name: str, timeout_s: float = 60) -> None:
        """Until the clip input ``name`` holds a clip (its Clear button shows once the upload is in)."""
        self.page.locator(f"#speechops-input-{name} button[aria-label='Clear']").first.wait_for(
            state="visible", timeout=timeout_s * 1000)

    def click_example(self, label: str, inputs: tuple[str, ...] = ("clip",)) -> None:
        """Click the example whose file name starts with ``label``, into emptied inputs, until they hold it."""
        for name in inputs:
            clear = self.page.locator(f"#speechops-input-{name} button[aria-label='Clear']")
            if clear.count():
                clear.first.click()
        self.page.get_by_text(label, exact=False).first.click()
        for name in inputs:
            self.wait_loaded(name)

    def record(self, name: str, seconds: float) -> None:
        """Record ``seconds`` from the (fake) microphone into the clip input ``name``, with the page's buttons."""
        clear = self.page.locator(f"#speechops-input-{name} button[aria-label='Clear']")
        if clear.count():
            clear.first.click()
        self.page.locator(f"#speechops-input-{name} button[aria-label='Record audio']").first.click()
        self.page.locator(f"#speechops-input-{name}").get_by_role("button", name="Record").first.click()
        self.page.wait_for_timeout(int(seconds * 1000))
        self.page.locator(f"#speechops-input-{name}").get_by_role("button", name="Stop").first.click()
        self.page.wait_for_timeout(1500)

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get(SCREENSHOTS_ENV):
            target = Path(os.environ[SCREENSHOTS_ENV])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.name)
        return path


@contextlib.contextmanager
def demo_page(pipeline: str, *args: str, runs_dir: Path | None = None, tracking_uri: str | None = None,
              timeout_s: float = 240, log: Path | None = None) -> Iterator[DemoPage]:
    """``run.py demo --pipeline PIPELINE ARGS`` on a free loopback port, opened in headless Chromium
    (``tracking_uri``: the MLflow store the runs registered in, when not the runs folder's default)."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "pipelines/run.py", "demo", "--pipeline", pipeline, "--port", str(port), *args]
    if runs_dir is not None:
        command += ["--runs-dir", str(runs_dir)]
    env = dict(os.environ, SPEECHOPS_PROGRESS="0")
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_page(url, process, timeout_s, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
                page = context.new_page()
                demo = DemoPage(page, url, process)
                page.on("request", lambda r: demo.foreign.append(r.url)
                        if urlparse(r.url).hostname not in ("127.0.0.1", "localhost") and not r.url.startswith(
                            ("data:", "blob:")) else None)
                page.goto(url, wait_until="networkidle")
                yield demo
            finally:
                browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()


def _wait_for_page(url: str, process: subprocess.Popen, timeout_s: float, log: Path | None) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise AssertionError(f"the demo exited with {process.returncode} before serving its page:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the demo did not answer at {url} within {timeout_s} s")


def check_transcript_page(pipeline: str, runs: Path, run: Path, tmp_path: Path, fields: tuple[str, ...] = ()) -> None:
    """The demo of an ASR pipeline's registered model in Chromium: a test clip of its latest run uploaded, the
    endpoint's transcript (and ``fields``, each in its own box) shown, a screenshot saved, nothing fetched from
    other hosts."""
    from steps.common.manifest import read_manifest, resolve_audio
    from steps.tasks.io import Request

    manifest = run / "prepare/data/test.jsonl"
    clip = resolve_audio(manifest, read_manifest(manifest)[0].audio)
    expected = endpoint_answer(run / "train/model", Request(clip.read_bytes(), "application/octet-stream")).json()
    with demo_page(pipeline, runs_dir=runs, tracking_uri=f"sqlite:///{runs}/mlflow.db", log=tmp_path / "demo.log") as demo:
        assert f"models:/{pipeline}" in demo.text("#speechops-model")
        assert demo.page.get_by_text("example0-0-").count() == 1  # test-split examples of the latest run
        demo.upload("clip", clip)
        answer = demo.submit_and_wait()
        assert '"text"' in answer, answer
        for field_name in ("text", *fields):
            assert demo.text(f"#speechops-{field_name} textarea") == str(expected[field_name]), field_name
        demo.screenshot(tmp_path / f"demo_{pipeline}.png")
        assert not demo.foreign, demo.foreign[:5]
