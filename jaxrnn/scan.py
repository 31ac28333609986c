"""The time loop: one sequence, any cell, with padding, reversal and a parallel path.

``scan`` unrolls a cell over one sequence ``xs`` of shape ``[T, input]`` with
``jax.lax.scan``; batches are ``jax.vmap(jr.scan, in_axes=(None, None, 0))``.

Semantics, shared by every layer built on it:

- ``seq_lengths=n`` (a scalar per sequence; the sequence is right-padded): outputs at
  ``t >= n`` are zero and the returned carry is the carry after step ``n``.
- ``reverse=True`` reads the valid part backwards: step 1 reads ``xs[n-1]``, the last
  step reads ``xs[0]``; ``ys[t]`` stays aligned with ``xs[t]`` (as PyTorch's backward
  direction and ``lax.scan(reverse=True)``); padding stays at the end.

Three solvers run the same step (the cell's :class:`~jaxrnn.cells.base.Recurrence`, one
definition): ``method="fused"`` (the default), the fused engine of :mod:`jaxrnn.engine` with
its hand-derived backward pass; ``method="reference"``, the plain ``lax.scan`` that JAX's
autodiff differentiates (the test oracle, and the loop to read when learning); and
``method="newton"``, every step at once by Newton iterations over associative scans
(:mod:`jaxrnn.engine.newton`: DEER, quasi-DEER, ELK), parallel in time.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import engine
from jaxrnn.cells import base, checks
from jaxrnn.engine import newton as newton_lib

PyTree = Any

# A log-space "zero" that stays finite, so that gradients through logaddexp stay finite.
_LOG_ZERO = -1e30


# --------------------------------------------------------------------------- checks
# The checks live in jaxrnn.cells.checks (one validation layer for the library); the names
# below are the time loop's options and the entry points' shared sequence of checks.

check_seq_lengths = checks.check_seq_lengths
check_bool = checks.check_bool


def x_rank(cell: base.Cell) -> int:
    """The rank of one step's input ``x_t`` for this cell (1, or 1 + spatial dims)."""
    return 1 + cell.spatial_dims


def check_sequence(cell: base.Cell, params, xs, what: str = "xs") -> None:
    """Checks the rank, dtype and feature size of one sequence ``xs`` before any tracing work."""
    checks.check_sequence(cell, params, xs, what=what)


def check_carry(cell_name: str, expected, carry) -> None:
    """Raises if ``carry`` does not have the structure, shapes and dtypes of ``expected``."""
    checks._compare(expected, carry, "", what="carry", hint=f"this {cell_name} cell",
                    exact_dtype=True)


def check_inputs(cell: base.Cell, params, xs, carry, seq_lengths, *, input_size=None):
    """What every sequence entry point checks, in order, before any tracing work: the
    params against the cell, ``xs``, the lengths, a given carry; in debug mode also that
    ``xs``, params and carry are finite. Returns the lengths as int32 (or None)."""
    if input_size is None:
        input_size = checks.check_params(cell, params)
    checks.check_sequence(cell, params, xs, input_size=input_size)
    lengths = checks.check_seq_lengths(seq_lengths, xs.shape[0])
    if carry is not None:
        checks.check_carry(cell, params, carry, jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype))
    checks.debug_check_finite(xs, "xs")
    checks.debug_check_finite(params, "params")
    if carry is not None:
        checks.debug_check_finite(carry, "carry")
    return lengths


# --------------------------------------------------------------------------- public scan

METHODS = ("fused", "reference", "newton")
NewtonOptions = newton_lib.NewtonOptions
NewtonInfo = newton_lib.NewtonInfo


def check_method(method) -> str:
    return checks.check_choice("method", method, METHODS)


def check_solver(cell: base.Cell, method: str, newton, *, unroll=None, parallel=False,
                 remat=False, where: str = "scan"):
    """The options that go with ``method``: ``newton`` (:class:`NewtonOptions`, a dict of its
    fields, or None) only with ``method="newton"``, which takes no ``unroll``, ``remat`` or
    ``parallel``. Returns the checked Newton options (None for the sequential methods)."""
    if method != "newton":
        if newton is not None:
            raise checks.InvalidArgumentValue(
                f"{where}: newton= options apply to method='newton', not method={method!r}")
        return None
    for name, value in (("unroll", unroll), ("remat", remat), ("parallel", parallel)):
        if value:
            raise checks.InvalidArgumentValue(
                f"{where}: {name}={value!r} applies to the sequential methods; "
                f"method='newton' evaluates every step at once")
    newton_lib.check_cell(cell)
    return newton_lib.check_options(newton, where=where)


def check_unroll(unroll):
    return None if unroll is None else checks.check_positive_int("unroll", unroll)


def check_parallel(cell: base.Cell, parallel) -> bool:
    parallel = checks.check_bool("parallel", parallel)
    if parallel and cell.log_coefficients is None:
        raise checks.InvalidArgumentValue(
            f"parallel=True needs a cell whose state follows a linear recurrence "
            f"(min_gru, min_lstm); the {cell.name!r} cell does not")
    return parallel


def check_reverse(reverse):
    if isinstance(reverse, (bool, np.bool_)):
        return bool(reverse)
    if isinstance(reverse, jax.Array) and reverse.shape == () and reverse.dtype == jnp.bool_:
        return reverse            # traced direction (bidirectional layers vmap over it)
    raise checks.InvalidArgumentType(f"reverse must be a bool, got {reverse!r}")


def check_cell(cell, where: str = "scan") -> base.Cell:
    if not isinstance(cell, base.Cell):
        raise checks.InvalidArgumentType(f"{where}() takes a jaxrnn Cell (jr.lstm(...), ...), "
                                         f"got {type(cell).__name__}")
    return cell


def scan(cell: base.Cell, params, xs, carry=None, *, seq_lengths=None, reverse=False,
         unroll: Optional[int] = None, parallel: bool = False, method: str = "fused",
         remat: bool = False, newton=None):
    """Runs ``cell`` over one sequence ``xs`` ``[T, input]``; returns ``(ys, carry)``.

    Args:
      cell: a :class:`jaxrnn.Cell` (``jr.lstm(...)``, ``jr.gru(...)``, ...).
      params: the cell's parameters.
      xs: one sequence, ``[T, input]`` (``[T, *spatial, C]`` for ``conv_lstm``).
      carry: the initial carry; zeros when None.
      seq_lengths: a scalar integer, the valid length of a right-padded sequence. Concrete
        values are range-checked; traced ones (under ``jit``/``vmap``) only for shape and
        dtype, and clipped by the loop: check them with ``jr.check_seq_lengths`` before
        tracing, or trace under ``jr.checked`` / ``jr.debug_checks`` (checkify).
      reverse: read the valid part backwards (``ys`` stays aligned with ``xs``).
      unroll: time steps per loop iteration; None: the backend's measured plan.
      parallel: for cells with ``log_coefficients`` (``min_gru``, ``min_lstm``), a log-space
        associative scan over time instead of a sequential loop (same numbers, O(log T) depth).
      method: ``"fused"`` (the default: the fused engine, hand-derived backward pass),
        ``"reference"`` (autodiff of a plain ``lax.scan``) or ``"newton"`` (parallel in time:
        Newton iterations over associative scans, see :func:`jaxrnn.newton_scan`). Same
        numbers (``"newton"``: to its tolerance, and it warns if it does not converge); the
        fused engine and ``"newton"`` support reverse-mode autodiff (``grad``, ``vjp``) but
        not forward mode (``jvp``, ``jacfwd``), for which ``"reference"`` is there.
      remat: keep less for the backward pass and recompute the rest (``"fused"``: the carry
        entering every chunk of about sqrt(T) steps; ``"reference"``: the carry of every step).
      newton: with ``method="newton"``, a :class:`jaxrnn.NewtonOptions` (or a dict of its
        fields): Jacobian, iterations, tolerance, damping, what to do if it does not converge.

    Returns:
      ``ys`` of shape ``[T, output]`` (zero past ``seq_lengths``) and the final carry.

    Raises (before any tracing work, naming the argument or field): ``TypeError`` for an
    argument of the wrong kind (an option that is not a bool, params of another cell
    family, an integer dtype, float lengths), ``ValueError`` for a wrong value (shapes,
    missing or extra optional params fields, lengths out of range). See
    :mod:`jaxrnn.cells.checks`. NaN and Inf are not checked (they propagate) except inside
    ``jr.debug_checks()``.
    """
    check_cell(cell)
    method = check_method(method)
    unroll = check_unroll(unroll)
    parallel = check_parallel(cell, parallel)
    reverse = check_reverse(reverse)
    remat = check_bool("remat", remat)
    newton = check_solver(cell, method, newton, unroll=unroll, parallel=parallel, remat=remat)
    xs = jnp.asarray(xs)
    lengths = check_inputs(cell, params, xs, carry, seq_lengths)
    if carry is None:
        carry = cell.carry_for_input(params, xs[0])
    return run(cell, params, xs, carry, seq_lengths=lengths, reverse=reverse, unroll=unroll,
               parallel=parallel, method=method, remat=remat, newton=newton)


def newton_scan(cell: base.Cell, params, xs, carry=None, *, seq_lengths=None, reverse=False,
                options=None, init=None):
    """``jr.scan(..., method="newton")`` that also says how the solve went: returns
    ``(ys, carry, info)``, ``info`` a :class:`jaxrnn.NewtonInfo` (iterations, residual,
    converged, and the states after every step).

    Every step is computed at once: Newton's method on the system ``s_t = F_t(s_{t-1})``
    (DEER; quasi-DEER with ``jacobian="diagonal"``, the default; the ELK step with
    ``damping > 0``), each iteration one batched evaluation of the step at all ``T`` steps
    and one associative scan. Gradients solve the adjoint recurrence at the solution (no
    differentiation through the iterations). See :mod:`jaxrnn.engine.newton`.

    Args:
      cell, params, xs, carry, seq_lengths, reverse: as in :func:`jaxrnn.scan`.
      options: :class:`jaxrnn.NewtonOptions`, a dict of its fields, or None (the defaults).
      init: the initial guess of the trajectory: None (zeros), or the ``states`` of an earlier
        solve's info (a warm start), shaped like the carry with a leading ``T`` axis.
    """
    check_cell(cell, "newton_scan")
    reverse = check_reverse(reverse)
    options = check_solver(cell, "newton", options, where="newton_scan")
    xs = jnp.asarray(xs)
    lengths = check_inputs(cell, params, xs, carry, seq_lengths)
    if carry is None:
        carry = cell.carry_for_input(params, xs[0])
    if init is not None:
        expected = jax.tree.map(lambda a: jax.ShapeDtypeStruct((xs.shape[0],) + a.shape, a.dtype),
                                carry)
        checks._compare(expected, init, "", what="init", hint="the states of one sequence",
                        exact_dtype=True)
    carry = engine.like_inputs(carry, xs, params)
    T = xs.shape[0]
    flip = isinstance(reverse, bool) and reverse and lengths is None
    perm = None if flip else engine.time_permutation(T, lengths, reverse)
    ys, carry, info = newton_lib.run(cell, params, _permute(xs, perm, flip), carry,
                                     seq_lengths=lengths, options=options,
                                     init=_permute(init, perm, flip))
    return (_permute(ys, perm, flip), carry,
            info._replace(states=_permute(info.states, perm, flip)))


# --------------------------------------------------------------------------- the loops

def _permute(tree, perm, flip):
    if tree is None or (perm is None and not flip):
        return tree
    if flip:
        return jax.tree.map(lambda a: jnp.flip(a, 0), tree)
    return jax.tree.map(lambda a: jnp.take(a, perm, axis=0), tree)


def run(cell: base.Cell, params, xs, carry, *, seq_lengths=None, reverse=False, unroll=None,
        parallel=False, method="fused", remat=False, rec_mask=None, zoneout_rate=0.0,
        zoneout_masks=None, newton=None):
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
    if method == "newton":
        ys, carry, _ = newton_lib.run(cell, params, _permute(xs, perm, flip), carry,
                                      seq_lengths=lengths, rec_mask=rec_mask,
                                      zoneout_rate=zoneout_rate,
                                      zoneout_masks=_permute(zoneout_masks, perm, flip),
                                      options=newton or newton_lib.NewtonOptions())
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
