"""Input features for sequence labelling, as (init, apply) pairs of pure functions.

- :func:`embedding`: a lookup table, with word dropout (replace a token by ``<unk>`` with a
  per-id probability) when ``apply`` gets a key;
- :func:`char_cnn`: a word's characters -> one vector: embeddings, a 1-D convolution, max over
  the valid positions (Ma & Hovy 2016);
- :func:`char_bilstm`: a word's characters -> the final forward and backward states of a
  character BiLSTM (Lample et al. 2016).

The character encoders take ONE word ``chars [W]`` (ids, right-padded) and its length; ``vmap``
over words and sentences. A word of length 0 (a pad position) gives zeros.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn.cells import checks

__all__ = ["Feature", "embedding", "char_cnn", "char_bilstm"]


class Feature(NamedTuple):
    init: Callable[[Any], Any]          # key -> params
    apply: Callable[..., jax.Array]     # (params, ids, [lengths,] *, key=None) -> features
    output_size: int


def embedding(vocab_size: int, dim: int, *, unk_id: Optional[int] = None,
              dropout_probs: Optional[np.ndarray] = None, scale: float = 0.1) -> Feature:
    """``apply(params, ids, *, key=None) -> params[ids]``; ids of any shape.

    With ``key`` and ``dropout_probs`` (``[vocab_size]``, e.g. ``Vocab.dropout_probs``), each
    token becomes ``unk_id`` with its id's probability (word dropout)."""
    vocab_size = checks.check_positive_int("vocab_size", vocab_size, where="embedding")
    dim = checks.check_positive_int("dim", dim, where="embedding")
    probs = None
    if dropout_probs is not None and np.any(np.asarray(dropout_probs) > 0):
        if unk_id is None:
            raise ValueError("word dropout needs unk_id")
        probs = jnp.asarray(dropout_probs, jnp.float32)
        if probs.shape != (vocab_size,):
            raise ValueError(f"dropout_probs must have shape ({vocab_size},), got {probs.shape}")

    def init(key):
        return scale * jax.random.normal(key, (vocab_size, dim), jnp.float32)

    def apply(params, ids, *, key=None):
        if key is not None and probs is not None:
            drop = jax.random.uniform(key, ids.shape, jnp.float32) < probs[ids]
            ids = jnp.where(drop, unk_id, ids)
        return params[ids]

    return Feature(init, apply, dim)


def char_cnn(num_chars: int, char_dim: int = 30, filters: int = 50, kernel_size: int = 3,
             dropout: float = 0.0) -> Feature:
    """``apply(params, chars [W], length, *, key=None) -> [filters]``: tanh(conv(embeddings))
    max-pooled over the valid positions (the convolution sees zeros beyond the word)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    emb = embedding(num_chars, char_dim)

    def init(key):
        k_e, k_w = jax.random.split(key)
        fan_in = kernel_size * char_dim
        return {"embed": emb.init(k_e),
                "w": jax.random.normal(k_w, (kernel_size, char_dim, filters), jnp.float32)
                / float(np.sqrt(fan_in)),
                "b": jnp.zeros((filters,), jnp.float32)}

    def apply(params, chars, length, *, key=None):
        W = chars.shape[0]
        valid = jnp.arange(W, dtype=jnp.int32) < jnp.asarray(length, jnp.int32)
        x = jnp.where(valid[:, None], emb.apply(params["embed"], chars), 0.0)
        x = jr.dropout(key, x, dropout)
        y = jax.lax.conv_general_dilated(x[None], params["w"], (1,), "SAME",
                                         dimension_numbers=("NWC", "WIO", "NWC"))[0]
        y = jnp.tanh(y + jnp.broadcast_to(params["b"], y.shape))
        y = jnp.max(jnp.where(valid[:, None], y, -jnp.inf), axis=0)
        return jnp.where(length > 0, y, 0.0)

    return Feature(init, apply, filters)


def char_bilstm(num_chars: int, char_dim: int = 30, hidden_size: int = 25,
                dropout: float = 0.0) -> Feature:
    """``apply(params, chars [W], length, *, key=None) -> [2 * hidden_size]``: the forward
    state after the last character and the backward state after the first."""
    emb = embedding(num_chars, char_dim)
    rnn = jr.bidirectional(jr.lstm(hidden_size))

    def init(key):
        k_e, k_r = jax.random.split(key)
        return {"embed": emb.init(k_e), "rnn": rnn.init(k_r, char_dim)}

    def apply(params, chars, length, *, key=None):
        x = jr.dropout(key, emb.apply(params["embed"], chars), dropout)
        _, (c_fw, c_bw) = rnn.apply(params["rnn"], x, seq_lengths=length)
        return jnp.concatenate([c_fw.h, c_bw.h], axis=-1)

    return Feature(init, apply, 2 * hidden_size)
