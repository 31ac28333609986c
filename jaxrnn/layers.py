"""Sequence-level layers: one direction, both directions, and deep stacks.

Every layer is a :class:`Layer`, a NamedTuple of pure functions like a cell::

    params = layer.init(key, input_size)
    ys, carry = layer.apply(params, xs, carry=None, *, seq_lengths=None, key=None)
    y_t, carry = layer.step(params, carry, x_t, *, key=None)     # one time step

``apply`` works on ONE sequence ``[T, input]`` and ``step`` on one time step of one example;
batch with ``jax.vmap``. Regularizers (dropout between layers, variational dropout, zoneout)
are active only when a ``key`` is passed; without one the layer is deterministic (evaluation).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import engine
from jaxrnn import scan as scan_lib
from jaxrnn.cells import base, checks

PyTree = Any


class Layer(NamedTuple):
    """A sequence-level object.

    Attributes:
      init: ``(key, input_size) -> params``.
      apply: ``(params, xs, carry=None, *, seq_lengths=None, key=None) -> (ys, carry)``, over
        one whole sequence.
      step: ``(params, carry, x_t, *, key=None) -> (y_t, carry)``, ONE time step of one
        example with the same rules as ``apply`` (what generation and decoding need: the next
        input depends on this output). Unidirectional layers and stacks of them only.
      initial_carry: ``(params, batch_shape=()) -> carry`` of zeros.
      output_size: the width of ``ys``'s last axis.
      name: a short description.
      check_params: ``(params) -> input_size``: checks ``params`` against the layer (structure,
        shapes, floating dtypes; shapes only, so it works under ``jit``) and returns the input
        size they expect. ``apply`` and ``step`` call it; a stack calls it on every layer
        before running any. None for a layer built by hand (nothing is checked).
    """

    init: Callable[..., PyTree]
    apply: Callable[..., Any]
    step: Callable[..., Any]
    initial_carry: Callable[..., PyTree]
    output_size: int
    name: str
    check_params: Optional[Callable[[PyTree], int]] = None


_check_rate = checks.check_rate


def dropout(key, x, rate: float):
    """Inverted dropout: zero with probability ``rate``, scale the rest by 1/(1-rate)."""
    rate = checks.check_rate("rate", rate, where="dropout")
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
    raise checks.InvalidArgumentType(f"expected a jaxrnn Cell or Layer, got "
                                     f"{type(obj).__name__}")


# --------------------------------------------------------------------------- one direction

def layer(cell: base.Cell, *, reverse: bool = False, input_dropout: float = 0.0,
          recurrent_dropout: float = 0.0, zoneout: float = 0.0, unroll: Optional[int] = None,
          parallel: bool = False, method: str = "fused", remat: bool = False,
          newton=None) -> Layer:
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
      method: ``"fused"`` (the fused engine, the default), ``"reference"`` (autodiff of a
        plain ``lax.scan``) or ``"newton"`` (parallel in time), as in :func:`jaxrnn.scan`;
        every regularizer works with all three.
      newton: with ``method="newton"``, its :class:`jaxrnn.NewtonOptions` (or a dict).
      remat: recompute instead of storing most of what the backward pass needs (as in
        :func:`jaxrnn.scan`).

    ``step(params, carry, x_t, *, key=None)`` is the cell's step and output with the same
    rules as ``apply``. Without a key it is deterministic, and a loop of it equals ``apply``
    (zoneout takes its expectation, as in ``apply``). With a key, ``step`` is ``apply`` on a
    one-step sequence: pass a fresh key at every step (split one per step from the sequence's
    key; one key for the whole sequence could not give zoneout a new mask per step without a
    step index). Zoneout then draws a new mask per step, which is what ``apply`` does at every
    step, so a loop of ``step`` trains with the same regularizer. ``input_dropout`` and
    ``recurrent_dropout`` cannot be stepped with a key: their masks are fixed for a whole
    sequence (that is what makes them variational), a per-step key cannot carry them, and
    drawing a new one per step would silently make them ordinary dropout. ``step`` raises
    instead; train such a layer with ``apply``. A ``reverse=True`` layer cannot step: its
    first step reads the sequence's last input.
    """
    return _layer(cell, reverse=reverse, input_dropout=input_dropout,
                  recurrent_dropout=recurrent_dropout, zoneout=zoneout, unroll=unroll,
                  parallel=parallel, method=method, remat=remat, newton=newton)[0]


def _layer(cell, *, reverse, input_dropout, recurrent_dropout, zoneout, unroll, parallel,
           method, remat, newton=None):
    """:func:`layer` and its loop ``run(params, xs, carry, seq_lengths, key, reverse)``, whose
    direction may be traced: :func:`bidirectional` vmaps one ``run`` over both directions."""
    scan_lib.check_cell(cell, "layer")
    reverse = scan_lib.check_bool("reverse", reverse)
    p_in = _check_rate("input_dropout", input_dropout)
    p_rec = _check_rate("recurrent_dropout", recurrent_dropout)
    p_zone = _check_rate("zoneout", zoneout)
    unroll = scan_lib.check_unroll(unroll)
    method = scan_lib.check_method(method)
    remat = scan_lib.check_bool("remat", remat)
    parallel = scan_lib.check_parallel(cell, parallel)
    newton = scan_lib.check_solver(cell, method, newton, unroll=unroll, parallel=parallel,
                                   remat=remat, where="layer")
    if parallel and (p_rec or p_zone):
        raise checks.InvalidArgumentValue(
            "parallel=True supports input_dropout only (no recurrent dropout or zoneout: they "
            "break the linear recurrence)")
    name = f"{'reverse ' if reverse else ''}{cell.name}({cell.hidden_size})"

    def zoneout_masks(key, carry, steps):
        """True where a unit keeps its previous value; ``steps`` leading axes (() or (T,))."""
        leaves, treedef = jax.tree.flatten(carry)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [
            jax.random.bernoulli(k, p_zone, steps + jnp.shape(leaf))
            for k, leaf in zip(keys, leaves)])

    def check_params(params):
        return checks.check_params(cell, params)

    def run(params, xs, carry, seq_lengths, key, rev):
        xs = jnp.asarray(xs)
        lengths = scan_lib.check_inputs(cell, params, xs, carry, seq_lengths)
        T = xs.shape[0]
        expected = cell.carry_for_input(params, xs[0])
        if carry is None:
            carry = expected
        rec_mask = zmasks = None
        if key is not None:
            k_in, k_rec, k_zone = jax.random.split(key, 3)
            if p_in:
                keep = jax.random.bernoulli(k_in, 1.0 - p_in, xs.shape[1:])
                xs = jnp.where(keep, xs / (1.0 - p_in), jnp.zeros((), xs.dtype)).astype(xs.dtype)
            if p_rec:
                h = cell.output(expected)
                keep = jax.random.bernoulli(k_rec, 1.0 - p_rec, jnp.shape(h))
                rec_mask = jnp.where(keep, jnp.asarray(1.0 / (1.0 - p_rec), h.dtype),
                                     jnp.zeros((), h.dtype))
            if p_zone:
                zmasks = zoneout_masks(k_zone, expected, (T,))
        return scan_lib.run(cell, params, xs, carry, seq_lengths=lengths, reverse=rev,
                            unroll=unroll, parallel=parallel, method=method, remat=remat,
                            newton=newton,
                            rec_mask=rec_mask,
                            zoneout_rate=0.0 if zmasks is not None else p_zone,
                            zoneout_masks=zmasks)

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None):
        return run(params, xs, carry, seq_lengths, key, reverse)

    def step(params, carry, x_t, *, key=None):
        if reverse:
            raise ValueError(f"{name}: a reverse=True layer cannot step: its first step reads "
                             f"the sequence's last input; run it with apply")
        x_t = jnp.asarray(x_t)
        input_size = checks.check_params(cell, params)
        checks.check_step_input(cell, params, x_t, input_size=input_size)
        if carry is None:
            raise checks.InvalidArgumentType(
                f"{name}: step needs a carry (initial_carry(params) for zeros)")
        checks.check_carry(cell, params, carry, x_t)
        checks.debug_check_finite(x_t, "x_t")
        checks.debug_check_finite(params, "params")
        checks.debug_check_finite(carry, "carry")
        expected = cell.carry_for_input(params, x_t)
        zmask = None
        if key is not None:
            if p_in or p_rec:
                raise ValueError(
                    f"{name}: step with a key cannot apply input_dropout / recurrent_dropout: "
                    f"their masks are fixed for a whole sequence (variational), which a "
                    f"per-step key cannot carry; train this layer with apply, or step without "
                    f"a key (evaluation)")
            if p_zone:
                zmask = zoneout_masks(jax.random.split(key, 3)[2], expected, ())
        # the same step as the time loops (scan._reference): the cell's recurrence plus zoneout
        rec = cell.recurrence
        _, ws, pw = rec.split(params)
        new = engine.advance(rec.update, pw, carry, cell.project(params, x_t),
                             lambda k, a: rec.linear(a, ws[k]),
                             zoneout_rate=0.0 if zmask is not None else p_zone,
                             zoneout_mask=zmask)
        return cell.output(new), new

    lay = Layer(init=cell.init, apply=apply, step=step, initial_carry=cell.initial_carry,
                output_size=cell.output_size, name=name, check_params=check_params)
    return lay, run


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
        raise checks.InvalidArgumentType(
            "bidirectional() takes jaxrnn Cells (pass dropout/zoneout options as keyword "
            "arguments)")
    if "reverse" in layer_options:
        raise checks.InvalidArgumentValue(
            "bidirectional() sets the direction itself; do not pass reverse=")
    if isinstance(merge, str):
        if merge not in _MERGES:
            raise checks.InvalidArgumentValue(
                f"unknown merge mode {merge!r}; choose one of {sorted(_MERGES)} or pass a "
                f"function (y_fw, y_bw) -> y")
        merge_fn = _MERGES[merge]
    elif callable(merge):
        merge_fn = merge
    else:
        raise checks.InvalidArgumentType(
            f"merge must be a string ({', '.join(sorted(_MERGES))}) or a function "
            f"(y_fw, y_bw) -> y, got {merge!r}")
    shared = cell_bw is None or (cell_bw.name == cell.name and cell_bw.options == cell.options)
    bw = cell if cell_bw is None else cell_bw
    # layer()'s signature gives the defaults and rejects unknown options
    bound = inspect.signature(layer).bind(cell, **layer_options)
    bound.apply_defaults()
    options = {k: v for k, v in bound.arguments.items() if k not in ("cell", "reverse")}
    fw_layer, run = _layer(cell, reverse=False, **options)
    bw_layer = layer(bw, reverse=True, **options)
    if cell.output_size != bw.output_size and merge != "concat":
        raise checks.InvalidArgumentValue(f"merge {merge!r} needs equal output sizes, got {cell.output_size} "
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

    def check_params(params):
        if shared:
            return checks.check_params(
                cell, params, what="bidirectional params", leading=(2,))
        if not isinstance(params, tuple) or checks._is_namedtuple(params) or len(params) != 2:
            raise checks.InvalidArgumentType(
                f"bidirectional params must be a tuple (params_fw, params_bw) for cells of "
                f"two kinds ({checks.describe(cell)} and {checks.describe(bw)}), got "
                f"{type(params).__name__}")
        with checks.within("bidirectional forward"):
            size_fw = checks.check_params(cell, params[0])
        with checks.within("bidirectional backward"):
            size_bw = checks.check_params(bw, params[1])
        if size_fw != size_bw:
            raise checks.InvalidArgumentValue(
                f"bidirectional params: the forward params expect input_size={size_fw}, the "
                f"backward ones input_size={size_bw}")
        return size_fw

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None):
        if carry is not None and not (isinstance(carry, tuple) and len(carry) == 2
                                      and not hasattr(carry, "_fields")):
            raise checks.InvalidArgumentType(
                f"bidirectional carry must be a tuple (carry_fw, carry_bw), got "
                f"{type(carry).__name__}")
        input_size = check_params(params)
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        c_fw, c_bw = (None, None) if carry is None else carry
        if shared:
            p_fw = jax.tree.map(lambda a: a[0], params)
            xs = jnp.asarray(xs)
            checks.check_sequence(cell, p_fw, xs, input_size=input_size)
            checks.check_seq_lengths(seq_lengths, xs.shape[0])
            if carry is not None:
                x_t = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
                p_abs = checks._abstract(params, 1)
                with checks.within("bidirectional forward"):
                    checks.check_carry(cell, p_abs, c_fw, x_t)
                with checks.within("bidirectional backward"):
                    checks.check_carry(cell, p_abs, c_bw, x_t)
            if carry is None:
                c = cell.carry_for_input(p_fw, xs[0])
                c_fw = c_bw = c
            stacked_carry = jax.tree.map(lambda a, b: jnp.stack([a, b]), c_fw, c_bw)
            rev = jnp.array([False, True])
            if key is None:
                ys, cs = jax.vmap(lambda p, c, r: run(p, xs, c, seq_lengths, None, r))(
                    params, stacked_carry, rev)
            else:
                ys, cs = jax.vmap(lambda p, c, r, k: run(p, xs, c, seq_lengths, k, r))(
                    params, stacked_carry, rev, jnp.stack(keys))
            y_fw, y_bw = ys[0], ys[1]
            carries = (jax.tree.map(lambda a: a[0], cs), jax.tree.map(lambda a: a[1], cs))
        else:
            y_fw, cf = fw_layer.apply(params[0], xs, c_fw, seq_lengths=seq_lengths, key=keys[0])
            y_bw, cb = bw_layer.apply(params[1], xs, c_bw, seq_lengths=seq_lengths, key=keys[1])
            carries = (cf, cb)
        return merge_fn(y_fw, y_bw), carries

    name = (f"bidirectional({fw_layer.name}, {bw_layer.name}, "
            f"{merge if isinstance(merge, str) else 'custom'})")

    def step(params, carry, x_t, *, key=None):
        raise checks.InvalidArgumentValue(f"{name} cannot step: its backward direction starts from the "
                         f"sequence's last input, so step t would need the inputs after t; "
                         f"run it with apply over the whole sequence")

    return Layer(init=init, apply=apply, step=step, initial_carry=initial_carry,
                 output_size=int(out_size), name=name, check_params=check_params)


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

    Params and carries are tuples with one entry per layer. ``step(params, carry, x_t, *,
    key=None)`` runs every layer for one time step with the same dropout and residual rules
    as ``apply`` (and the same split of ``key`` among the layers), so without a key a loop of
    it equals ``apply``. With a key it is ``apply`` on a one-step sequence: the dropout
    between layers draws a new mask per step, exactly as ``apply`` draws one per (step,
    unit); pass a fresh key at every step. Each layer's own rules are those of its ``step``
    (see :func:`layer`); a stack holding a bidirectional or reverse layer cannot step.
    """
    if isinstance(layers, (base.Cell, Layer)) or not isinstance(layers, (list, tuple)):
        raise checks.InvalidArgumentType(f"stack() takes a list of cells or layers, got "
                                         f"{type(layers).__name__}")
    layers = tuple(_as_layer(l) for l in layers)
    if not layers:
        raise checks.InvalidArgumentValue("stack() needs at least one layer")
    rate = checks.check_rate("dropout", dropout, where="stack")
    residual = checks.check_bool("residual", residual, where="stack")

    def init(key, input_size: int):
        keys = jax.random.split(key, len(layers))
        params, size = [], input_size
        for k, l in zip(keys, layers):
            params.append(l.init(k, size))
            size = l.output_size
        return tuple(params)

    def initial_carry(params, batch_shape=()):
        return tuple(l.initial_carry(p, batch_shape) for l, p in zip(layers, params))

    def check_tuple(tree, what):
        n = len(layers)
        if not isinstance(tree, tuple) or checks._is_namedtuple(tree):
            raise checks.InvalidArgumentType(
                f"stack of {n} layers needs a tuple of {n} {what} (one per layer), got "
                f"{type(tree).__name__}")
        if len(tree) != n:
            raise checks.InvalidArgumentValue(
                f"stack of {n} layers needs a tuple of {n} {what}, got {len(tree)}")

    def check_params(params):
        """Every layer's params, before any layer runs; returns the stack's input size."""
        check_tuple(params, "params")
        size = None
        for i, (l, p) in enumerate(zip(layers, params)):
            if l.check_params is None:
                continue
            with checks.within(f"stack layer {i}"):
                got = l.check_params(p)
            if i == 0:
                size = got
            elif got != layers[i - 1].output_size:
                raise checks.InvalidArgumentValue(
                    f"stack layer {i}: params expect input_size={got}, but layer {i - 1} "
                    f"({layers[i - 1].name}) outputs {layers[i - 1].output_size} features")
        return size

    def check(params, carry, x=None, what="xs"):
        size = check_params(params)
        if carry is not None:
            check_tuple(carry, "carries")
        if x is not None and size is not None:
            shape = jnp.shape(x)
            if not shape or shape[-1] != size:
                raise checks.InvalidArgumentValue(
                    f"stack: {what} has shape {tuple(shape)}, but layer 0's params expect "
                    f"input_size={size} features on its last axis")

    def split_keys(key):
        """Layer ``i`` gets key ``2i``; the dropout after it gets ``2i + 1`` (apply and step)."""
        if key is None:
            return [None] * (2 * len(layers))
        return list(jax.random.split(key, 2 * len(layers)))

    def between(i, ys, h, key, valid=None):
        """The stack's rules after layer ``i`` (output ``ys``, input ``h``), shared by ``apply``
        and ``step``: the residual connection where shapes match (padding kept at zero), then
        dropout after every layer but the last."""
        if residual and ys.shape == h.shape:
            res = h if valid is None else jnp.where(valid, h, jnp.zeros((), h.dtype))
            ys = ys + res.astype(ys.dtype)
        if i < len(layers) - 1:
            ys = _dropout(key, ys, rate)
        return ys

    def apply(params, xs, carry=None, *, seq_lengths=None, key=None):
        h = jnp.asarray(xs)
        check(params, carry, h)
        if carry is None:
            carry = (None,) * len(layers)
        keys = split_keys(key)
        valid = None
        if seq_lengths is not None:
            if h.ndim == 0:
                raise checks.InvalidArgumentValue(f"stack: xs must be a sequence, got a scalar")
            lengths = checks.check_seq_lengths(seq_lengths, h.shape[0])
            steps = jnp.arange(h.shape[0], dtype=jnp.int32)
            valid = (steps < lengths).reshape((-1,) + (1,) * (h.ndim - 1))
        new_carry = []
        for i, (l, p, c) in enumerate(zip(layers, params, carry)):
            with checks.within(f"stack layer {i}"):
                ys, c_out = l.apply(p, h, c, seq_lengths=seq_lengths, key=keys[2 * i])
            h = between(i, ys, h, keys[2 * i + 1], valid)
            new_carry.append(c_out)
        return h, tuple(new_carry)

    def step(params, carry, x_t, *, key=None):
        h = jnp.asarray(x_t)
        if carry is None:
            raise checks.InvalidArgumentType(
                "stack step needs a carry (initial_carry(params) for zeros)")
        check(params, carry, h, "x_t")
        keys = split_keys(key)
        new_carry = []
        for i, (l, p, c) in enumerate(zip(layers, params, carry)):
            with checks.within(f"stack layer {i}"):
                y, c_out = l.step(p, c, h, key=keys[2 * i])
            h = between(i, y, h, keys[2 * i + 1])
            new_carry.append(c_out)
        return h, tuple(new_carry)

    return Layer(init=init, apply=apply, step=step, initial_carry=initial_carry,
                 output_size=layers[-1].output_size,
                 name="stack(" + ", ".join(l.name for l in layers) + ")",
                 check_params=check_params)
