"""Flax linen modules shaped like PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    from jaxrnn import linen as jln
    rnn = jln.LSTM(in_features=32, hidden_size=128, num_layers=2, bidirectional=True, dropout=0.1)
    variables = rnn.init(key, x)                              # x: [batch, time, 32]
    ys, carry = rnn.apply(variables, x)                       # evaluation (no dropout)
    ys, carry = rnn.apply(variables, x, deterministic=False, rngs={"dropout": k})

Thin wrappers: ``variables["params"]["rnn"]`` holds the functional core's params and
``module.make_layer()`` the ``jr.stack`` that runs them, so ``jax.vmap(layer.apply)`` on those
params gives the same numbers. Carries are the functional core's (see ``jaxrnn.nnx``).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax

from jaxrnn.nnx import apply_batched, torch_like_stack

__all__ = ["RNNBase", "SimpleRNN", "LSTM", "GRU", "MGU", "MinGRU", "MinLSTM"]


class RNNBase(nn.Module):
    """A stack of recurrent layers; subclasses fix the cell. ``cell_options`` are the cell
    factory's keyword arguments (e.g. ``{"layer_norm": True}``)."""
    in_features: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    proj_size: Optional[int] = None
    batch_first: bool = True
    cell_options: Optional[dict] = None
    cell: str = ""

    def make_layer(self):
        return torch_like_stack(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                self.dropout, self.proj_size, **(self.cell_options or {}))

    @nn.compact
    def __call__(self, x, carry=None, *, seq_lengths=None, deterministic: bool = True):
        layer = self.make_layer()
        params = self.param("rnn", lambda key: layer.init(key, self.in_features))
        key = None
        if not deterministic and self.dropout > 0:
            key = self.make_rng("dropout")
        return apply_batched(layer, params, x, carry, seq_lengths=seq_lengths, key=key,
                             batch_first=self.batch_first)

    def initial_carry(self, params, batch_size: int):
        """Zeros carry for ``batch_size`` from ``variables["params"]``."""
        return self.make_layer().initial_carry(params["rnn"], (batch_size,))


class SimpleRNN(RNNBase):
    cell: str = "simple_rnn"


class LSTM(RNNBase):
    cell: str = "lstm"


class GRU(RNNBase):
    cell: str = "gru"


class MGU(RNNBase):
    cell: str = "mgu"


class MinGRU(RNNBase):
    cell: str = "min_gru"


class MinLSTM(RNNBase):
    cell: str = "min_lstm"
