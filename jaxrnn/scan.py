"""The time loop: one sequence, any cell, with padding, reversal and a parallel path.

``scan`` unrolls a cell over one sequence ``xs`` of shape ``[T, input]`` with
``jax.lax.scan``; batches are ``jax.vmap(jr.scan, in_axes=(None, None, 0))``.

Semantics, shared by every layer built on it:

- ``seq_lengths=n`` (a scalar per sequence; the sequence is right-padded): outputs at
  ``t >= n`` are zero and the returned carry is the carry after step ``n``.
- ``reverse=True`` reads the valid part backwards: step 1 reads ``xs[n-1]``, the last
  step reads ``xs[0]``; ``ys[t]`` stays aligned with ``xs[t]`` (as PyTorch's backward
  direction and ``lax.scan(reverse=True)``); padding stays at the end.
- The input projection of every step is one matmul over ``[T, input]`` before the
  loop; the loop runs only the recurrent half (``cell.recur``).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import base
from jaxrnn.cells import minimal

PyTree = Any

# A log-space "zero" that stays finite, so that gradients through logaddexp stay finite.
_LOG_ZERO = -1e30


# --------------------------------------------------------------------------- checks

def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def x_rank(cell: base.Cell) -> int:
    """The rank of one step's input ``x_t`` for this cell (1, or 1 + spatial dims)."""
    return 1 + int(cell.options.get("spatial_dims", 0))


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

def scan(cell: base.Cell, params, xs, carry=None, *, seq_lengths=None, reverse=False,
         unroll: int = 1, parallel: bool = False):
    """Runs ``cell`` over one sequence ``xs`` ``[T, input]``; returns ``(ys, carry)``.

    Args:
      cell: a :class:`jaxrnn.Cell` (``jr.lstm(...)``, ``jr.gru(...)``, ...).
      params: the cell's parameters.
      xs: one sequence, ``[T, input]`` (``[T, *spatial, C]`` for ``conv_lstm``).
      carry: the initial carry; zeros when None.
      seq_lengths: a scalar integer, the valid length of a right-padded sequence.
      reverse: read the valid part backwards (``ys`` stays aligned with ``xs``).
      unroll: time steps per loop iteration of ``lax.scan``.
      parallel: for ``min_gru``/``min_lstm``, a log-space associative scan over time
        instead of a sequential loop (same numbers, O(log T) depth).

    Returns:
      ``ys`` of shape ``[T, output]`` (zero past ``seq_lengths``) and the final carry.
    """
    xs = jnp.asarray(xs)
    check_sequence(cell, params, xs)
    lengths = check_seq_lengths(seq_lengths, xs.shape[0])
    expected = cell.carry_for_input(params, xs[0])
    if carry is None:
        carry = expected
    else:
        check_carry(cell.name, jax.eval_shape(lambda: expected), carry)
    return run(cell, params, xs, carry, lengths=lengths, reverse=reverse, unroll=unroll,
               parallel=parallel)


# --------------------------------------------------------------------------- the loop

def time_permutation(num_steps: int, lengths, reverse):
    """Indices that read the valid part of a padded sequence backwards (an involution).

    ``reverse`` may be a Python bool or a traced boolean (bidirectional layers vmap over it).
    Returns None when no permutation is needed.
    """
    if isinstance(reverse, (bool, np.bool_)) and not reverse:
        return None
    t = jnp.arange(num_steps)
    n = num_steps if lengths is None else lengths
    rev_idx = jnp.where(t < n, n - 1 - t, t)
    if isinstance(reverse, (bool, np.bool_)):
        return rev_idx
    return jnp.where(reverse, rev_idx, t)


def _select(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


def run(cell: base.Cell, params, xs, carry, *, lengths=None, reverse=False, unroll=1,
        parallel=False, rec_mask=None, zoneout_rate=0.0, zoneout_masks=None):
    """The loop behind ``scan`` and the layers, with no argument checking.

    ``rec_mask`` multiplies the state entering the recurrent weights at every step
    (variational recurrent dropout). Zoneout: with ``zoneout_masks`` (a carry-shaped
    pytree of booleans with a leading time axis; True keeps the previous value) the
    carry is zoned out at random; without masks and ``zoneout_rate > 0`` each unit takes
    its expectation ``p * previous + (1 - p) * new`` (evaluation).
    """
    T = xs.shape[0]
    static_reverse = (isinstance(reverse, (bool, np.bool_)) and bool(reverse)
                      and lengths is None and not parallel)
    perm = None if static_reverse else time_permutation(T, lengths, reverse)
    if perm is not None:
        xs = jnp.take(xs, perm, axis=0)
    steps = jnp.arange(T)
    valid = None if lengths is None else steps < lengths

    if parallel:
        ys, carry = _parallel_linear(cell, params, xs, carry, valid)
    else:
        px = cell.project(params, xs)

        def body(c, inp):
            px_t, t, zmask = inp
            new = cell.recur(params, c, px_t, rec_mask)
            if zoneout_masks is not None:
                new = _select_tree(zmask, c, new)
            elif zoneout_rate:
                new = jax.tree.map(lambda o, n: (zoneout_rate * o + (1 - zoneout_rate) * n).astype(n.dtype), c, new)
            if valid is not None:
                ok = t < lengths
                new = _select(ok, new, c)
                y = jnp.where(ok, cell.output(new), jnp.zeros((), cell.output(new).dtype))
            else:
                y = cell.output(new)
            return new, y

        carry, ys = jax.lax.scan(body, carry, (px, steps, zoneout_masks), reverse=static_reverse,
                                 unroll=unroll)
    if perm is not None:
        ys = jnp.take(ys, perm, axis=0)
    return ys, carry


def _select_tree(keep_masks, old, new):
    return jax.tree.map(lambda m, o, n: jnp.where(m, o, n), keep_masks, old, new)


def _parallel_linear(cell, params, xs, carry, valid):
    """h_t = a_t h_{t-1} + b_t for every t at once, by an associative scan in log space."""
    px = cell.project(params, xs)
    log_a, log_b = minimal.log_coefficients(cell, px)
    if valid is not None:
        v = valid.reshape((-1,) + (1,) * (log_a.ndim - 1))
        log_a = jnp.where(v, log_a, 0.0)          # a = 1: the carry stops changing
        log_b = jnp.where(v, log_b, _LOG_ZERO)    # b = 0
    log_b = jnp.maximum(log_b, _LOG_ZERO)

    def combine(left, right):
        a1, b1 = left
        a2, b2 = right
        return a1 + a2, jnp.logaddexp(a2 + b1, b2)

    log_A, log_B = jax.lax.associative_scan(combine, (log_a, log_b), axis=0)
    h0 = carry.h.astype(log_A.dtype)
    h = jnp.exp(log_A) * h0 + jnp.exp(log_B)
    new_carry = type(carry)(h[-1].astype(carry.h.dtype))
    ys = h.astype(carry.h.dtype)
    if valid is not None:
        ys = jnp.where(valid.reshape((-1,) + (1,) * (ys.ndim - 1)), ys, jnp.zeros((), ys.dtype))
    return ys, new_carry
