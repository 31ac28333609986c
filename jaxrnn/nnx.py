"""Flax NNX modules shaped like PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    from flax import nnx
    from jaxrnn import nnx as jnnx
    rnn = jnnx.LSTM(32, 128, num_layers=2, bidirectional=True, dropout=0.1, rngs=nnx.Rngs(0))
    ys, carry = rnn(x)                       # x: [batch, time, 32] -> ys: [batch, time, 256]
    ys, carry = rnn(x, carry, seq_lengths=n)

The modules are thin: the math is the functional core's. ``module.layer`` is the
``jr.stack([...])`` it runs and ``module.params.get_value()`` the functional params, so
``jax.vmap(module.layer.apply)`` on those params gives the same numbers. The carry is the
functional core's: a tuple with one entry per layer (a ``(fw, bw)`` pair per bidirectional
layer) of named carries such as ``LSTMCarry(h, c)``, each ``[batch, hidden]``.

Dropout (between layers, as PyTorch) is active in training mode with an RNG stream: by default
the ``dropout`` stream of the ``rngs`` given to the constructor (``module.eval()`` turns it
off), or a ``key=`` passed to the call.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

import jaxrnn as jr

__all__ = ["RNNBase", "SimpleRNN", "LSTM", "GRU", "MGU", "MinGRU", "MinLSTM", "torch_like_stack",
           "apply_batched"]

_FACTORIES = {
    "simple_rnn": jr.simple_rnn, "lstm": jr.lstm, "gru": jr.gru, "mgu": jr.mgu,
    "min_gru": jr.min_gru, "min_lstm": jr.min_lstm,
}


def torch_like_stack(cell: str, hidden_size: int, num_layers: int = 1,
                     bidirectional: bool = False, dropout: float = 0.0,
                     proj_size: Optional[int] = None, **cell_options) -> jr.Layer:
    """The ``jr.stack`` behind a PyTorch-shaped module (shared by ``jaxrnn.linen``)."""
    if cell not in _FACTORIES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(_FACTORIES)}")
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    opts = dict(cell_options)
    if proj_size:
        if cell != "lstm":
            raise ValueError(f"proj_size is an LSTM option, not one of {cell!r}")
        opts["proj_size"] = proj_size
    make = _FACTORIES[cell]
    layers = [jr.bidirectional(make(hidden_size, **opts)) if bidirectional
              else jr.layer(make(hidden_size, **opts)) for _ in range(num_layers)]
    return jr.stack(layers, dropout=dropout)


def apply_batched(layer: jr.Layer, params, x, carry=None, *, seq_lengths=None, key=None,
                  batch_first: bool = True):
    """``layer.apply`` over a batch: ``x`` [batch, time, features] (or [time, batch, features]
    with ``batch_first=False``). Returns ``(ys, carry)`` with ys in the same layout."""
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected x of shape [batch, time, features], got {x.shape}")
    if not batch_first:
        x = jnp.swapaxes(x, 0, 1)
    B = x.shape[0]
    if carry is None:
        carry = layer.initial_carry(params, (B,))
    keys = None if key is None else jax.random.split(key, B)
    n = None if seq_lengths is None else jnp.broadcast_to(jnp.asarray(seq_lengths), (B,))

    def one(xs, c, length, k):
        return layer.apply(params, xs, c, seq_lengths=length, key=k)

    in_axes = (0, 0, None if n is None else 0, None if keys is None else 0)
    ys, carry = jax.vmap(one, in_axes=in_axes)(x, carry, n, keys)
    if not batch_first:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, carry


class RNNBase(nnx.Module):
    """A stack of recurrent layers; subclasses fix the cell."""
    cell: str = ""

    def __init__(self, in_features: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0,
                 proj_size: Optional[int] = None, *, batch_first: bool = True,
                 rngs: nnx.Rngs, **cell_options):
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.batch_first = batch_first
        self.layer = nnx.static(torch_like_stack(self.cell, hidden_size, num_layers,
                                                 bidirectional, dropout, proj_size,
                                                 **cell_options))
        self.params = nnx.Param(self.layer.init(rngs.params(), in_features))
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if dropout > 0 else nnx.data(None)

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def initial_carry(self, batch_size: int):
        return self.layer.initial_carry(self.params.get_value(), (batch_size,))

    def __call__(self, x, carry=None, *, seq_lengths=None, key=None,
                 deterministic: Optional[bool] = None):
        det = self.deterministic if deterministic is None else deterministic
        if key is None and not det and self.dropout > 0 and self.rngs is not None:
            key = self.rngs()
        if det:
            key = None
        return apply_batched(self.layer, self.params.get_value(), x, carry,
                             seq_lengths=seq_lengths, key=key, batch_first=self.batch_first)


class SimpleRNN(RNNBase):
    """PyTorch's ``nn.RNN`` (``nonlinearity="tanh"`` or ``"relu"`` as a keyword)."""
    cell = "simple_rnn"


class LSTM(RNNBase):
    """PyTorch's ``nn.LSTM`` (also ``peephole``, ``coupled``, ``layer_norm``, ``forget_bias``)."""
    cell = "lstm"


class GRU(RNNBase):
    """PyTorch's ``nn.GRU`` (``reset_after=False`` for Cho et al.'s original form)."""
    cell = "gru"


class MGU(RNNBase):
    cell = "mgu"


class MinGRU(RNNBase):
    cell = "min_gru"


class MinLSTM(RNNBase):
    cell = "min_lstm"
