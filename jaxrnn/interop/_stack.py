"""The PyTorch-shaped stack, defined once for interop and the Flax wrappers.

``nn.LSTM(input_size, hidden_size, num_layers, bidirectional=..., dropout=..., proj_size=...)``
is, in jaxrnn, ``jr.stack`` of ``num_layers`` layers (``jr.layer(cell)``, or
``jr.bidirectional(cell)`` with both directions' params stacked on a leading axis of 2) with
``dropout`` between layers. :mod:`jaxrnn.interop.torch` builds it to run a loaded module and
:mod:`jaxrnn.nnx` / :mod:`jaxrnn.linen` build it to wrap, so a module, a loaded checkpoint and a
wrapper are the same network by construction rather than by three copies kept in step.

Cells are named through :mod:`jaxrnn.cells.registry`, so every registered name (aliases such
as ``lstm_peephole`` included) works here and an unknown name or option is the registry's error.

This module also holds what both Flax wrappers need and neither framework provides: the batch
loop over ``layer.apply`` (:func:`apply_batched`) and the flat, named view of one layer's params
(:func:`named_arrays`) that lets a wrapper store one framework
parameter per array. It imports neither torch nor flax.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxrnn import layers as layers_lib
from jaxrnn.cells import checks, registry

__all__ = ["ArrayLayout", "apply_batched", "named_arrays", "torch_like_layers",
           "torch_like_stack"]


def torch_like_layers(cell: str, hidden_size: int, num_layers: int = 1,
                      bidirectional: bool = False, proj_size: Optional[int] = None,
                      **cell_options) -> tuple[layers_lib.Layer, ...]:
    """The ``num_layers`` layers of :func:`torch_like_stack`, for code that initializes or
    stores them one by one (``jaxrnn.linen``); layer ``k`` reads ``layers[k-1].output_size``."""
    num_layers = checks.check_positive_int("num_layers", num_layers)
    bidirectional = checks.check_bool("bidirectional", bidirectional)
    # PyTorch's convention: proj_size=0 means no projection
    proj_size = None if proj_size is None else checks.check_int("proj_size", proj_size, low=0)
    if proj_size:
        cell_options = {**cell_options, "proj_size": proj_size}
    make = layers_lib.bidirectional if bidirectional else layers_lib.layer
    # One cell for every layer: a cell is pure functions of its params, so sharing it is free.
    return tuple(make(registry.make(cell, hidden_size, **cell_options))
                 for _ in range(num_layers))


def torch_like_stack(cell: str, hidden_size: int, num_layers: int = 1,
                     bidirectional: bool = False, dropout: float = 0.0,
                     proj_size: Optional[int] = None, **cell_options) -> layers_lib.Layer:
    """``jr.stack`` shaped like PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU``.

    Args:
      cell: a name of :mod:`jaxrnn.cells.registry` (``"lstm"``, ``"gru"``, ``"simple_rnn_relu"``...).
      hidden_size: the cell's hidden size.
      num_layers: layers stacked, each reading the previous one's outputs.
      bidirectional: each layer is ``jr.bidirectional(cell)`` (outputs concatenated).
      dropout: dropout on the outputs of every layer but the last, active only when ``apply``
        gets a ``key`` (PyTorch's training mode).
      proj_size: the LSTM projection (PyTorch's ``proj_size``); 0 or None for none.
      **cell_options: the cell factory's keyword arguments (``dtype``, ``layer_norm``...).
    """
    dropout = checks.check_rate("dropout", dropout)
    layers = torch_like_layers(cell, hidden_size, num_layers, bidirectional, proj_size,
                               **cell_options)
    return layers_lib.stack(layers, dropout=dropout)


def check_module_options(in_features, hidden_size, num_layers, bidirectional, dropout,
                         proj_size, batch_first):
    """The constructor arguments of the Flax wrappers, checked once (the rest, the cell's
    options, are checked by the cell's factory)."""
    checks.check_positive_int("in_features", in_features)
    checks.check_positive_int("hidden_size", hidden_size)
    checks.check_positive_int("num_layers", num_layers)
    checks.check_bool("bidirectional", bidirectional)
    checks.check_rate("dropout", dropout)
    if proj_size is not None:
        checks.check_int("proj_size", proj_size, low=0)
    checks.check_bool("batch_first", batch_first)


def check_batch_lengths(seq_lengths, num_steps: int, batch: int):
    """``seq_lengths`` of a batch: ``[batch]`` or one scalar for all, integers in
    ``[0, num_steps]`` when concrete (checked here, before ``vmap`` makes them tracers).
    Returns ``[batch]`` int32 lengths, or None."""
    if seq_lengths is None:
        return None
    shape = () if jnp.ndim(seq_lengths) == 0 else (batch,)
    n = checks.check_seq_lengths(seq_lengths, num_steps, batch_shape=shape)
    return jnp.broadcast_to(n, (batch,))


def apply_batched(layer: layers_lib.Layer, params, x, carry=None, *, seq_lengths=None,
                  key=None, batch_first: bool = True):
    """``layer.apply`` over a batch, the way the wrappers call it.

    ``x`` is [batch, time, features] (or [time, batch, features] with ``batch_first=False``);
    ``carry`` is batched on its leading axis (None: zeros); ``seq_lengths`` is [batch] or a
    scalar for all; ``key`` is split into one key per example, so each example draws its own
    dropout masks. Returns ``(ys, carry)`` with ``ys`` in ``x``'s layout.
    """
    batch_first = checks.check_bool("batch_first", batch_first)
    x = jnp.asarray(x)
    if x.ndim != 3:
        layout = "[batch, time, features]" if batch_first else "[time, batch, features]"
        raise checks.InvalidArgumentValue(f"x must have shape {layout}, got shape {x.shape}")
    if not batch_first:
        x = jnp.swapaxes(x, 0, 1)
    B = x.shape[0]
    if layer.check_params is not None:
        layer.check_params(params)              # before initial_carry reads them
    n = check_batch_lengths(seq_lengths, x.shape[1], B)
    if carry is None:
        carry = layer.initial_carry(params, (B,))
    keys = None if key is None else jax.random.split(key, B)

    def one(xs, c, length, k):
        return layer.apply(params, xs, c, seq_lengths=length, key=k)

    in_axes = (0, 0, None if n is None else 0, None if keys is None else 0)
    ys, carry = jax.vmap(one, in_axes=in_axes)(x, carry, n, keys)
    if not batch_first:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, carry


class ArrayLayout(NamedTuple):
    """Where each named array of one layer's params goes (hashable: a wrapper keeps it static)."""
    treedef: Any
    names: tuple[str, ...]

    def unflatten(self, named: Mapping[str, Any]):
        """The layer params ``layer.apply`` takes, from ``{name: array}`` (any mapping with
        exactly :attr:`names` as keys, e.g. one that went through a framework and back)."""
        if set(named) != set(self.names):
            raise checks.InvalidArgumentValue(f"layer params have keys {sorted(named)}, expected "
                             f"{sorted(self.names)}")
        return jax.tree.unflatten(self.treedef, [named[n] for n in self.names])


def named_arrays(params) -> tuple[dict[str, Any], ArrayLayout]:
    """One layer's params as ``({name: array}, layout)``; ``layout.unflatten`` inverts it.

    Names come from the params' own structure (``LSTMParams.w_ih`` -> ``"w_ih"``; nested keys
    joined by ``_``); absent optional fields (``None``) get no entry. A wrapper stores one
    framework parameter per entry. That is what lets users filter and inspect params by path,
    and what optimizers keeping per-variable state (``nnx.Optimizer``) rely on: each variable
    holds one array, so its state goes through the framework's state round trip unchanged.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    named = {}
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path, simple=True, separator="_")
        named["p_" + name if not name.isidentifier() else name] = leaf
    return named, ArrayLayout(treedef, tuple(named))
