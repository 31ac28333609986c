"""Flax NNX modules shaped like PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    from flax import nnx
    from jaxrnn import nnx as jnnx
    rnn = jnnx.LSTM(32, 128, num_layers=2, bidirectional=True, dropout=0.1, rngs=nnx.Rngs(0))
    ys, carry = rnn(x)                       # x: [batch, time, 32] -> ys: [batch, time, 256]
    ys, carry = rnn(x, carry, seq_lengths=n)

Parameters live one submodule per layer, one ``nnx.Param`` per array: ``rnn.layers[k].w_ih``,
``.w_hh``, ``.b`` (GRU: ``.b_ih``, ``.b_hh``; projection: ``.w_proj``; a bidirectional layer's
arrays carry a leading axis of 2, forward then backward), so ``nnx.state(rnn, nnx.Param)`` reads
``layers/0/w_ih`` and the usual NNX loop works unchanged::

    opt = nnx.Optimizer(rnn, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(rnn, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(x)[0], y))(rnn)
        opt.update(rnn, grads)
        return loss

One array per ``Param`` is what that loop needs. ``nnx.Optimizer`` keeps one optimizer
variable per parameter variable (Adam's moments) and, after each update, writes the new
moments back with ``nnx.update(opt_state, nnx.state(new_opt_state))``; ``nnx.state`` flattens
any pytree it finds, so a variable whose value is a pytree gets back a nested ``State`` in place
of its value. When this module kept the whole stack's tuple of ``LSTMParams`` in one ``Param``,
the moments for it came back from the first update as ``State({0: {"b", "w_hh", "w_ih"}})``
(a dict, with the ``None`` fields gone), and the second update's gradients, still the tuple, no
longer matched them: optax's "pytree structure error: different types at key path".

The modules are thin; the numbers are the functional core's. ``rnn.layer`` is the
PyTorch-shaped ``jr.stack`` (:func:`torch_like_stack`) and ``rnn.functional_params()`` the tuple
of per-layer params that its ``apply`` takes, rebuilt from the submodules at every call (so
dropout, residual and length rules are the stack's own)::

    params = rnn.functional_params()
    ys, carry = jax.vmap(rnn.layer.apply, in_axes=(None, 0))(params, x)   # the same numbers

The carry is the functional core's: a tuple with one entry per layer (a ``(fw, bw)`` pair per
bidirectional layer) of named carries such as ``LSTMCarry(h, c)``, each ``[batch, hidden]``.

Dropout (between layers, as PyTorch) is active in training mode with an RNG stream: by default
the ``dropout`` stream of the ``rngs`` given to the constructor (``module.eval()`` turns it
off), or a ``key=`` passed to the call.
"""

from __future__ import annotations

from typing import Optional

from flax import nnx

from jaxrnn.interop._stack import (apply_batched, check_module_options, named_arrays,
                                   torch_like_stack)

__all__ = ["RNNBase", "RNNLayer", "SimpleRNN", "LSTM", "GRU", "MGU", "MinGRU", "MinLSTM",
           "torch_like_stack", "apply_batched"]


class RNNLayer(nnx.Module):
    """One layer's parameters: an ``nnx.Param`` per array of the functional params.

    The layer computes nothing itself (the stack does, so inter-layer dropout and lengths
    follow one definition); it only stores what ``functional()`` hands back to it.
    """

    def __init__(self, params):
        named, layout = named_arrays(params)
        self._layout = nnx.static(layout)
        for name, array in named.items():
            if hasattr(type(self), name):
                raise ValueError(f"parameter name {name!r} shadows an nnx.Module attribute")
            setattr(self, name, nnx.Param(array))

    def functional(self):
        """This layer's params as the functional core has them (e.g. ``LSTMParams``)."""
        return self._layout.unflatten({n: getattr(self, n).get_value()
                                       for n in self._layout.names})


class RNNBase(nnx.Module):
    """A stack of recurrent layers; subclasses fix ``cell`` (a name of
    ``jaxrnn.cells.registry``), ``cell_options`` are that factory's keyword arguments."""
    cell: str = ""

    def __init__(self, in_features: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0,
                 proj_size: Optional[int] = None, *, batch_first: bool = True,
                 rngs: nnx.Rngs, **cell_options):
        check_module_options(in_features, hidden_size, num_layers, bidirectional, dropout,
                             proj_size, batch_first)
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.batch_first = batch_first
        self.layer = nnx.static(torch_like_stack(self.cell, hidden_size, num_layers,
                                                 bidirectional, dropout, proj_size,
                                                 **cell_options))
        # The stack's own init (one key), so a module and jr.stack agree for the same key.
        params = self.layer.init(rngs.params(), in_features)
        self.layers = nnx.List([RNNLayer(p) for p in params])
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if dropout > 0 else nnx.data(None)

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def functional_params(self):
        """The tuple of per-layer params ``self.layer.apply`` takes (current values)."""
        return tuple(l.functional() for l in self.layers)

    def initial_carry(self, batch_size: int):
        return self.layer.initial_carry(self.functional_params(), (batch_size,))

    def __call__(self, x, carry=None, *, seq_lengths=None, key=None,
                 deterministic: Optional[bool] = None):
        det = self.deterministic if deterministic is None else deterministic
        if det:
            key = None
        elif key is None and self.dropout > 0 and self.rngs is not None:
            key = self.rngs()
        return apply_batched(self.layer, self.functional_params(), x, carry,
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
