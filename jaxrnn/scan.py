"""The time loop: one sequence, any cell, with padding, reversal and a parallel path.

``scan`` unrolls a cell over one sequence ``xs`` of shape ``[T, input]`` with
``jax.lax.scan``; batches are ``jax.vmap(jr.scan, in_axes=(None, None, 0))``.

Semantics, shared by every layer built on it:

- ``seq_lengths=n`` (a scalar per sequence; the sequence is right-padded): outputs at
  ``t >= n`` are zero and the returned carry is the carry after step ``n``.
- ``reverse=True`` reads the valid part backwards: step 1 reads ``xs[n-1]``, the last
  step reads ``xs[0]``; ``ys[t]`` stays aligned with ``xs[t]`` (as PyTorch's backward
  direction and ``lax.scan(reverse=True)``); padding stays at the end.

Two loops run the same step (the cell's :class:`~jaxrnn.cells.base.Recurrence`, one
definition): ``method="fused"`` (the default), the fused engine of :mod:`jaxrnn.engine` with
its hand-derived backward pass, and ``method="reference"``, the plain ``lax.scan`` that JAX's
autodiff differentiates (the test oracle, and the loop to read when learning).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import engine
from jaxrnn.cells import base

PyTree = Any

# A log-space "zero" that stays finite, so that gradients through logaddexp stay finite.
_LOG_ZERO = -1e30


# --------------------------------------------------------------------------- checks

def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def x_rank(cell: base.Cell) -> int:
    """The rank of one step's input ``x_t`` for this cell (1, or 1 + spatial dims)."""
    return 1 + cell.spatial_dims


def check_sequence(cell: base.Cell, params, xs, what: str = "xs") -> None:
    """Checks the rank and feature size of one sequence ``xs`` before any tracing work."""
    shape = jnp.shape(xs)
    want = 1 + x_rank(cell)
    if len(shape) != want:
        layout = "[T, input]" if want == 2 else f"[T, {', '.join(['spatial'] * (want - 2))}, channels]"
        raise ValueError(
            f"{cell.name}: {what} must be one sequence of shape {layout} (rank {want}), got "
            f"shape {tuple(shape)}; batch with jax.vmap(jr.scan, in_axes=(None, None, 0))")
    if shape[0] == 0:
        raise ValueError(f"{cell.name}: {what} has no time steps (shape {tuple(shape)})")
    base.check_input(cell.name, xs, cell.input_size(params), what=what)


def check_seq_lengths(seq_lengths, num_steps: int, batch_shape=()):
    """Validates ``seq_lengths`` (shape ``batch_shape``, integers in ``[0, num_steps]``).

    Values are checked when they are concrete (outside ``jit``/``vmap``); under tracing
    only the shape and dtype can be checked, and out-of-range lengths are clipped.
    Returns the lengths as an int32 array, or None.
    """
    if seq_lengths is None:
        return None
    lengths = jnp.asarray(seq_lengths)
    if tuple(lengths.shape) != tuple(batch_shape):
        raise ValueError(
            f"seq_lengths must have shape {tuple(batch_shape)} (one length per sequence), "
            f"got shape {tuple(lengths.shape)}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"seq_lengths must be integers, got dtype {lengths.dtype}")
    if _is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > num_steps):
            raise ValueError(
                f"seq_lengths must lie in [0, {num_steps}] (the number of time steps), got "
                f"values from {values.min()} to {values.max()}")
    return lengths.astype(jnp.int32)


def check_carry(cell_name: str, expected, carry) -> None:
    """Raises if ``carry`` does not have the structure, shapes and dtypes of ``expected``."""
    exp_def = jax.tree.structure(expected)
    got_def = jax.tree.structure(carry)
    if exp_def != got_def:
        raise ValueError(f"{cell_name}: carry has structure {got_def}, expected {exp_def}")
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(carry)):
        if tuple(jnp.shape(e)) != tuple(jnp.shape(g)):
            raise ValueError(f"{cell_name}: carry leaf has shape {tuple(jnp.shape(g))}, expected "
                             f"{tuple(jnp.shape(e))} (structure {exp_def})")
        if jnp.result_type(g) != jnp.result_type(e):
            raise TypeError(f"{cell_name}: carry leaf has dtype {jnp.result_type(g)}, expected "
                            f"{jnp.result_type(e)}")


# --------------------------------------------------------------------------- public scan

METHODS = ("fused", "reference")


def check_method(method) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_unroll(unroll):
    if unroll is None:
        return None
    if isinstance(unroll, bool) or not isinstance(unroll, (int, np.integer)) or unroll < 1:
        raise ValueError(f"unroll must be a positive integer or None, got {unroll!r}")
    return int(unroll)


def check_parallel(cell: base.Cell, parallel) -> bool:
    parallel = check_bool("parallel", parallel)
    if parallel and cell.log_coefficients is None:
        raise ValueError(f"parallel=True needs a cell whose state follows a linear recurrence "
                         f"(min_gru, min_lstm); the {cell.name!r} cell does not")
    return bool(parallel)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_reverse(reverse):
    if isinstance(reverse, (bool, np.bool_)):
        return bool(reverse)
    if isinstance(reverse, jax.Array) and reverse.shape == () and reverse.dtype == jnp.bool_:
        return reverse            # traced direction (bidirectional layers vmap over it)
    raise TypeError(f"reverse must be a bool, got {reverse!r}")


def scan(cell: base.Cell, params, xs, carry=None, *, seq_lengths=None, reverse=False,
         unroll: Optional[int] = None, parallel: bool = False, method: str = "fused",
         remat: bool = False):
    """Runs ``cell`` over one sequence ``xs`` ``[T, input]``; returns ``(ys, carry)``.

    Args:
      cell: a :class:`jaxrnn.Cell` (``jr.lstm(...)``, ``jr.gru(...)``, ...).
      params: the cell's parameters.
      xs: one sequence, ``[T, input]`` (``[T, *spatial, C]`` for ``conv_lstm``).
      carry: the initial carry; zeros when None.
      seq_lengths: a scalar integer, the valid length of a right-padded sequence.
      reverse: read the valid part backwards (``ys`` stays aligned with ``xs``).
      unroll: time steps per loop iteration; None: the backend's measured plan.
      parallel: for cells with ``log_coefficients`` (``min_gru``, ``min_lstm``), a log-space
        associative scan over time instead of a sequential loop (same numbers, O(log T) depth).
      method: ``"fused"`` (the default: the fused engine, hand-derived backward pass) or
        ``"reference"`` (autodiff of a plain ``lax.scan``). Same numbers; the fused engine
        supports reverse-mode autodiff (``grad``, ``vjp``) but not forward mode (``jvp``,
        ``jacfwd``), for which ``"reference"`` is there.
      remat: keep less for the backward pass and recompute the rest (``"fused"``: the carry
        entering every chunk of about sqrt(T) steps; ``"reference"``: the carry of every step).

    Returns:
      ``ys`` of shape ``[T, output]`` (zero past ``seq_lengths``) and the final carry.
    """
    method = check_method(method)
    unroll = check_unroll(unroll)
    parallel = check_parallel(cell, parallel)
    reverse = check_reverse(reverse)
    remat = check_bool("remat", remat)
    xs = jnp.asarray(xs)
    check_sequence(cell, params, xs)
    lengths = check_seq_lengths(seq_lengths, xs.shape[0])
    expected = cell.carry_for_input(params, xs[0])
    if carry is None:
        carry = expected
    else:
        check_carry(cell.name, jax.eval_shape(lambda: expected), carry)
    return run(cell, params, xs, carry, seq_lengths=lengths, reverse=reverse, unroll=unroll,
               parallel=parallel, method=method, remat=remat)


# --------------------------------------------------------------------------- the loops

def _permute(tree, perm, flip):
    if tree is None or (perm is None and not flip):
        return tree
    if flip:
        return jax.tree.map(lambda a: jnp.flip(a, 0), tree)
    return jax.tree.map(lambda a: jnp.take(a, perm, axis=0), tree)


def run(cell: base.Cell, params, xs, carry, *, seq_lengths=None, reverse=False, unroll=None,
        parallel=False, method="fused", remat=False, rec_mask=None, zoneout_rate=0.0,
        zoneout_masks=None):
    """The loop behind ``scan`` and the layers, with no argument checking.

    ``rec_mask`` multiplies the state entering the recurrent weights at every step
    (variational recurrent dropout). Zoneout: with ``zoneout_masks`` (a carry-shaped
    pytree of booleans with a leading time axis aligned with ``xs``; True keeps the previous
    value) the carry is zoned out at random; without masks and ``zoneout_rate > 0`` each unit
    takes its expectation ``p * previous + (1 - p) * new`` (evaluation).
    """
    T, lengths = xs.shape[0], seq_lengths
    carry = engine.like_inputs(carry, xs, params)
    # A static reverse without padding is a flip; anything else is a permutation of time.
    flip = isinstance(reverse, bool) and reverse and lengths is None
    perm = None if flip else engine.time_permutation(T, lengths, reverse)
    if parallel:
        xs_p = _permute(xs, perm, flip)
        ys, carry = _parallel_linear(cell, params, xs_p, carry, lengths)
        return _permute(ys, perm, flip), carry
    if method == "reference":
        return _reference(cell, params, xs, carry, lengths=lengths, perm=perm, flip=flip,
                          unroll=unroll or 1, remat=remat, rec_mask=rec_mask,
                          zoneout_rate=zoneout_rate, zoneout_masks=zoneout_masks)
    plan = engine.default_plan()
    if unroll is not None:
        plan = plan._replace(unroll=unroll, unroll_bwd=unroll)
    ys, carry = engine.run(cell, params, _permute(xs, perm, flip), carry, seq_lengths=lengths,
                           rec_mask=rec_mask, zoneout_rate=zoneout_rate,
                           zoneout_masks=_permute(zoneout_masks, perm, flip), plan=plan,
                           remat=remat)
    return _permute(ys, perm, flip), carry


def _reference(cell, params, xs, carry, *, lengths, perm, flip, unroll, remat, rec_mask,
               zoneout_rate, zoneout_masks):
    """The plain loop: ``lax.scan`` of the step, differentiated by JAX's autodiff."""
    rec = cell.recurrence
    _, ws, pw = rec.split(params)

    def mm(k, a):
        return rec.linear(a, ws[k])

    px = _permute(cell.project(params, xs), perm, False)
    zoneout_masks = _permute(zoneout_masks, perm, False)

    def body(c, inp):
        px_t, t, zmask = inp
        ok = None if lengths is None else t < lengths
        new = engine.advance(rec.update, pw, c, px_t, mm, ok=ok, rec_mask=rec_mask,
                             zoneout_rate=zoneout_rate, zoneout_mask=zmask)
        y = cell.output(new)
        if ok is not None:
            y = jnp.where(ok, y, jnp.zeros((), y.dtype))
        return new, y

    if remat:
        body = jax.checkpoint(body)
    steps = jnp.arange(xs.shape[0], dtype=jnp.int32)      # the lengths' dtype
    carry, ys = jax.lax.scan(body, carry, (px, steps, zoneout_masks),
                             reverse=flip, unroll=unroll)
    return _permute(ys, perm, False), carry


def _parallel_linear(cell, params, xs, carry, lengths):
    """h_t = a_t h_{t-1} + b_t for every t at once, by an associative scan in log space."""
    px = cell.project(params, xs)
    log_a, log_b = cell.log_coefficients(params, px)
    if lengths is not None:
        valid = jnp.arange(xs.shape[0], dtype=jnp.int32) < lengths
        v = valid.reshape((-1,) + (1,) * (log_a.ndim - 1))
        log_a = jnp.where(v, log_a, 0.0)          # a = 1: the carry stops changing
        log_b = jnp.where(v, log_b, _LOG_ZERO)    # b = 0
    log_b = jnp.maximum(log_b, _LOG_ZERO)

    def combine(left, right):
        a1, b1 = left
        a2, b2 = right
        return a1 + a2, jnp.logaddexp(a2 + b1, b2)

    log_A, log_B = jax.lax.associative_scan(combine, (log_a, log_b), axis=0)
    h0 = jnp.broadcast_to(carry.h.astype(log_A.dtype)[None], log_A.shape)   # [T, H]
    h = jnp.exp(log_A) * h0 + jnp.exp(log_B)
    new_carry = type(carry)(h[-1].astype(carry.h.dtype))
    ys = h.astype(carry.h.dtype)
    if lengths is not None:
        ys = jnp.where(v, ys, jnp.zeros((), ys.dtype))
    return ys, new_carry
