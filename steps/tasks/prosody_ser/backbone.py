"""The shared speech encoder: Whisper's (the seed's default; offline as bundled tiny.en or base) or any
Hugging Face speech encoder by id (the seed's XLS-R, MMS, Wav2Vec2-BERT: ``facebook/wav2vec2-xls-r-300m``,
``facebook/mms-300m``, ``facebook/w2v-bert-2.0``; they need the hub). ``scratch`` builds a small Whisper
encoder from config and ``scratch:wav2vec2`` a small wav2vec2 one (tests, offline).

Both kinds give the heads (B, T, D) states and a frame mask. Whisper pads every clip to its (shortened)
window and reads log-mel features; the others read the waveform, padded to the batch's longest clip, and
their frame count follows from the clip's length (``_get_feat_extract_output_lengths``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from steps.models.resolve import is_scratch, resolve_model_path

SCRATCH_WAV2VEC2 = "scratch:wav2vec2"


def is_whisper(model_id: str, revision: str | None = None) -> bool:
    if model_id == SCRATCH_WAV2VEC2:
        return False
    if is_scratch(model_id) or model_id.startswith("bundled:whisper"):
        return True
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model_path(model_id, revision)).model_type == "whisper"


def feature_extractor(model_id: str, revision: str | None, window_seconds: float):
    """What turns audio into the encoder's input: Whisper's log-mel for the window, or the checkpoint's own."""
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if is_whisper(model_id, revision):
        return WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=int(round(window_seconds)),
                                       return_attention_mask=True)
    if model_id == SCRATCH_WAV2VEC2:
        return Wav2Vec2FeatureExtractor(return_attention_mask=True)
    return AutoFeatureExtractor.from_pretrained(resolve_model_path(model_id, revision))


class Features:
    """Audio -> ``{"input_features", "feature_mask"}``: the encoder's input (log-mel or waveform values) and its
    mask at the input's own rate."""

    def __init__(self, extractor):
        from transformers import WhisperFeatureExtractor

        self.extractor = extractor
        self.whisper = isinstance(extractor, WhisperFeatureExtractor)

    def __call__(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        if self.whisper:
            from steps.models.whisper.features import WhisperFeatures

            return WhisperFeatures(self.extractor)(audios)
        out = self.extractor(list(audios), sampling_rate=16000, padding="longest", return_attention_mask=True,
                             return_tensors="pt")
        values = out.get("input_values", out.get("input_features"))
        return {"input_features": values, "feature_mask": out["attention_mask"]}


def scratch_config(model_id: str, d_model: int, layers: int, heads: int, ffn_dim: int, positions: int) -> dict:
    from transformers import Wav2Vec2Config, WhisperConfig

    if model_id == SCRATCH_WAV2VEC2:
        return Wav2Vec2Config(hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=heads,
                              intermediate_size=ffn_dim, conv_dim=(d_model, d_model), conv_stride=(5, 4),
                              conv_kernel=(10, 8), num_feat_extract_layers=2, num_conv_pos_embeddings=16,
                              vocab_size=8).to_dict()
    return WhisperConfig(num_mel_bins=80, d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads,
                         encoder_ffn_dim=ffn_dim, decoder_layers=1, decoder_attention_heads=heads,
                         decoder_ffn_dim=ffn_dim, max_source_positions=positions).to_dict()


def pretrained(model_id: str, revision: str | None, extractor) -> tuple[dict, dict[str, Any]]:
    """(encoder config as a dict, its pretrained weights); Whisper's window is cut to the extractor's."""
    path = resolve_model_path(model_id, revision)
    if is_whisper(model_id, revision):
        from transformers import WhisperForConditionalGeneration

        whisper = WhisperForConditionalGeneration.from_pretrained(path)
        if whisper.config.max_source_positions != int(extractor.chunk_length * 50):
            from steps.models.whisper.window import shrink_encoder_window

            whisper, _ = shrink_encoder_window(whisper, extractor, extractor.chunk_length)
        return whisper.config.to_dict(), whisper.model.encoder.state_dict()
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(path)
    return encoder.config.to_dict(), encoder.state_dict()


def build_encoder(backbone: dict) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModel, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if backbone.get("model_type", "whisper") == "whisper":
        return WhisperEncoder(WhisperConfig(**backbone))
    config = dict(backbone)
    return AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))


def encode(encoder: torch.nn.Module, inputs: torch.Tensor, input_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states (B, T, D), frame mask (B, T) of booleans)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if isinstance(encoder, WhisperEncoder):
        hidden = encoder(inputs).last_hidden_state
        mask = input_mask[:, ::2][:, : hidden.shape[1]].bool()  # mel frames (100/s) -> encoder frames (50/s)
    else:
        name = "input_values" if inputs.dim() == 2 else "input_features"
        hidden = encoder(**{name: inputs, "attention_mask": input_mask}).last_hidden_state
        lengths = encoder._get_feat_extract_output_lengths(input_mask.sum(-1))
        mask = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) < lengths.unsqueeze(1)
    mask = mask.clone()
    mask[:, 0] = True  # an empty clip still has one frame to pool
    return hidden, mask
