"""Attention as pure functions: additive (Bahdanau et al. 2015) and multiplicative (Luong et
al. 2015), masked by source length.

An attention is a NamedTuple of pure functions made by a factory (like a cell)::

    att = additive(attn_size=128)                  # or multiplicative(), multiplicative("dot")
    p = att.init(key, query_size=256, memory_size=512)
    keys = att.prepare(p, memory)                  # once per source: [S, ...]
    context, weights = att.attend(p, query, memory, keys, mask)   # one query [Q] -> [M], [S]

``memory`` is ``[S, M]`` (one source; ``vmap`` for batches), ``mask`` is ``[S]`` bool (True for
real positions, e.g. ``jnp.arange(S) < length``). Padded positions get weight exactly 0.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Attention", "additive", "multiplicative", "masked_softmax", "length_mask"]


class Attention(NamedTuple):
    """Attributes:
      init: ``(key, query_size, memory_size) -> params``.
      prepare: ``(params, memory [S, M]) -> keys``, the query-independent part (computed once
        per source, not once per decoder step).
      attend: ``(params, query [Q], memory [S, M], keys, mask [S]) -> (context [M], weights [S])``.
      name: ``"additive"``, ``"general"`` or ``"dot"``.
    """
    init: Callable[..., Any]
    prepare: Callable[..., Any]
    attend: Callable[..., Any]
    name: str


def length_mask(lengths, size: int):
    """``[..., size]`` bool: position ``s`` is real when ``s < length``."""
    lengths = jnp.asarray(lengths, jnp.int32)
    positions = jnp.arange(size, dtype=jnp.int32).reshape((1,) * lengths.ndim + (size,))
    return positions < lengths[..., None]


def masked_softmax(scores, mask):
    """Softmax over the last axis with masked positions at exactly 0 (all-masked rows give 0s,
    not NaN)."""
    scores = jnp.where(mask, scores, -jnp.inf)
    top = jnp.max(scores, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.where(mask, jnp.exp(scores - top), 0.0)
    return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), 1e-30)


def _glorot(key, shape):
    lim = np.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


def additive(attn_size: int) -> Attention:
    """Bahdanau attention: ``score_s = v . tanh(W_q q + W_m m_s + b)``."""

    def init(key, query_size: int, memory_size: int):
        kq, km, kv = jax.random.split(key, 3)
        return {"wq": _glorot(kq, (query_size, attn_size)),
                "wm": _glorot(km, (memory_size, attn_size)),
                "b": jnp.zeros((attn_size,), jnp.float32),
                "v": _glorot(kv, (attn_size, 1))[:, 0]}

    def prepare(params, memory):
        keys = memory @ params["wm"]
        return keys + jnp.broadcast_to(params["b"], keys.shape)

    def attend(params, query, memory, keys, mask):
        q = query @ params["wq"]                                     # [A], against keys [S, A]
        scores = jnp.tanh(keys + jnp.broadcast_to(q, keys.shape)) @ params["v"]
        w = masked_softmax(scores, mask)
        return w @ memory, w

    return Attention(init, prepare, attend, "additive")


def multiplicative(kind: str = "general") -> Attention:
    """Luong attention: ``"general"``: ``score_s = q . (W m_s)``; ``"dot"``: ``q . m_s`` (needs
    equal query and memory sizes)."""
    if kind not in ("general", "dot"):
        raise ValueError(f"multiplicative attention kind must be 'general' or 'dot', got {kind!r}")

    def init(key, query_size: int, memory_size: int):
        if kind == "dot":
            if query_size != memory_size:
                raise ValueError(f"dot attention needs query_size == memory_size, got "
                                 f"{query_size} and {memory_size}")
            return {}
        return {"w": _glorot(key, (memory_size, query_size))}

    def prepare(params, memory):
        return memory if kind == "dot" else memory @ params["w"]

    def attend(params, query, memory, keys, mask):
        w = masked_softmax(keys @ query, mask)
        return w @ memory, w

    return Attention(init, prepare, attend, kind)
