"""Whisper's encoder window: cut the 30 s context of a pretrained checkpoint to the clips' length.

Short clips padded to 30 s waste most of the encoder's compute; a 6 s window makes fine-tuning on
short utterances about five times cheaper on CPU. The cut keeps the first positional embeddings,
so the pretrained weights still apply.
"""

from __future__ import annotations

from typing import Any


def shrink_encoder_window(model: Any, feature_extractor: Any, seconds: float) -> tuple[Any, Any]:
    """Cut Whisper's encoder context from 30 s to ``seconds`` (in place on ``model``).

    * ``config.max_source_positions`` -> ``seconds * 50`` (encoder frames after the stride-2 conv),
    * ``model.model.encoder.embed_positions`` -> a new ``nn.Embedding`` holding the first rows
      (the encoder builds positions from ``embed_positions.num_embeddings`` and checks
      ``input_features.shape[-1] == 2 * config.max_source_positions``),
    * returns a ``WhisperFeatureExtractor`` that pads/truncates to ``seconds``
      (``chunk_length=seconds``, i.e. ``100 * seconds`` mel frames).

    ``generate()`` takes its segment length from ``config.max_source_positions`` so
    short-form decoding works unchanged; ``save_pretrained`` / ``from_pretrained``
    round-trip because the saved config and weight agree.
    """
    import torch

    if float(seconds) != int(seconds) or int(seconds) <= 0:
        raise ValueError(f"seconds must be a positive whole number (WhisperFeatureExtractor.chunk_length), got {seconds}")
    seconds = int(seconds)
    sr, hop = feature_extractor.sampling_rate, feature_extractor.hop_length
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.model.encoder
    stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
    n_frames = seconds * sr // hop
    if (seconds * sr) % hop or n_frames % stride:
        raise ValueError(f"{seconds}s does not give a whole number of encoder positions (hop {hop}, stride {stride})")
    n_pos = n_frames // stride
    old = encoder.embed_positions
    if n_pos > old.num_embeddings:
        raise ValueError(f"cannot grow the encoder window: {n_pos} > {old.num_embeddings} positions")
    if n_pos != old.num_embeddings:
        new = torch.nn.Embedding(n_pos, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(old.weight[:n_pos])
        new.requires_grad_(False)
        encoder.embed_positions = new
    for cfg in {id(c): c for c in (model.config, encoder.config)}.values():
        cfg.max_source_positions = n_pos
    encoder.max_source_positions = n_pos

    fe = extractor_for_window(feature_extractor, seconds)
    if fe.nb_max_frames != n_pos * stride:
        raise AssertionError(f"feature extractor frames {fe.nb_max_frames} != {n_pos * stride}")
    return model, fe


def extractor_for_window(feature_extractor: Any, seconds: int) -> Any:
    """A copy of ``feature_extractor`` (same mel settings) that pads/truncates to ``seconds``."""
    from transformers import WhisperFeatureExtractor

    params = feature_extractor.to_dict()
    kwargs = {
        k: params[k]
        for k in ("feature_size", "sampling_rate", "hop_length", "n_fft", "padding_value", "dither", "return_attention_mask")
        if k in params
    }
    return WhisperFeatureExtractor(**kwargs, chunk_length=int(seconds))
