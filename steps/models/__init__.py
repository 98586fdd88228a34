"""Model families (``whisper``, ``wav2vec2``, ...): checkpoint loading and conversion, tokenizers,
decoding and export helpers that tasks compose. ``resolve`` maps model ids to checkpoints; ``onnx``
is the export and onnxruntime set-up every family shares."""
