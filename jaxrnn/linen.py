"""Flax linen modules shaped like PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    from jaxrnn import linen as jln
    rnn = jln.LSTM(in_features=32, hidden_size=128, num_layers=2, bidirectional=True, dropout=0.1)
    variables = rnn.init(key, x)                              # x: [batch, time, 32]
    ys, carry = rnn.apply(variables, x)                       # evaluation (no dropout)
    ys, carry = rnn.apply(variables, x, deterministic=False, rngs={"dropout": k})

Parameters are stored per layer, one array per name: ``variables["params"]["layers_0"]["w_ih"]``,
``["w_hh"]``, ``["b"]`` (GRU: ``b_ih``, ``b_hh``; a bidirectional layer's arrays have a leading
axis of 2, forward then backward), so they can be filtered, inspected and partitioned by path
like any linen model's, and ``TrainState`` + optax train them unchanged.

Thin wrappers: ``module.make_layer()`` is the PyTorch-shaped ``jr.stack``
(``jaxrnn.interop._stack``, shared with ``jaxrnn.nnx`` and ``jr.interop``) that runs them and
``module.functional_params(variables["params"])`` the tuple its ``apply`` takes, so
``jax.vmap(layer.apply)`` on those params gives the same numbers. Carries are the functional
core's (see ``jaxrnn.nnx``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import flax.linen as nn
import jax

from jaxrnn.cells import checks
from jaxrnn.interop._stack import (apply_batched, check_module_options, named_arrays,
                                   torch_like_layers, torch_like_stack)

__all__ = ["RNNBase", "SimpleRNN", "LSTM", "GRU", "MGU", "MinGRU", "MinLSTM"]


class RNNBase(nn.Module):
    """A stack of recurrent layers; subclasses fix ``cell`` (a name of
    ``jaxrnn.cells.registry``). ``cell_options`` are the cell factory's keyword arguments
    (e.g. ``{"layer_norm": True}``)."""
    in_features: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    proj_size: Optional[int] = None
    batch_first: bool = True
    cell_options: Optional[dict] = None
    cell: str = ""

    def check_options(self):
        """The module's fields, checked (a linen module is a dataclass: they are checked
        when it is used, at ``init`` and ``apply``)."""
        check_module_options(self.in_features, self.hidden_size, self.num_layers,
                             self.bidirectional, self.dropout, self.proj_size, self.batch_first)
        if self.cell_options is not None and not isinstance(self.cell_options, Mapping):
            raise checks.InvalidArgumentType(
                f"cell_options must be a dict of the cell factory's keyword arguments, got "
                f"{type(self.cell_options).__name__}")

    def make_layer(self):
        """The ``jr.stack`` this module runs."""
        self.check_options()
        return torch_like_stack(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                self.dropout, self.proj_size, **(self.cell_options or {}))

    def _layouts(self):
        """Each layer's ``(layer, input_size, ArrayLayout)``: where its named arrays go."""
        self.check_options()
        out, size = [], self.in_features
        for l in torch_like_layers(self.cell, self.hidden_size, self.num_layers,
                                   self.bidirectional, self.proj_size,
                                   **(self.cell_options or {})):
            shapes = jax.eval_shape(lambda l=l, size=size: l.init(jax.random.PRNGKey(0), size))
            out.append((l, size, named_arrays(shapes)[1]))
            size = l.output_size
        return out

    def functional_params(self, params):
        """The tuple ``make_layer().apply`` takes, from ``variables["params"]``."""
        return tuple(layout.unflatten(params[f"layers_{k}"])
                     for k, (_, _, layout) in enumerate(self._layouts()))

    @nn.compact
    def __call__(self, x, carry=None, *, seq_lengths=None, deterministic: bool = True):
        # One ``self.param`` per layer, initialized by that layer's own init, holding a dict
        # of named arrays (``layers_k/w_ih``): per-layer paths without a second definition
        # of what each cell's params are.
        params = {}
        for k, (l, size, _) in enumerate(self._layouts()):
            params[f"layers_{k}"] = self.param(
                f"layers_{k}", lambda key, l=l, size=size: named_arrays(l.init(key, size))[0])
        key = None
        if not deterministic and self.dropout > 0:
            key = self.make_rng("dropout")
        return apply_batched(self.make_layer(), self.functional_params(params), x, carry,
                             seq_lengths=seq_lengths, key=key, batch_first=self.batch_first)

    def initial_carry(self, params, batch_size: int):
        """Zeros carry for ``batch_size`` from ``variables["params"]``."""
        return self.make_layer().initial_carry(self.functional_params(params), (batch_size,))


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
