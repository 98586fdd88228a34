"""Whisper with a loudness regression head on the encoder's mean-pooled last hidden state.

``loss = asr_cross_entropy + lambda_intensity * mse(intensity)``; the regression runs on targets
standardised with the training set's mean and standard deviation (stored in the config), and
predictions are returned in dB. Padded frames are masked out of the pool.

The encoder's states pass through layer norms, which remove most of a clip's absolute level. With
``config.intensity_level_bands`` set (the default for new models), the head also sees the level itself:
each mel band's mean power over the clip, read back from the log-mel input (``band_levels``), through a
linear path that training starts from a ridge fit (``fit_level_path``), so the head begins where a
linear level regressor ends and the encoder path learns what is left.
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


def band_levels(input_features: torch.Tensor, feature_mask: torch.Tensor | None,
                band_weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, mels, frames) Whisper log-mel input -> (B, mels + 1): log10 of each band's mean power over the
    clip's frames, then log10 of the mean total power, the bands summed with ``band_weights`` (the inverse
    of each mel filter's peak, which undoes the filters' area normalisation, so the sum follows the
    clip's energy and its RMS level). Whisper scales log10 power as (x + 4) / 4 and clamps it 8 decades
    below the clip's peak; undoing the scaling gives back powers whose means keep the absolute level."""
    power = torch.pow(10.0, input_features.float() * 4.0 - 4.0)
    weights = torch.ones(power.shape[1], dtype=power.dtype) if band_weights is None else band_weights.to(power.dtype)
    total = (power * weights[None, :, None]).sum(dim=1, keepdim=True)
    power = torch.cat([power, total], dim=1)
    if feature_mask is None:
        mean = power.mean(dim=-1)
    else:
        mask = feature_mask[:, None, : power.shape[-1]].to(power.dtype)
        mean = (power * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
    return torch.log10(mean.clamp(min=1e-10))


def mel_band_weights(feature_extractor) -> torch.Tensor:
    """The inverse of each mel filter's peak (``band_levels``' ``band_weights``)."""
    filters = torch.as_tensor(feature_extractor.mel_filters, dtype=torch.float32)  # (frequencies, mels)
    return 1.0 / filters.max(dim=0).values.clamp(min=1e-12)


class IntensityHead(nn.Module):
    """MLP on the pooled encoder states, plus (``level_bands`` > 0) a linear path on the band levels."""

    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1, level_bands: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.level = nn.Linear(level_bands + 1, 1) if level_bands else None
        if level_bands:
            self.register_buffer("band_weights", torch.ones(level_bands))

    def forward(self, pooled: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(pooled).squeeze(-1)
        if self.level is not None:
            out = out + self.level(levels.to(out.dtype)).squeeze(-1)
        return out


class WhisperForASRAndIntensity(WhisperForConditionalGeneration):
    """``WhisperForConditionalGeneration`` plus ``intensity_head``; config keys ``intensity_mean``,
    ``intensity_std``, ``lambda_intensity`` and ``intensity_unit`` travel with the checkpoint."""

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.intensity_head = IntensityHead(config.d_model, level_bands=int(getattr(config, "intensity_level_bands", 0)))
        self.post_init()

    @property
    def intensity_scale(self) -> tuple[float, float]:
        return float(getattr(self.config, "intensity_mean", -30.0)), float(getattr(self.config, "intensity_std", 10.0))

    @property
    def needs_levels(self) -> bool:
        return self.intensity_head.level is not None

    def predict_intensity(self, encoder_hidden: torch.Tensor, feature_mask: torch.Tensor | None,
                          input_features: torch.Tensor | None = None) -> torch.Tensor:
        """Intensity in standardised units (multiply by std, add mean for dB)."""
        mask = encoder_frame_mask(feature_mask, encoder_hidden.shape[1]) if feature_mask is not None else None
        levels = None
        if self.needs_levels:
            if input_features is None:
                raise ValueError("this intensity head reads the band levels: pass input_features")
            levels = band_levels(input_features, feature_mask, self.intensity_head.band_weights)
        return self.intensity_head(masked_mean(encoder_hidden, mask), levels)

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
        if (intensity_labels is not None or feature_mask is not None) and (input_features is not None
                                                                           or not self.needs_levels):
            standardised = self.predict_intensity(encoder_outputs.last_hidden_state, feature_mask, input_features)
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
        return hidden, self.model.to_db(self.model.predict_intensity(hidden, feature_mask, input_features))



@torch.no_grad()
def fit_level_path(model: WhisperForASRAndIntensity, levels: torch.Tensor, targets_db: torch.Tensor,
                   ridge: float = 1e-4) -> float:
    """Start the head's level path from a ridge fit of the standardised targets on the band levels (closed
    form), and zero the encoder path's last layer, so training begins at a linear level regressor.
    Returns the fit's RMSE on these clips in dB."""
    mean, std = model.intensity_scale
    x = levels.double()
    y = (targets_db.double() - mean) / std
    x_mean, y_mean = x.mean(0), y.mean()
    xc = x - x_mean
    weights = torch.linalg.solve(xc.T @ xc + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - y_mean))
    layer = model.intensity_head.level
    layer.weight.copy_(weights[None, :].to(layer.weight.dtype))
    layer.bias.fill_(float(y_mean - x_mean @ weights))
    last = model.intensity_head.net[-1]
    last.weight.zero_()
    last.bias.zero_()
    fitted = (x @ weights + float(y_mean - x_mean @ weights)) * std + mean
    return float(torch.sqrt(torch.mean((fitted - targets_db.double()) ** 2)))
