"""The demo app: a Gradio page for a model (``python pipelines/run.py demo --pipeline NAME``).

Generic over tasks: the task's handler (``steps/tasks/<task>/handler.py``) says which clips a user gives
(``demo_inputs``), what request they make (``demo_request``) and how the answer is shown (``demo_panels``,
``demo_view``). Every click goes through the handler as a request to the endpoint does (the same limits,
decoding, prediction and encoding), so the page shows what the endpoint would answer, and a refused clip
shows the endpoint's 4xx message.

Offline and private by default: bound to loopback, no share link unless asked, analytics off, the theme's
fonts bundled with Gradio.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.payload import Limits, RequestError
from steps.tasks.io import Answer, Handler, Panel

METER_FLOOR_DB = -70.0  # the meter's empty end; 0 dB is full scale
EXAMPLES = 4


@dataclass(frozen=True)
class DemoModel:
    """What the page shows: the handler and where its model came from."""

    handler: Handler
    pipeline: str
    label: str  # e.g. "models:/whisper_intensity@champion = models:/whisper_intensity/3", or a folder
    examples: list[list[Path]]  # test-split clips to click, one list per example (one path per input)


def as_wav(examples: list[list[Path]], folder: Path) -> list[list[Path]]:
    """The example clips as 16 kHz WAV files in ``folder``: the page plays them without ffmpeg, whatever their
    format in the data set (the project's audio loader reads them)."""
    from steps.common.audio import load_audio, to_wav_bytes

    folder.mkdir(parents=True, exist_ok=True)
    converted = []
    for i, example in enumerate(examples):
        row = []
        for j, path in enumerate(example):
            wav = folder / f"example{i}-{j}-{Path(path).stem}.wav"
            wav.write_bytes(to_wav_bytes(load_audio(path)))
            row.append(wav)
        converted.append(row)
    return converted


def meter_html(level: dict[str, Any] | None) -> str:
    """A level in dB as a bar from METER_FLOOR_DB to 0, with its value."""
    if not level or level.get("value") is None:
        return "<div class='speechops-meter-empty'>no level</div>"
    value, unit = float(level["value"]), html.escape(str(level.get("unit", "dB")))
    share = min(max((value - METER_FLOOR_DB) / -METER_FLOOR_DB, 0.0), 1.0)
    return (f"<div class='speechops-meter' title='{value:.1f} {unit}'>"
            f"<div style='background:#e5e7eb;border-radius:4px;height:14px;width:100%'>"
            f"<div style='background:#f97316;border-radius:4px;height:14px;width:{share:.0%}'></div></div>"
            f"<div class='speechops-level' style='font-size:1.6em;font-weight:600'>{value:.1f} {unit}</div>"
            f"<div style='color:#6b7280;font-size:0.85em'>{METER_FLOOR_DB:.0f} … 0 {unit}</div></div>")


def panel_value(panel: Panel, value: Any) -> Any:
    """A panel's value as its Gradio component takes it."""
    if panel.kind == "meter":
        return meter_html(value)
    if panel.kind == "audio":
        if not value:
            return None
        import soundfile as sf

        audio, rate = sf.read(io.BytesIO(value), dtype="int16")
        return rate, audio
    if panel.kind == "label":
        return {str(k): float(v) for k, v in (value or {}).items()}
    if panel.kind == "highlight":  # words with their tags, a space between them
        spans: list[tuple[str, str | None]] = []
        for word, tag in value or []:
            spans += [(" ", None)] if spans else []
            spans.append((str(word), tag))
        return spans
    return "" if value is None else str(value)


def shown_answer(answer: Answer) -> Any:
    """The answer as JSON for the page, with long base64 fields and audio bodies summarised."""
    body = answer.shown()
    if isinstance(body, dict):
        return {k: (f"{len(v)} base64 characters" if isinstance(v, str) and len(v) > 200 else v) for k, v in body.items()}
    return {"body": body}  # not JSON (audio): what it is


def respond(model: DemoModel, files: list[str | None], limits: Limits | None = None) -> tuple[dict[str, Any], Any]:
    """The panels' values (by key) and the shown answer for the user's files; ``RequestError`` for a missing or
    refused clip (its message is the endpoint's)."""
    handler = model.handler
    clips: dict[str, bytes] = {}
    for name, path in zip(handler.demo_inputs, files):
        if not path:
            raise RequestError(f"no {name} clip: upload a file or record one")
        clips[name] = Path(path).read_bytes()
    answer = handler(handler.demo_request(clips), limits or Limits())
    return handler.demo_view(answer), shown_answer(answer)


def build_demo(model: DemoModel):
    """The Gradio Blocks page for ``model``."""
    import gradio as gr

    handler = model.handler
    title = f"speechops · {model.pipeline}"
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {html.escape(title)}\n**Model:** `{model.label}`", elem_id="speechops-model")
        with gr.Row():
            with gr.Column():
                inputs = [gr.Audio(sources=["upload", "microphone"], type="filepath",
                                   label=name.capitalize(), elem_id=f"speechops-input-{name}")
                          for name in handler.demo_inputs]
                submit = gr.Button("Submit", variant="primary", elem_id="speechops-submit")
            with gr.Column():
                outputs = [_component(gr, panel) for panel in handler.demo_panels]
                answer = gr.JSON(label="Answer (as the endpoint sends it)", elem_id="speechops-answer")
        if model.examples:
            gr.Examples(examples=[[str(p) for p in example] for example in model.examples], inputs=inputs,
                        label="Test-split examples (not seen in training)")

        def run(*files):
            try:
                view, shown = respond(model, list(files))
            except RequestError as exc:
                raise gr.Error(str(exc)) from None
            return [panel_value(panel, view.get(panel.key)) for panel in handler.demo_panels] + [shown]

        submit.click(run, inputs=inputs, outputs=[*outputs, answer], concurrency_limit=1)
    return demo


def _component(gr, panel: Panel):
    elem_id = f"speechops-{panel.key}"
    if panel.kind == "meter":
        return gr.HTML(meter_html(None), label=panel.label, elem_id=elem_id)
    if panel.kind == "label":
        return gr.Label(label=panel.label, elem_id=elem_id)
    if panel.kind == "highlight":
        return gr.HighlightedText(label=panel.label, color_map={"emphasised": "orange"}, elem_id=elem_id)
    if panel.kind == "audio":
        return gr.Audio(label=panel.label, type="numpy", interactive=False, elem_id=elem_id)
    return gr.Textbox(label=panel.label, interactive=False, elem_id=elem_id)


def launch(model: DemoModel, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Serve the page until stopped. Files the page may read: the examples' folders only."""
    demo = build_demo(model)
    allowed = sorted({str(p.parent) for example in model.examples for p in example})
    demo.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=share,
                                                   allowed_paths=allowed, show_error=True, quiet=False)


def offline_environment() -> None:
    """Before gradio is imported: no analytics, no update checks."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_TELEMETRY_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
