"""Batch transcription with PyTorch: one encoder pass, then greedy decoding with a key/value cache.

Works for any ``WhisperForConditionalGeneration`` (or subclass, such as a model with extra heads on
the encoder: ``encode`` hands back the encoder states and the frame mask for them). The uncached
step (``DecoderStep``) is the module exported to ONNX, and the PyTorch reference of the parity check.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steps.models.whisper.ctranslate import CT2Whisper, Runtime, check_token_layout
from steps.models.whisper.decoding import DecodingSpec, greedy_decode
from steps.models.whisper.features import WhisperFeatures
from steps.models.whisper.prompt import ENGLISH_ONLY, DecoderPrompt, decoding_spec
from steps.models.whisper.tokenizer import load_processors


class DecoderStep(nn.Module):
    """(token prefix, encoder states) -> logits of the last position, without a cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor):
        # an explicit all-ones mask keeps transformers' packed-sequence detection (torch.diff) out of the graph
        out = self.model.model.decoder(input_ids=decoder_input_ids, attention_mask=torch.ones_like(decoder_input_ids),
                                       encoder_hidden_states=encoder_hidden_states, use_cache=False, return_dict=True)
        return self.model.proj_out(out.last_hidden_state[:, -1, :])


class WhisperTranscriber:
    def __init__(self, model, tokenizer, extractor, spec: DecodingSpec | None = None, engine: CT2Whisper | None = None):
        self.model = model.eval()
        self.engine = engine  # CTranslate2 runs the encoder and the decoder when set; heads stay in PyTorch
        self.tokenizer = tokenizer
        self.features = WhisperFeatures(extractor)
        spec = spec or decoding_spec(tokenizer)
        # the decoder has max_target_positions positions: prompt and new tokens must fit (a small scratch model)
        room = model.config.max_target_positions - len(spec.prefix)
        self.spec = replace(spec, max_new_tokens=min(spec.max_new_tokens, room))

    @classmethod
    def from_dir(cls, model_dir: Path, max_new_tokens: int = 64, prompt: DecoderPrompt = ENGLISH_ONLY,
                 model_class=None, runtime: Runtime | None = None) -> "WhisperTranscriber":
        """Model, tokenizer and feature extractor saved together in ``model_dir``; ``runtime`` picks the
        engine for the encoder and the decoder (PyTorch by default, or CTranslate2)."""
        from transformers import WhisperForConditionalGeneration

        tokenizer, extractor = load_processors(model_dir)
        model = (model_class or WhisperForConditionalGeneration).from_pretrained(model_dir)
        engine = None
        if runtime is not None and runtime.name == "ctranslate2":
            check_token_layout(tokenizer)
            engine = CT2Whisper(model_dir, runtime.compute_type)
        return cls(model, tokenizer, extractor, decoding_spec(tokenizer, prompt, max_new_tokens), engine)

    @torch.inference_mode()
    def encode(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [B, T, D] and the mel-frame mask [B, 2T] of the clips (1 where there is audio)."""
        hidden, batch = self.encode_batch(audios)
        return hidden, batch["feature_mask"]

    @torch.inference_mode()
    def encode_batch(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Encoder states and the whole feature batch (``input_features``, ``feature_mask``)."""
        batch = self.features(audios)
        if self.engine is not None:
            return self.engine.encode(batch["input_features"]), batch
        return self.model.model.encoder(batch["input_features"], return_dict=True).last_hidden_state, batch

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

    def texts(self, tokens: list[list[int]]) -> list[str]:
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def decode(self, hidden: torch.Tensor, cached: bool = True) -> list[str]:
        """Greedy transcripts of encoder states (the prompt forced, special tokens suppressed)."""
        if self.engine is not None:
            return self.texts(self.engine.generate(hidden, self.spec))
        return self.texts(greedy_decode(self.cached_step() if cached else self.step, hidden, self.spec))

    def __call__(self, audios: list[np.ndarray], cached: bool = True) -> list[str]:
        hidden, _ = self.encode(audios)
        return self.decode(hidden, cached)
