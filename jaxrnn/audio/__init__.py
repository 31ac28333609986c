"""Audio front end: WAV reading (``wave`` + NumPy), log-mel features in JAX, SpecAugment.

    from jaxrnn import audio
    x, sr = audio.read_wav("0_george_0.wav")               # float32 [n], 8000
    feats = audio.normalize(audio.log_mel(x, sr))          # [T, 40], per-utterance normalized
"""

from jaxrnn.audio.features import (hz_to_mel, log_mel, log_mel_many, mel_filterbank, mel_to_hz,
                                   normalize, num_frames, spec_augment, stack_frames)
from jaxrnn.audio.wav import read_wav

__all__ = ["hz_to_mel", "log_mel", "log_mel_many", "mel_filterbank", "mel_to_hz", "normalize",
           "num_frames", "read_wav", "spec_augment", "stack_frames"]
