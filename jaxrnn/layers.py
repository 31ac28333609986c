"""Sequence-level layers: one direction, both directions, and deep stacks.

Every layer is a :class:`Layer`, a NamedTuple of pure functions like a cell::

    params = layer.init(key, input_size)
    ys, carry = layer.apply(params, xs, carry=None, *, seq_lengths=None, key=None)

``apply`` works on ONE sequence ``[T, input]``; batch with ``jax.vmap``. Regularizers
(dropout between layers, variational dropout, zoneout) are active only when a ``key``
is passed; without one the layer is deterministic (evaluation).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import scan as scan_lib
from jaxrnn.cells import base

PyTree = Any


class Layer(NamedTuple):
    """A sequence-level object.

    Attributes:
      init: ``(key, input_size) -> params``.
      apply: ``(params, xs, carry=None, *, seq_lengths=None, key=None) -> (ys, carry)``.
      initial_carry: ``(params, batch_shape=()) -> carry`` of zeros.
      output_size: the width of ``ys``'s last axis.
      name: a short description.
    """

    init: Callable[..., PyTree]
    apply: Callable[..., Any]
    initial_carry: Callable[..., PyTree]
    output_size: int
    name: str


def _check_rate(name: str, p) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


def dropout(key, x, rate: float):
    """Inverted dropout: zero with probability ``rate``, scale the rest by 1/(1-rate)."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, jnp.shape(x))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)


_dropout = dropout  # stack() has an argument of the same name


def _as_layer(obj) -> Layer:
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, base.Cell):
        return layer(obj)
    raise TypeError(f"expected a jaxrnn Cell or Layer, got {type(obj).__name__}")


# --------------------------------------------------------------------------- one direction

def layer(cell: base.Cell, *, reverse: bool = False, input_dropout: float = 0.0,
          recurrent_dropout: float = 0.0, zoneout: float = 0.0, unroll: Optional[int] = None,
          parallel: bool = False, method: str = "fused", remat: bool = False) -> Layer:
    """One recurrent layer in one direction, with the regularizers over time.

    Args:
      cell: the cell to run.
      reverse: read the (valid part of the) sequence backwards.
      input_dropout: variational dropout on the inputs: one mask for every time step
        (Gal & Ghahramani 2016).
      recurrent_dropout: variational dropout on the state where it enters the recurrent
        weights, one mask for every step.
      zoneout: each unit of the carry keeps its previous value with this probability
        during training, and takes the expectation at evaluation (Krueger et al. 2017).
      unroll: time steps per loop iteration (None: the backend's measured plan).
      parallel: associative scan over time (cells with ``log_coefficients``: ``min_gru``,
        ``min_lstm``).
      method: ``"fused"`` (the fused engine, the default) or ``"reference"`` (autodiff of a
        plain ``lax.scan``), as in :func:`jaxrnn.scan`; every regularizer works with both.
      remat: recompute instead of storing most of what the backward pass needs (as in
        :func:`jaxrnn.scan`).
    """
    if not isinstance(cell, base.Cell):
        raise TypeError(f"layer() takes a jaxrnn Cell, got {type(cell).__name__}")
    reverse = scan_lib.check_bool("reverse", reverse)
    p_in = _check_rate("input_dropout", input_dropout)
    p_rec = _check_rate("recurrent_dropout", recurrent_dropout)
    p_zone = _check_rate("zoneout", zoneout)
    unroll = scan_lib.check_unroll(unroll)
    method = scan_lib.check_method(method)
    remat = scan_lib.check_bool("remat", remat)
    parallel = scan_lib.check_parallel(cell, parallel)
    if parallel and (p_rec or p_zone):
        raise ValueError("parallel=True supports input_dropout only (no recurrent "
                         "dropout or zoneout: they break the linear recurrence)")

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None, _reverse=None):
        xs = jnp.asarray(xs)
        scan_lib.check_sequence(cell, params, xs)
        T = xs.shape[0]
        lengths = scan_lib.check_seq_lengths(seq_lengths, T)
        expected = cell.carry_for_input(params, xs[0])
        if carry is None:
            carry = expected
        else:
            scan_lib.check_carry(cell.name, jax.eval_shape(lambda: expected), carry)
        rec_mask = zmasks = None
        if key is not None:
            k_in, k_rec, k_zone = jax.random.split(key, 3)
            if p_in:
                keep = jax.random.bernoulli(k_in, 1.0 - p_in, xs.shape[1:])
                xs = jnp.where(keep, xs / (1.0 - p_in), jnp.zeros((), xs.dtype)).astype(xs.dtype)
            if p_rec:
                h_shape = jnp.shape(cell.output(expected))
                rec_mask = jax.random.bernoulli(k_rec, 1.0 - p_rec, h_shape) / (1.0 - p_rec)
            if p_zone:
                leaves, treedef = jax.tree.flatten(expected)
                keys = jax.random.split(k_zone, len(leaves))
                zmasks = jax.tree.unflatten(treedef, [
                    jax.random.bernoulli(k, p_zone, (T,) + jnp.shape(leaf))
                    for k, leaf in zip(keys, leaves)])
        rev = reverse if _reverse is None else _reverse
        return scan_lib.run(cell, params, xs, carry, lengths=lengths, reverse=rev,
                            unroll=unroll, parallel=parallel, method=method, remat=remat,
                            rec_mask=rec_mask,
                            zoneout_rate=0.0 if zmasks is not None else p_zone,
                            zoneout_masks=zmasks)

    return Layer(init=cell.init, apply=apply, initial_carry=cell.initial_carry,
                 output_size=cell.output_size,
                 name=f"{'reverse ' if reverse else ''}{cell.name}({cell.hidden_size})")


# --------------------------------------------------------------------------- both directions

_MERGES = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: (a + b) / 2,
}


def bidirectional(cell: base.Cell, cell_bw: base.Cell = None, merge: Union[str, Callable] = "concat",
                  **layer_options) -> Layer:
    """Runs a forward and a backward layer over the same sequence and merges their outputs.

    With ``cell_bw=None`` (or a backward cell of the same kind and options) the two
    directions' parameters are stacked on a leading axis of size 2 and both run in one
    ``vmap`` over the direction axis; otherwise params are a tuple ``(fw, bw)``. The carry
    is always a tuple ``(carry_fw, carry_bw)``. Under padding the backward direction
    reads the real last token first.

    Args:
      cell, cell_bw: the forward and backward cells.
      merge: ``"concat"``, ``"sum"``, ``"mean"`` or a function ``(y_fw, y_bw) -> y``.
      **layer_options: options of :func:`layer` for both directions (dropout, zoneout, unroll).
    """
    if not isinstance(cell, base.Cell) or (cell_bw is not None and not isinstance(cell_bw, base.Cell)):
        raise TypeError("bidirectional() takes jaxrnn Cells (pass dropout/zoneout options as "
                        "keyword arguments)")
    if "reverse" in layer_options:
        raise ValueError("bidirectional() sets the direction itself; do not pass reverse=")
    if isinstance(merge, str):
        if merge not in _MERGES:
            raise ValueError(f"unknown merge mode {merge!r}; choose one of {sorted(_MERGES)} "
                             f"or pass a function (y_fw, y_bw) -> y")
        merge_fn = _MERGES[merge]
    elif callable(merge):
        merge_fn = merge
    else:
        raise ValueError(f"merge must be a string or a function, got {merge!r}")
    shared = cell_bw is None or (cell_bw.name == cell.name and cell_bw.options == cell.options)
    bw = cell if cell_bw is None else cell_bw
    fw_layer = layer(cell, **layer_options)
    bw_layer = layer(bw, reverse=True, **layer_options)
    if cell.output_size != bw.output_size and merge != "concat":
        raise ValueError(f"merge {merge!r} needs equal output sizes, got {cell.output_size} "
                         f"and {bw.output_size}")
    out_size = jax.eval_shape(merge_fn, jax.ShapeDtypeStruct((cell.output_size,), jnp.float32),
                              jax.ShapeDtypeStruct((bw.output_size,), jnp.float32)).shape[-1]

    def init(key, input_size: int):
        k_fw, k_bw = jax.random.split(key)
        if shared:
            return jax.vmap(lambda k: cell.init(k, input_size))(jnp.stack([k_fw, k_bw]))
        return (cell.init(k_fw, input_size), bw.init(k_bw, input_size))

    def initial_carry(params, batch_shape=()):
        if shared:
            p_fw = jax.tree.map(lambda a: a[0], params)
            c = cell.initial_carry(p_fw, batch_shape)
            return (c, c)
        return (cell.initial_carry(params[0], batch_shape), bw.initial_carry(params[1], batch_shape))

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None):
        if carry is not None and not (isinstance(carry, tuple) and len(carry) == 2
                                      and not hasattr(carry, "_fields")):
            raise ValueError("bidirectional carry must be a tuple (carry_fw, carry_bw)")
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        c_fw, c_bw = (None, None) if carry is None else carry
        if shared:
            p_fw = jax.tree.map(lambda a: a[0], params)
            xs = jnp.asarray(xs)
            scan_lib.check_sequence(cell, p_fw, xs)
            if carry is None:
                c = cell.carry_for_input(p_fw, xs[0])
                c_fw = c_bw = c
            stacked_carry = jax.tree.map(lambda a, b: jnp.stack([a, b]), c_fw, c_bw)
            rev = jnp.array([False, True])
            if key is None:
                run = lambda p, c, r: fw_layer.apply(p, xs, c, seq_lengths=seq_lengths, _reverse=r)
                ys, cs = jax.vmap(run)(params, stacked_carry, rev)
            else:
                run = lambda p, c, r, k: fw_layer.apply(p, xs, c, seq_lengths=seq_lengths,
                                                        key=k, _reverse=r)
                ys, cs = jax.vmap(run)(params, stacked_carry, rev, jnp.stack(keys))
            y_fw, y_bw = ys[0], ys[1]
            carries = (jax.tree.map(lambda a: a[0], cs), jax.tree.map(lambda a: a[1], cs))
        else:
            y_fw, cf = fw_layer.apply(params[0], xs, c_fw, seq_lengths=seq_lengths, key=keys[0])
            y_bw, cb = bw_layer.apply(params[1], xs, c_bw, seq_lengths=seq_lengths, key=keys[1])
            carries = (cf, cb)
        return merge_fn(y_fw, y_bw), carries

    return Layer(init=init, apply=apply, initial_carry=initial_carry, output_size=int(out_size),
                 name=f"bidirectional({fw_layer.name}, {bw_layer.name}, {merge if isinstance(merge, str) else 'custom'})")


# --------------------------------------------------------------------------- deep stacks

def stack(layers: Sequence[Union[base.Cell, Layer]], *, dropout: float = 0.0,
          residual: bool = False) -> Layer:
    """A deep network: each layer reads the previous one's outputs.

    Args:
      layers: cells (each becomes ``layer(cell)``) or layers (``bidirectional(...)``,
        ``layer(cell, zoneout=...)``, another stack).
      dropout: dropout on the outputs of every layer but the last (as PyTorch's
        ``nn.LSTM(dropout=...)``), active only when ``apply`` gets a ``key``.
      residual: add each layer's input to its output where their sizes match.

    Params and carries are tuples with one entry per layer.
    """
    layers = tuple(_as_layer(l) for l in layers)
    if not layers:
        raise ValueError("stack() needs at least one layer")
    rate = _check_rate("dropout", dropout)

    def init(key, input_size: int):
        keys = jax.random.split(key, len(layers))
        params, size = [], input_size
        for k, l in zip(keys, layers):
            params.append(l.init(k, size))
            size = l.output_size
        return tuple(params)

    def initial_carry(params, batch_shape=()):
        return tuple(l.initial_carry(p, batch_shape) for l, p in zip(layers, params))

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None):
        if not isinstance(params, tuple) or len(params) != len(layers):
            raise ValueError(f"stack of {len(layers)} layers needs a tuple of {len(layers)} params")
        if carry is None:
            carry = (None,) * len(layers)
        elif not isinstance(carry, tuple) or len(carry) != len(layers):
            raise ValueError(f"stack of {len(layers)} layers needs a tuple of {len(layers)} carries")
        keys = [None] * (2 * len(layers)) if key is None else list(jax.random.split(key, 2 * len(layers)))
        h = jnp.asarray(xs)
        valid = None
        if seq_lengths is not None:
            valid = (jnp.arange(h.shape[0]) < jnp.asarray(seq_lengths)).reshape(
                (-1,) + (1,) * (h.ndim - 1))
        new_carry = []
        for i, (l, p, c) in enumerate(zip(layers, params, carry)):
            ys, c_out = l.apply(p, h, c, seq_lengths=seq_lengths, key=keys[2 * i])
            if residual and ys.shape == h.shape:
                res = h if valid is None else jnp.where(valid, h, jnp.zeros((), h.dtype))
                ys = ys + res.astype(ys.dtype)
            if i < len(layers) - 1:
                ys = _dropout(keys[2 * i + 1], ys, rate)
            new_carry.append(c_out)
            h = ys
        return h, tuple(new_carry)

    return Layer(init=init, apply=apply, initial_carry=initial_carry,
                 output_size=layers[-1].output_size,
                 name="stack(" + ", ".join(l.name for l in layers) + ")")
