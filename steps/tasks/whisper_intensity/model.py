"""Whisper with a loudness regression head on the encoder's mean-pooled last hidden state.

``loss = asr_cross_entropy + lambda_intensity * mse(intensity)``; the regression runs on targets
standardised with the training set's mean and standard deviation (stored in the config), and
predictions are returned in dB. Padded frames are masked out of the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import WhisperConfig, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput


@dataclass
class ASRIntensityOutput(Seq2SeqLMOutput):
    intensity: torch.Tensor | None = None
    asr_loss: torch.Tensor | None = None
    intensity_loss: torch.Tensor | None = None


def encoder_frame_mask(feature_mask: torch.Tensor, encoder_length: int) -> torch.Tensor:
    """Mel-frame mask (B, 2T) -> encoder-frame mask (B, T): the encoder's convolutions stride by 2."""
    mask = feature_mask[:, ::2][:, :encoder_length].to(torch.float32)
    # a clip shorter than one encoder frame still pools over its first frame
    mask[:, 0] = torch.clamp(mask[:, 0] + (mask.sum(1) == 0).float(), max=1.0)
    return mask


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return hidden.mean(dim=1)
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class IntensityHead(nn.Module):
    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled).squeeze(-1)


class WhisperForASRAndIntensity(WhisperForConditionalGeneration):
    """``WhisperForConditionalGeneration`` plus ``intensity_head``; config keys ``intensity_mean``,
    ``intensity_std``, ``lambda_intensity`` and ``intensity_unit`` travel with the checkpoint."""

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.intensity_head = IntensityHead(config.d_model)
        self.post_init()

    @property
    def intensity_scale(self) -> tuple[float, float]:
        return float(getattr(self.config, "intensity_mean", -30.0)), float(getattr(self.config, "intensity_std", 10.0))

    def predict_intensity(self, encoder_hidden: torch.Tensor, feature_mask: torch.Tensor | None) -> torch.Tensor:
        """Intensity in standardised units (multiply by std, add mean for dB)."""
        mask = encoder_frame_mask(feature_mask, encoder_hidden.shape[1]) if feature_mask is not None else None
        return self.intensity_head(masked_mean(encoder_hidden, mask))

    def to_db(self, standardised: torch.Tensor) -> torch.Tensor:
        mean, std = self.intensity_scale
        return standardised * std + mean

    def forward(self, input_features=None, labels=None, intensity_labels=None, feature_mask=None,
                encoder_outputs=None, **kwargs) -> ASRIntensityOutput:
        if encoder_outputs is None:
            encoder_outputs = self.model.encoder(input_features, return_dict=True)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        out = super().forward(encoder_outputs=encoder_outputs, labels=labels, **kwargs)
        intensity = intensity_loss = None
        if intensity_labels is not None or feature_mask is not None:
            standardised = self.predict_intensity(encoder_outputs.last_hidden_state, feature_mask)
            intensity = self.to_db(standardised)
            if intensity_labels is not None:
                mean, std = self.intensity_scale
                target = (intensity_labels.to(standardised.dtype) - mean) / std
                intensity_loss = nn.functional.mse_loss(standardised, target)
        lam = float(getattr(self.config, "lambda_intensity", 1.0))
        loss = out.loss
        if intensity_loss is not None:
            loss = intensity_loss * lam if loss is None else loss + lam * intensity_loss
        return ASRIntensityOutput(loss=loss, logits=out.logits, past_key_values=out.past_key_values,
                                  encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                                  intensity=intensity, asr_loss=out.loss, intensity_loss=intensity_loss)


class EncoderWithHead(nn.Module):
    """Export wrapper: features + mask -> (encoder hidden states, intensity in dB)."""

    def __init__(self, model: WhisperForASRAndIntensity):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, feature_mask: torch.Tensor):
        hidden = self.model.model.encoder(input_features, return_dict=True).last_hidden_state
        return hidden, self.model.to_db(self.model.predict_intensity(hidden, feature_mask))

