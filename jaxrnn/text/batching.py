"""Padding and length bucketing.

Batches have a fixed number of rows and a padded length taken from a short list of bucket
boundaries, so a ``jit``-compiled step sees a handful of shapes (one compilation each) and
wastes little compute on padding. :class:`BucketSampler` makes the batch of any train step a
pure function of the step (and the seed), as the runner's exact resume needs.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["pad", "bucket_boundaries", "bucket_length", "BucketSampler", "eval_batches"]


def pad(seqs: Sequence[np.ndarray], length: Optional[int] = None, value=0,
        dtype=np.int32) -> np.ndarray:
    """Right-pads sequences (arrays whose first axis is time) to ``[N, length, ...]``."""
    if length is None:
        length = max((len(s) for s in seqs), default=0)
    rest = np.shape(seqs[0])[1:] if len(seqs) else ()
    out = np.full((len(seqs), length) + tuple(rest), value, dtype)
    for i, s in enumerate(seqs):
        s = np.asarray(s)[:length]
        out[i, :len(s)] = s
    return out


def bucket_boundaries(max_len: int, width: int = 8, ratio: float = 1.3) -> list[int]:
    """Padded lengths: multiples of ``width`` growing by about ``ratio``, up to ``max_len``.
    e.g. ``(200, 8, 1.3)`` -> 8, 16, 24, 32, 48, 64, 88, 120, 160, 208."""
    if width < 1 or ratio < 1:
        raise ValueError("width must be >= 1 and ratio >= 1")
    out, b = [], width
    while True:
        out.append(b)
        if b >= max_len:
            return out
        b = max(b + width, -(-int(np.ceil(b * ratio)) // width) * width)


def bucket_length(n: int, boundaries: Sequence[int]) -> int:
    """The smallest boundary >= n (the last boundary rounded up for longer sequences)."""
    for b in boundaries:
        if n <= b:
            return b
    w = boundaries[-1] if boundaries else 1
    return -(-n // w) * w


class BucketSampler:
    """Batches of ``batch_size`` example indices, similar lengths together, reshuffled every
    epoch from ``(seed, epoch)``.

    An epoch sorts the examples by length plus a little noise (so equal-length examples mix
    between epochs), cuts the order into ``ceil(N / batch_size)`` batches and shuffles the
    batches. ``batch(step)`` returns ``(indices, padded_length)``; rows past the data in the
    last batch are ``-1`` (pad rows of length 0, which contribute nothing).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, boundaries: Sequence[int],
                 seed: int = 0, noise: float = 0.1):
        self.lengths = np.asarray(lengths, np.int64)
        if len(self.lengths) == 0:
            raise ValueError("no examples to batch")
        self.B, self.boundaries, self.seed, self.noise = batch_size, list(boundaries), seed, noise
        self.batches_per_epoch = -(-len(self.lengths) // batch_size)
        self._epoch, self._plan = None, None

    def plan(self, epoch: int) -> np.ndarray:
        """``[batches_per_epoch, batch_size]`` indices for ``epoch`` (-1 for pad rows)."""
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            key = self.lengths * (1.0 + self.noise * rng.random(len(self.lengths)))
            order = np.argsort(key, kind="stable")
            full = np.full(self.batches_per_epoch * self.B, -1, np.int64)
            full[:len(order)] = order
            plan = full.reshape(self.batches_per_epoch, self.B)
            self._plan, self._epoch = plan[rng.permutation(self.batches_per_epoch)], epoch
        return self._plan

    def batch(self, step: int) -> tuple[np.ndarray, int]:
        epoch, i = divmod(int(step), self.batches_per_epoch)
        idx = self.plan(epoch)[i]
        n = int(self.lengths[idx[idx >= 0]].max())
        return idx, bucket_length(n, self.boundaries)


def eval_batches(lengths: Sequence[int], batch_size: int, boundaries: Sequence[int]):
    """Deterministic batches for evaluation: sorted by length; yields ``(indices, padded_len)``
    with ``-1`` for pad rows in the last batch."""
    lengths = np.asarray(lengths, np.int64)
    order = np.argsort(lengths, kind="stable")
    for a in range(0, len(order), batch_size):
        idx = np.full(batch_size, -1, np.int64)
        chunk = order[a:a + batch_size]
        idx[:len(chunk)] = chunk
        yield idx, bucket_length(int(max(lengths[chunk].max(), 1)), boundaries)
