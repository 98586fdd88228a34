"""The wav2vec2 family with a CTC head, for every task that uses it.

vocabulary   the CTC character vocabulary: case-aware normalisation, whitelist filtering, targets
tokenizer    tokenizer packaging: a character vocabulary from transcripts, or the checkpoint's own
build        the starting model: pretrained (new CTC head for the vocabulary) or built from config
features     audio -> padded input values and masks
decoding     CTC greedy decoding over the valid frames, and KenLM beam search (pyctcdecode)
transcriber  batch transcription with PyTorch
onnx         ONNX export (input values [, attention mask] -> logits) and onnxruntime logits
"""
