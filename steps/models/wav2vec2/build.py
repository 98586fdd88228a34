"""The starting wav2vec2-CTC model: a small one built from config (offline), or a pretrained
checkpoint with a CTC head sized to the tokenizer's vocabulary."""

from __future__ import annotations

from steps.models.resolve import is_scratch, resolve_model_path


def build_ctc_model(model_id: str, tokenizer, *, hidden_size: int = 192, layers: int = 4, heads: int = 4,
                    ffn_dim: int = 512, conv_dim: int = 96, revision: str | None = None):
    """``model_id``: 'scratch' (sizes from the keyword arguments), a hub id or a local folder."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    if is_scratch(model_id):
        config = Wav2Vec2Config(
            vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=ffn_dim,
            conv_dim=(conv_dim,) * 5, conv_stride=(5, 4, 4, 2, 2), conv_kernel=(10, 8, 4, 4, 4),
            feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=32,
            num_conv_pos_embedding_groups=4, mask_time_prob=0.05, layerdrop=0.0, ctc_loss_reduction="mean",
            ctc_zero_infinity=True, pad_token_id=tokenizer.pad_token_id,
        )
        return Wav2Vec2ForCTC(config)
    return Wav2Vec2ForCTC.from_pretrained(resolve_model_path(model_id, revision), ctc_loss_reduction="mean",
                                          ctc_zero_infinity=True, pad_token_id=tokenizer.pad_token_id,
                                          vocab_size=len(tokenizer), ignore_mismatched_sizes=True)


def uses_attention_mask(config) -> bool:
    """wav2vec2 checkpoints with group-norm feature encoders were trained on zero padding, without a mask."""
    return getattr(config, "feat_extract_norm", "layer") == "layer"
