"""The demo app's pieces that need no browser: how each panel kind shows a value, the answer summary, and a
missing clip refused with a sentence (the browser tier drives the whole page: tests/integration/test_demo.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from serving.demo import METER_FLOOR_DB, DemoModel, meter_html, panel_value, respond, shown_answer
from steps.common.audio import to_wav_bytes
from steps.common.payload import RequestError
from steps.tasks.io import Answer, Panel


def test_meter_shows_the_level_and_fills_in_proportion():
    half = meter_html({"value": METER_FLOOR_DB / 2, "unit": "dBFS"})
    assert "width:50%" in half and f"{METER_FLOOR_DB / 2:.1f} dBFS" in half
    assert "width:0%" in meter_html({"value": -200.0, "unit": "dBFS"})  # below the floor: empty, not negative
    assert "width:100%" in meter_html({"value": 3.0, "unit": "LUFS"}) and "LUFS" in meter_html({"value": 3.0, "unit": "LUFS"})
    assert "no level" in meter_html(None)
    assert "&lt;b&gt;" in meter_html({"value": -20.0, "unit": "<b>"})  # escaped


def test_panel_values_take_the_shape_of_their_component():
    assert panel_value(Panel("highlight", "emphasis", ""), [("very", "emphasised"), ("good", None)]) == \
        [("very", "emphasised"), (" ", None), ("good", None)]
    assert panel_value(Panel("label", "p", ""), {"sad": 0.25, "happy": 0.75}) == {"sad": 0.25, "happy": 0.75}
    assert panel_value(Panel("text", "text", ""), None) == ""
    tone = (0.1 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    rate, audio = panel_value(Panel("audio", "converted", ""), to_wav_bytes(tone))
    assert rate == 16000 and audio.dtype == np.int16 and audio.shape == (8000,)


def test_the_shown_answer_summarises_audio_and_long_base64():
    wav = to_wav_bytes(np.zeros(1600, dtype=np.float32))
    assert shown_answer(Answer(wav, "audio/wav")) == {"body": f"{len(wav)} bytes of audio/wav"}
    shown = shown_answer(Answer(b'{"wav_b64": "' + b"A" * 500 + b'", "n": 1}', "application/json"))
    assert shown == {"wav_b64": "500 base64 characters", "n": 1}
    assert sf.info(io.BytesIO(wav)).frames == 1600


def test_a_missing_clip_is_refused_before_the_model_is_asked():
    from steps.tasks.voice_conversion.handler import VoiceConversionHandler

    handler = object.__new__(VoiceConversionHandler)  # its model is never reached: the clip check comes first
    model = DemoModel(handler, "voice_conversion", "folder", [])
    with pytest.raises(RequestError, match="no reference clip: upload a file or record one"):
        respond(model, ["/dev/null", None])
