"""Log-mel filterbank features in JAX, per-utterance normalization, SpecAugment masking.

Why JAX and not an audio library: no extra dependency (numpy, the standard library's ``wave``
and JAX are all it needs), every function is pure and ``jit``/``vmap``-able, and the features
(and the masking, which runs inside the jitted training step) are computed on whatever device
the model runs on. The mel filterbank is a constant matrix built once in NumPy.

Pipeline (one utterance): pre-emphasis ``y[t] = x[t] - a x[t-1]`` -> frames of ``frame_length``
samples every ``hop_length`` (no centering; a signal shorter than one frame is zero-padded to
one frame) -> Hann window (periodic) -> power spectrum ``|rfft(frame, n_fft)|^2`` -> triangular
mel filters (HTK mel scale ``2595 log10(1 + f / 700)``, unit peak) -> ``log(mel + eps)``.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank", "num_frames", "log_mel", "normalize",
           "spec_augment", "stack_frames", "log_mel_many"]


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: Optional[float] = None) -> np.ndarray:
    """Triangular mel filters, ``[n_fft // 2 + 1, num_mels]`` float32 (peaks of height 1, at
    ``num_mels`` centres equally spaced in mel between ``fmin`` and ``fmax``)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel_filterbank: need 0 <= fmin < fmax <= sample_rate/2, got "
                         f"fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}")
    if num_mels < 1:
        raise ValueError(f"mel_filterbank: num_mels must be >= 1, got {num_mels}")
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    up = (f - lo) / (mid - lo)
    down = (hi - f) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def num_frames(num_samples, frame_length: int, hop_length: int):
    """Frames :func:`log_mel` makes of ``num_samples`` samples (at least 1); works on arrays."""
    n = np.maximum(np.asarray(num_samples), frame_length)
    return 1 + (n - frame_length) // hop_length


def log_mel(signal, sample_rate: int, *, num_mels: int = 40, frame_ms: float = 25.0,
            hop_ms: float = 10.0, n_fft: Optional[int] = None, preemphasis: float = 0.97,
            fmin: float = 0.0, fmax: Optional[float] = None, eps: float = 1e-6):
    """Log-mel filterbank energies of one signal ``[n]``: ``[num_frames(n), num_mels]`` float32.

    ``n_fft`` defaults to the next power of two >= the frame length. Pure and ``jit``-able
    (sample rate and options are static; ``vmap`` over equal-length signals for a batch).
    """
    x = jnp.asarray(signal, jnp.float32)
    if x.ndim != 1:
        raise ValueError(f"log_mel: expected a 1-D signal, got shape {x.shape}")
    L = int(round(sample_rate * frame_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = n_fft or int(2 ** np.ceil(np.log2(L)))
    if n_fft < L:
        raise ValueError(f"log_mel: n_fft={n_fft} is shorter than the frame ({L} samples)")
    if preemphasis:
        x = jnp.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    if x.shape[0] < L:
        x = jnp.pad(x, (0, L - x.shape[0]))
    T = int(num_frames(x.shape[0], L, hop))
    idx = np.arange(T)[:, None] * hop + np.arange(L)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / L)         # periodic Hann
    frames = x[idx] * jnp.asarray(window, jnp.float32)[None, :]       # [T, L]
    power = jnp.abs(jnp.fft.rfft(frames, n=n_fft, axis=-1)) ** 2
    fb = jnp.asarray(mel_filterbank(num_mels, n_fft, sample_rate, fmin, fmax))
    return jnp.log(power @ fb + eps)


def normalize(features, length=None, eps: float = 1e-5):
    """Per-utterance mean and variance normalization of ``[T, F]`` features, per feature, over
    the first ``length`` frames (all when None); frames past ``length`` become 0."""
    f = jnp.asarray(features)
    T = f.shape[0]
    n_valid = jnp.asarray(T if length is None else length, jnp.int32)
    valid = (jnp.arange(T, dtype=jnp.int32) < n_valid)[:, None]            # [T, 1]
    n = jnp.maximum(jnp.sum(valid), 1).astype(f.dtype)                     # a count, as a float
    mu = jnp.sum(jnp.where(valid, f, 0.0), 0, keepdims=True) / n           # [1, F]
    var = jnp.sum(jnp.where(valid, (f - mu) ** 2, 0.0), 0, keepdims=True) / n
    return jnp.where(valid, (f - mu) / jnp.sqrt(var + eps), 0.0)


def stack_frames(features: np.ndarray, k: int) -> np.ndarray:
    """Concatenates each ``k`` consecutive frames into one (``[T, F] -> [ceil(T/k), k F]``,
    the last group zero-padded): a ``k``-times shorter sequence for the RNN."""
    if k <= 1:
        return features
    T, F = features.shape
    pad = (-T) % k
    f = np.concatenate([features, np.zeros((pad, F), features.dtype)]) if pad else features
    return f.reshape(-1, k * F)


def spec_augment(key, features, length=None, *, freq_masks: int = 2, freq_width: int = 8,
                 time_masks: int = 2, time_width: int = 10, max_time_fraction: float = 0.2,
                 value: float = 0.0):
    """SpecAugment-style masking (Park et al. 2019, without time warping) of ``[T, F]``.

    ``freq_masks`` bands of ``[0, freq_width]`` channels and ``time_masks`` spans of
    ``[0, min(time_width, max_time_fraction * length)]`` frames (inside the first ``length``
    frames) are set to ``value`` (0, the mean of normalized features). Pure and ``jit``-able;
    ``vmap`` it with one key per example.
    """
    f = jnp.asarray(features)
    T, F = f.shape
    length = jnp.asarray(T if length is None else length, jnp.int32)
    keys = jax.random.split(key, 2 * (freq_masks + time_masks))
    mask = jnp.zeros((T, F), bool)
    # int32 throughout (aranges and randint default to int64 under x64)
    ch, fr = jnp.arange(F, dtype=jnp.int32), jnp.arange(T, dtype=jnp.int32)
    for i in range(freq_masks):
        w = jax.random.randint(keys[2 * i], (), 0, freq_width + 1, jnp.int32)
        s = jax.random.randint(keys[2 * i + 1], (), 0, jnp.maximum(F - w, 0) + 1, jnp.int32)
        mask = mask | ((ch >= s) & (ch < s + w))[None, :]
    t_max = jnp.minimum(time_width, jnp.floor(max_time_fraction * length.astype(jnp.float32))
                        ).astype(jnp.int32)
    for j in range(time_masks):
        k1, k2 = keys[2 * (freq_masks + j)], keys[2 * (freq_masks + j) + 1]
        w = jax.random.randint(k1, (), 0, t_max + 1, jnp.int32)
        s = jax.random.randint(k2, (), 0, jnp.maximum(length - w, 0) + 1, jnp.int32)
        mask = mask | ((fr >= s) & (fr < s + w))[:, None]
    return jnp.where(mask, jnp.asarray(value, f.dtype), f)


def log_mel_many(signals, sample_rate: int, *, bucket: int = 4096, norm: bool = True,
                 **options) -> list:
    """Normalized log-mel features of many signals of different lengths (host NumPy out).

    Each signal is zero-padded to a multiple of ``bucket`` samples so that one compiled
    function serves every length in a bucket; the frames of the padding are dropped and the
    normalization uses the valid frames only. Returns a list of ``[num_frames(n), F]`` float32.
    """
    L = int(round(sample_rate * options.get("frame_ms", 25.0) / 1000))
    hop = int(round(sample_rate * options.get("hop_ms", 10.0) / 1000))

    @jax.jit
    def one(x, n_frames):
        f = log_mel(x, sample_rate, **options)
        return normalize(f, n_frames) if norm else f

    out = []
    for s in signals:
        s = np.asarray(s, np.float32)
        n = len(s)
        padded = np.zeros(max(-(-n // bucket), 1) * bucket, np.float32)
        padded[:n] = s
        T = int(num_frames(n, L, hop))
        out.append(np.asarray(one(padded, T))[:T])
    return out
