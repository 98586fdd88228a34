"""SpeechT5ForSpeechToSpeech with the training loss the seed's trainer adds, from a checkpoint or a config.

``SpeechT5ForSpeechToSpeech.forward`` returns no loss (transformers computes it only for text-to-speech), so
``SpeechT5ForVoiceConversion`` adds transformers' own ``SpeechT5SpectrogramLoss``: L1 on the mel frames
before and after the post-net, the stop-token BCE and, when the config asks, the guided-attention loss
that pulls the cross-attention towards the diagonal (source and target say the same words in order).
It saves and loads as a plain ``SpeechT5ForSpeechToSpeech`` checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import SpeechT5Config, SpeechT5ForSpeechToSpeech
from transformers.modeling_outputs import Seq2SeqSpectrogramOutput
from transformers.models.speecht5.modeling_speecht5 import SpeechT5SpectrogramLoss, shift_spectrograms_right


class SpeechT5ForVoiceConversion(SpeechT5ForSpeechToSpeech):
    def __init__(self, config: SpeechT5Config):
        super().__init__(config)
        self.loss_fn = SpeechT5SpectrogramLoss(config)

    def forward(self, input_values=None, attention_mask=None, speaker_embeddings=None, labels=None,
                **kwargs: Any) -> Seq2SeqSpectrogramOutput:
        if labels is None:
            return super().forward(input_values=input_values, attention_mask=attention_mask,
                                   speaker_embeddings=speaker_embeddings, **kwargs)
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
