"""The starting Whisper: pretrained weights (encoder window shrunk to the feature extractor's) or a
small model built from config (offline), of any ``WhisperForConditionalGeneration`` subclass."""

from __future__ import annotations

from steps.models.resolve import is_scratch, resolve_model_path
from steps.models.whisper.prompt import EOT, SOT, token_ids


def build_whisper(model_id: str, tokenizer, feature_extractor, *, model_class=None, d_model: int = 192,
                  layers: int = 2, heads: int = 4, ffn_dim: int = 768, max_target_positions: int = 128,
                  revision: str | None = None):
    """``model_id``: 'scratch' (sizes from the keyword arguments), 'bundled:NAME', a hub id or a folder."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    model_class = model_class or WhisperForConditionalGeneration
    window_positions = int(feature_extractor.chunk_length * 50)
    if is_scratch(model_id):
        sot, eos = token_ids(tokenizer, (SOT, EOT))
        config = WhisperConfig(
            vocab_size=len(tokenizer), num_mel_bins=80, d_model=d_model, encoder_layers=layers,
            decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
            encoder_ffn_dim=ffn_dim, decoder_ffn_dim=ffn_dim, max_source_positions=window_positions,
            max_target_positions=max_target_positions, decoder_start_token_id=sot, bos_token_id=eos,
            eos_token_id=eos, pad_token_id=eos, begin_suppress_tokens=None, suppress_tokens=None,
        )
        return model_class(config)
    model = model_class.from_pretrained(resolve_model_path(model_id, revision))
    if model.config.max_source_positions != window_positions:
        from steps.models.whisper.window import shrink_encoder_window

        model, _ = shrink_encoder_window(model, feature_extractor, feature_extractor.chunk_length)
    return model


def freeze_encoder(model, layers: int) -> None:
    """Freeze the encoder's convolutions and its first ``layers`` layers (none when ``layers`` is 0; all of
    them freezes the whole encoder, its final layer norm included, so no gradient enters it)."""
    if layers <= 0:
        return
    encoder = model.model.encoder
    frozen = [encoder.conv1, encoder.conv2, *encoder.layers[:layers]]
    if layers >= len(encoder.layers):
        frozen.append(encoder.layer_norm)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad = False
