"""SpeechT5ForSpeechToSpeech with the training loss the seed's trainer adds, from a checkpoint or a config.

``SpeechT5ForSpeechToSpeech.forward`` returns no loss (transformers computes it only for text-to-speech), so
``SpeechT5ForVoiceConversion`` adds transformers' own ``SpeechT5SpectrogramLoss``: L1 on the mel frames
before and after the post-net, the stop-token BCE and, when the config asks, the guided-attention loss
that pulls the cross-attention towards the diagonal (source and target say the same words in order).
It saves and loads as a plain ``SpeechT5ForSpeechToSpeech`` checkpoint.

Two ways to decode, kept in the checkpoint's config (``decoding``):

* ``autoregressive`` (the seed's): the decoder reads its own previous mel frames and ``generate_speech`` runs
  until the stop token fires; the model must learn where to look in the source (cross-attention) and when
  to stop. A pretrained SpeechT5 knows; one trained from nothing needs far more steps than two CPU cores give.
* ``aligned``: the decoder reads the *source's* own mel frames (``reduction_factor`` frames averaged per
  step) and predicts, for each, the target speaker's frame, trained on targets put on the source's timeline
  by DTW (``steps.models.speecht5.align``). One forward pass converts; the output keeps the source's timing
  (as frame-wise parallel voice conversion does). Same architecture, encoder and cross-attention included;
  the decoder pre-net's dropout applies in training only, since its input is the source and not the
  model's own guesses.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech
from transformers.modeling_outputs import Seq2SeqSpectrogramOutput
from transformers.models.speecht5.modeling_speecht5 import SpeechT5SpectrogramLoss, shift_spectrograms_right


DECODING = ("autoregressive", "aligned")


def decoding(config: SpeechT5Config) -> str:
    return getattr(config, "decoding", "autoregressive")


def pool_frames(frames: torch.Tensor, reduction_factor: int) -> torch.Tensor:
    """(batch, frames, bins) -> (batch, ceil(frames / r), bins): the mean of each group of ``r`` frames, the
    last group padded with its final frame. The decoder's input in ``aligned`` decoding."""
    missing = (-frames.shape[1]) % reduction_factor
    if missing:
        frames = torch.cat([frames, frames[:, -1:].expand(-1, missing, -1)], dim=1)
    return frames.reshape(frames.shape[0], -1, reduction_factor, frames.shape[2]).mean(dim=2)


def _training_dropout(prenet, inputs: torch.Tensor, p: float) -> torch.Tensor:
    return torch.nn.functional.dropout(inputs, p, training=prenet.training)


class SpeechT5ForVoiceConversion(SpeechT5ForSpeechToSpeech):
    def __init__(self, config: SpeechT5Config):
        super().__init__(config)
        self.loss_fn = SpeechT5SpectrogramLoss(config)
        self.set_decoding(decoding(config))

    def set_decoding(self, mode: str) -> None:
        if mode not in DECODING:
            raise ValueError(f"decoding {mode!r}: choose one of {', '.join(DECODING)}")
        self.config.decoding = mode
        prenet = self.speecht5.decoder.prenet
        if mode == "aligned":  # the pre-net reads the source, not the model's own output: ordinary dropout
            prenet._consistent_dropout = types.MethodType(_training_dropout, prenet)
        else:
            prenet.__dict__.pop("_consistent_dropout", None)

    @torch.no_grad()
    def convert_aligned(self, input_values: torch.Tensor, speaker_embeddings: torch.Tensor,
                        source_frames: torch.Tensor) -> torch.Tensor:
        """``aligned`` decoding in one pass: (1, samples) normalised source waveform, (1, dim) speaker embedding,
        (1, frames, bins) the source's normalised mel frames -> (frames, bins) the target voice's frames."""
        outputs = super().forward(input_values=input_values, speaker_embeddings=speaker_embeddings,
                                  decoder_input_values=pool_frames(source_frames, self.config.reduction_factor),
                                  return_dict=True)
        return outputs.spectrogram[0, : source_frames.shape[1]]

    def forward(self, input_values=None, attention_mask=None, speaker_embeddings=None, labels=None,
                decoder_input_values=None, source_frames=None, **kwargs: Any) -> Seq2SeqSpectrogramOutput:
        if source_frames is not None:  # aligned decoding: the decoder reads the source's frames
            decoder_input_values = pool_frames(source_frames, self.config.reduction_factor)
        if labels is None:
            return super().forward(input_values=input_values, attention_mask=attention_mask,
                                   speaker_embeddings=speaker_embeddings, decoder_input_values=decoder_input_values,
                                   **kwargs)
        if decoder_input_values is None:  # autoregressive: the previous frames (teacher forcing)
            decoder_input_values, _ = shift_spectrograms_right(labels, self.config.reduction_factor)
        guided = self.config.use_guided_attention_loss
        outputs = self.speecht5(input_values=input_values, attention_mask=attention_mask,
                                decoder_input_values=decoder_input_values, speaker_embeddings=speaker_embeddings,
                                output_attentions=guided, use_cache=False, return_dict=True)
        before, after, logits = self.speech_decoder_postnet(outputs.last_hidden_state)
        encoder_mask = None
        if attention_mask is not None:
            encoder_mask = self.speecht5.encoder.prenet._get_feature_vector_attention_mask(
                outputs.encoder_last_hidden_state.shape[1], attention_mask)
        else:
            encoder_mask = torch.ones(outputs.encoder_last_hidden_state.shape[:2], dtype=torch.long,
                                      device=labels.device)
        loss = self.loss_fn(encoder_mask, before, after, logits, labels,
                            outputs.cross_attentions if guided else None)
        return Seq2SeqSpectrogramOutput(loss=loss, spectrogram=after)


def small_config(hidden_size: int, layers: int, heads: int, conv_channels: int, speaker_dim: int,
                 num_mel_bins: int = 80) -> SpeechT5Config:
    """A SpeechT5 small enough to train on two CPU cores in minutes, built from config (no weights exist
    offline). The convolutional front end on raw audio dominates the cost, hence narrow convolutions."""
    narrow = max(16, conv_channels // 2)
    return SpeechT5Config(
        hidden_size=hidden_size, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=4 * hidden_size, decoder_ffn_dim=4 * hidden_size,
        conv_dim=(narrow, narrow, *(conv_channels,) * 5), num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=8, speaker_embedding_dim=speaker_dim, num_mel_bins=num_mel_bins,
        speech_decoder_prenet_units=128, speech_decoder_postnet_units=128, apply_spec_augment=False,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, use_guided_attention_loss=True,
        guided_attention_loss_num_heads=min(2, heads), use_cache=False)


def build_model(model_id: str | None, config: SpeechT5Config | None = None) -> SpeechT5ForVoiceConversion:
    """From a checkpoint (hub id or folder: the seed's ``microsoft/speecht5_vc``) or from ``config``."""
    if model_id:
        try:
            model = SpeechT5ForVoiceConversion.from_pretrained(model_id, attn_implementation="eager")
        except OSError as exc:
            raise RuntimeError(f"cannot load {model_id!r} ({str(exc).splitlines()[0]}); offline, leave model_id "
                               "empty to build a small SpeechT5 from config") from None
        model.config.use_cache = False
        return model
    if config is None:
        raise ValueError("build_model needs a model_id or a config")
    config._attn_implementation = "eager"  # the guided-attention loss reads the attention weights
    return SpeechT5ForVoiceConversion(config)
