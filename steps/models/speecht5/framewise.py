"""A frame-wise voice converter: the source's mel frames in, the target voice's mel frames out, one per frame.

The classic recipe of parallel voice conversion (a network maps each source frame, with a little context,
to the frame the target speaker would say there; trained on pairs put on one timeline by DTW, see
``steps.models.speecht5.align``), here any-to-any: the target speaker's embedding is added to every
block, so one model converts into any voice it is given a reference clip of.

Residual 1-D convolutions over time (``kernel_size`` frames of context per layer), no recurrence and no
attention: it trains in minutes on two CPU cores where a SpeechT5 built from nothing does not learn to
align in that time, exports to ONNX as one graph, and keeps the source's timing (the output has exactly
as many frames as the source). A ``PreTrainedModel``, so it trains through the project's one ``fit`` and
saves and loads like the other checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput


class FramewiseConfig(PretrainedConfig):
    model_type = "framewise_voice_converter"

    def __init__(self, num_mel_bins: int = 80, speaker_embedding_dim: int = 256, channels: int = 256,
                 layers: int = 4, kernel_size: int = 5, dropout: float = 0.1, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_mel_bins = num_mel_bins
        self.speaker_embedding_dim = speaker_embedding_dim
        self.channels = channels
        self.layers = layers
        self.kernel_size = kernel_size
        self.dropout = dropout
        self.reduction_factor = 1  # one output frame per source frame (read by the collator)
        self.decoding = "aligned"


class _Block(nn.Module):
    def __init__(self, config: FramewiseConfig):
        super().__init__()
        self.conv = nn.Conv1d(config.channels, config.channels, config.kernel_size, padding=config.kernel_size // 2)
        self.speaker = nn.Linear(config.speaker_embedding_dim, config.channels)
        self.norm = nn.LayerNorm(config.channels)  # per frame: padding never reaches another frame's statistics
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        update = self.conv(self.norm(hidden.transpose(1, 2)).transpose(1, 2)) + self.speaker(speaker)[:, :, None]
        return hidden + self.dropout(nn.functional.gelu(update))


class FramewiseConverter(PreTrainedModel):
    config_class = FramewiseConfig
    main_input_name = "source_frames"

    def __init__(self, config: FramewiseConfig):
        super().__init__(config)
        self.inputs = nn.Conv1d(config.num_mel_bins, config.channels, config.kernel_size,
                                padding=config.kernel_size // 2)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.outputs = nn.Conv1d(config.channels, config.num_mel_bins, 1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, source_frames: torch.Tensor, speaker_embeddings: torch.Tensor,
                labels: torch.Tensor | None = None, **_ignored: Any) -> ModelOutput:
        """(batch, frames, bins) normalised source frames, (batch, dim) speaker embeddings -> ``spectrogram``
        (batch, frames, bins); with ``labels`` (padding -100), ``loss``: the mean absolute error."""
        speaker = nn.functional.normalize(speaker_embeddings, dim=-1)
        hidden = self.inputs(source_frames.transpose(1, 2))
        for block in self.blocks:
            hidden = block(hidden, speaker)
        frames = self.outputs(hidden).transpose(1, 2) + source_frames
        loss = None
        if labels is not None:  # (batch, frames, bins) like the output: the collator pads both alike
            loss = (frames - labels).abs()[labels != -100.0].mean()
        return ModelOutput(loss=loss, spectrogram=frames)

    @torch.no_grad()
    def convert_aligned(self, input_values: torch.Tensor | None, speaker_embeddings: torch.Tensor,
                        source_frames: torch.Tensor) -> torch.Tensor:
        """The same call as ``SpeechT5ForVoiceConversion.convert_aligned`` (the waveform is not needed)."""
        return self.forward(source_frames=source_frames, speaker_embeddings=speaker_embeddings).spectrogram[0]
