"""Reading WAV files with the standard library's ``wave`` module and NumPy."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

__all__ = ["read_wav"]


def read_wav(path, *, mono: bool = True) -> tuple[np.ndarray, int]:
    """Reads a 16-bit PCM WAV file; returns ``(samples, sample_rate)``.

    ``samples`` is float32 in ``[-1, 1)`` (``int16 / 32768``): ``[n]`` for a mono file, or
    ``[n, channels]`` for a multi-channel one unless ``mono`` (the default), which averages the
    channels. Anything but uncompressed 16-bit PCM (8/24/32-bit PCM, IEEE float, A-law, a file
    that is not a WAV at all) raises ``ValueError`` naming the file and what it found.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            comp, n = w.getcomptype(), w.getnframes()
            raw = w.readframes(n)
    except wave.Error as e:          # e.g. "unknown format: 3" (IEEE float), "file does not start with RIFF id"
        raise ValueError(f"{path}: not a 16-bit PCM WAV file ({e})") from None
    except EOFError:
        raise ValueError(f"{path}: truncated or empty WAV file") from None
    if comp != "NONE":
        raise ValueError(f"{path}: compressed WAV ({comp}) is not supported; expected 16-bit PCM")
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; only 16-bit PCM is supported "
                         f"(convert with e.g. `sox in.wav -b 16 out.wav`)")
    x = np.frombuffer(raw, dtype="<i2")
    if len(x) % channels:
        raise ValueError(f"{path}: truncated WAV data ({len(x)} samples for {channels} channels)")
    x = x.reshape(-1, channels).astype(np.float32) / 32768.0
    if channels == 1:
        return x[:, 0], rate
    return (x.mean(axis=1), rate) if mono else (x, rate)
