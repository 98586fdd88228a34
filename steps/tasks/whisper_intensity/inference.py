"""Batch inference with PyTorch: transcripts (greedy) and intensity from one encoder pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from steps.tasks.base import Predictor, read_model_card
from steps.tasks.whisper_intensity.data import Collator, decoding_spec
from steps.tasks.whisper_intensity.decoding import DecodingSpec, greedy_decode
from steps.tasks.whisper_intensity.model import DecoderStep, WhisperForASRAndIntensity


class Transcriber:
    def __init__(self, model: WhisperForASRAndIntensity, tokenizer, extractor, spec: DecodingSpec | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.collator = Collator(extractor)
        self.spec = spec or decoding_spec(tokenizer)

    @classmethod
    def from_dir(cls, model_dir: Path, max_new_tokens: int = 64) -> "Transcriber":
        from transformers import AutoTokenizer, WhisperFeatureExtractor

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = WhisperForASRAndIntensity.from_pretrained(model_dir)
        return cls(model, tokenizer, WhisperFeatureExtractor.from_pretrained(model_dir),
                   decoding_spec(tokenizer, max_new_tokens))

    @torch.inference_mode()
    def encode(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        batch = self.collator.features(audios)
        hidden = self.model.model.encoder(batch["input_features"], return_dict=True).last_hidden_state
        intensity = self.model.to_db(self.model.predict_intensity(hidden, batch["feature_mask"]))
        return hidden, intensity.numpy()

    @torch.inference_mode()
    def step(self, ids: np.ndarray, hidden: torch.Tensor) -> np.ndarray:
        return DecoderStep(self.model)(torch.from_numpy(ids), hidden).numpy()

    def cached_step(self):
        """A step function that keeps the decoder's key/value cache between calls (one batch)."""
        state: dict = {"past": None, "seen": 0}

        @torch.inference_mode()
        def step(ids: np.ndarray, hidden: torch.Tensor) -> np.ndarray:
            new = torch.from_numpy(ids[:, state["seen"]:])
            out = self.model.model.decoder(input_ids=new, attention_mask=torch.ones(ids.shape, dtype=torch.long),
                                           encoder_hidden_states=hidden, past_key_values=state["past"],
                                           use_cache=True, return_dict=True)
            state["past"], state["seen"] = out.past_key_values, ids.shape[1]
            return self.model.proj_out(out.last_hidden_state[:, -1, :]).numpy()

        return step

    def __call__(self, audios: list[np.ndarray], cached: bool = True) -> tuple[list[str], np.ndarray]:
        hidden, intensity = self.encode(audios)
        tokens = greedy_decode(self.cached_step() if cached else self.step, hidden, self.spec)
        texts = [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
        return texts, intensity


class WhisperIntensityPredictor(Predictor):
    def __init__(self, model_dir: Path):
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.transcriber = Transcriber.from_dir(Path(model_dir))
        unit = read_model_card(model_dir).get("intensity_unit", "dBFS")
        self.key = "intensity_lufs" if unit == "LUFS" else "intensity_dbfs"

    def predict(self, audio: np.ndarray) -> dict:
        texts, intensity = self.transcriber([audio])
        return {"transcript": texts[0], self.key: round(float(intensity[0]), 2),
                "duration_s": round(audio.shape[0] / 16000, 3)}


PREDICTOR = WhisperIntensityPredictor
