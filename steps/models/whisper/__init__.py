"""The Whisper family, for every task that uses it (no task's heads or metrics here).

ct2          CTranslate2 ``model.bin`` -> Hugging Face folder (the offline tiny.en checkpoint)
window       shrink the encoder's 30 s window to the clips' length
prompt       the decoder prompt (start, language, task, no-timestamps), decoding spec, training labels
tokenizer    tokenizer packaging: the checkpoint's own or a scratch byte-level BPE, feature extractor
build        the starting model: pretrained (window shrunk) or built from config; encoder freezing
features     audio -> log-mel features and frame mask
decoding     the greedy loop shared by PyTorch and onnxruntime
transcriber  encoder pass + greedy decoding with a key/value cache (PyTorch)
onnx         encoder/decoder ONNX export and onnxruntime transcription
"""
