"""Vocabularies: token <-> id, with padding and unknown-token handling and minimum counts."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = ["Vocab", "PAD", "UNK"]

PAD = "<pad>"
UNK = "<unk>"


class Vocab:
    """A fixed mapping of tokens to ids.

    ``Vocab.build(tokens, min_count=2)`` keeps the tokens seen at least ``min_count`` times,
    most frequent first (ties in first-seen order, so the same data gives the same ids).
    Id 0 is ``<pad>`` and id 1 ``<unk>`` unless ``specials`` says otherwise; a vocabulary
    without ``<unk>`` (tag sets) raises ``KeyError`` naming an unknown token.

    ``counts[i]`` is the training count of token ``i`` (0 for the specials), for word dropout.
    """

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = (PAD, UNK),
                 counts: Optional[Sequence[int]] = None):
        self.itos = list(specials) + [t for t in tokens if t not in specials]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        self.unk_id = self.stoi.get(UNK)
        self.pad_id = self.stoi.get(PAD)
        c = np.zeros(len(self.itos), np.int64)
        if counts is not None:
            c[len(specials):] = np.asarray(counts, np.int64)[:len(self.itos) - len(specials)]
        self.counts = c

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 1, max_size: Optional[int] = None,
              specials: Sequence[str] = (PAD, UNK)) -> "Vocab":
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counter = Counter(tokens)
        order = {t: i for i, t in enumerate(counter)}   # first-seen order for ties
        kept = sorted((t for t, c in counter.items() if c >= min_count and t not in specials),
                      key=lambda t: (-counter[t], order[t]))
        if max_size is not None:
            kept = kept[:max(max_size - len(specials), 0)]
        return cls(kept, specials, [counter[t] for t in kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __getitem__(self, token) -> int:
        i = self.stoi.get(token, self.unk_id)
        if i is None:
            raise KeyError(f"{token!r} is not in the vocabulary (which has no {UNK})")
        return i

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        return np.fromiter((self[t] for t in tokens), np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def dropout_probs(self, alpha: float) -> np.ndarray:
        """Per-id probability of replacing a token by ``<unk>`` during training, alpha / (alpha +
        count) (Kiperwasser & Goldberg 2016): rare words are dropped often, frequent ones almost
        never, so the ``<unk>`` embedding learns what unseen words look like."""
        if alpha <= 0 or self.unk_id is None:
            return np.zeros(len(self), np.float32)
        p = alpha / (alpha + self.counts.astype(np.float64))
        p[self.counts == 0] = 0.0
        return p.astype(np.float32)
