"""The fused time loop: a forward loop that keeps what the backward needs, and a reverse
loop derived from the cell's one :class:`~jaxrnn.cells.base.Recurrence`.

Written for ONE sequence, like ``jr.scan``; ``jax.vmap`` turns it into a whole-batch loop
(every per-step matmul by the shared weights becomes one ``[B, .] @ W`` matmul) and every
other transformation composes with it, because it is built only from ``lax.scan``, one
``jax.custom_vjp`` and the zero-valued taps of :mod:`jaxrnn.engine.taps`.

Forward: each step computes the input map (or reads the hoisted projection), the cell's
recurrent matmuls ``u_k = a_k ⊗ W_k`` and its pointwise update, and stores the carry entering
the step, the output, the step's input half and the matmul results ``u_k``; the operands
``a_k`` are recomputed after the loop. The forward loop has a custom VJP of its own (autodiff
of itself) that only gradients of gradients call: at first order nothing needs it.

Backward (the custom VJP of :func:`_replay`): a reverse loop carrying only the carry's
gradient. Each step replays the pointwise update from the stored ``u_k`` (no matmul is
recomputed); its VJP gives the gradients of the pre-activations ``du_k``, of the step's
input and of the previous carry, the ``du_k`` reaching the previous carry through one
transposed matmul ``du_k ⊗ W_k^T`` per map. The weight gradients are not formed in the loop:
the taps added after the forward loop make autodiff compute ``dW_k = Σ_t a_k^T du_k`` (and
``dW_in``, ``dx``) as large matmuls over all steps, and over the batch under ``vmap``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn.engine import taps
from jaxrnn.engine.plan import Plan, check_plan
from jaxrnn.engine.step import advance

_sg = lax.stop_gradient
_SymbolicZero = jax.custom_derivatives.SymbolicZero
_Primal = jax.custom_derivatives.CustomVJPPrimal


def _tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def run(cell, params, xs, carry, *, seq_lengths=None, rec_mask=None, zoneout_rate=0.0,
        zoneout_masks=None, plan: Plan, remat: bool = False):
    """``(ys, carry)`` over ``xs`` ``[T, ...]`` read in time order: ``ys [T, output]`` (zero past
    ``lengths``) and the carry after the last valid step.

    No argument checking (``jr.scan`` does it). ``rec_mask`` and ``zoneout_masks`` are
    treated as constants (dropout masks have no gradient).

    With ``plan.chunk > 0`` time is cut into chunks of that many steps, run by an outer
    ``lax.scan``: the weight gradients then form chunk by chunk (over ``plan.chunk`` steps of
    the batch at a time). ``remat=True`` also bounds the memory of the backward pass: only the
    carry entering each chunk (of about sqrt(T) steps when ``plan.chunk`` is 0) is kept, and
    each chunk's forward loop runs again just before its backward loop (``jax.checkpoint``).
    """
    plan = check_plan(plan)
    kw = dict(lengths=seq_lengths, rec_mask=rec_mask, zoneout_rate=zoneout_rate, plan=plan)
    T = xs.shape[0]
    size = plan.chunk or (max(1, math.isqrt(T - 1) + 1) if remat else T)
    if size >= T:
        return _run(cell, params, xs, carry, zoneout_masks=zoneout_masks, t0=0, **kw)
    n, rest = divmod(T, size)

    def chunks(a):
        return None if a is None else jax.tree.map(
            lambda l: l[:n * size].reshape((n, size) + l.shape[1:]), a)

    def chunk(c, inp):
        x_c, zm_c, t0 = inp
        ys_c, c = _run(cell, params, x_c, c, zoneout_masks=zm_c, t0=t0, **kw)
        return c, ys_c

    if remat:
        chunk = jax.checkpoint(chunk)

    carry, ys = lax.scan(chunk, carry, (chunks(xs), chunks(zoneout_masks),
                                        jnp.arange(n, dtype=jnp.int32) * size))
    ys = ys.reshape((n * size,) + ys.shape[2:])
    if rest:
        zm = None if zoneout_masks is None else jax.tree.map(lambda l: l[n * size:], zoneout_masks)
        ys_r, carry = _run(cell, params, xs[n * size:], carry, zoneout_masks=zm, t0=n * size, **kw)
        ys = jnp.concatenate([ys, ys_r], axis=0)
    return ys, carry


def _run(cell, params, xs, carry, *, lengths, rec_mask, zoneout_rate, zoneout_masks, plan, t0):
    """:func:`run` without chunks, over the steps ``t0, t0 + 1, ...`` of a sequence."""
    rec = cell.recurrence
    w_in, ws, pw = rec.split(params)
    T = xs.shape[0]
    steps = t0 + jnp.arange(T, dtype=jnp.int32)   # int32 like the checked lengths
    hoist = bool(plan.hoist)
    consts = (lengths, None if rec_mask is None else _sg(rec_mask), zoneout_masks, steps)

    def step_fn(pw_, ws_, consts_, c, xin_t, t, zmask, mm):
        """One step and its output. Everything traced comes in as an argument: the backward
        loop is traced apart from the forward one."""
        n, mask = consts_[0], consts_[1]
        ok = None if n is None else t < n
        px_t = xin_t if hoist else rec.finish_input(pw_, xin_t)
        new = advance(rec.update, pw_, c, px_t, mm, ok=ok, rec_mask=mask,
                      zoneout_rate=zoneout_rate, zoneout_mask=zmask)
        y = cell.output(new)
        if ok is not None:
            y = jnp.where(ok, y, jnp.zeros((), y.dtype))
        return new, y

    def forward_loop(pw_, w_in_, ws_, seq_, carry_, consts_):
        def body(c, s):
            x_t, t, zmask = s
            xin_t = x_t if hoist else rec.linear(x_t, w_in_)
            results = []

            def mm(k, a):
                results.append(rec.linear(a, ws_[k]))
                return results[-1]

            new, y = step_fn(pw_, ws_, consts_, c, xin_t, t, zmask, mm)
            # the carry entering the step is what the backward replay starts from; the input
            # projection is stored only when it was computed here (hoisted, it is ``seq``)
            return new, (c, y, None if hoist else xin_t, tuple(results))

        last, (prev, ys, xins, results) = lax.scan(body, carry_, (seq_, consts_[3], consts_[2]),
                                                   unroll=plan.unroll)
        if len(results) != len(ws_):
            raise ValueError(f"{cell.name}: Recurrence.update called mm {len(results)} times, "
                             f"but split returned {len(ws_)} recurrent weights")
        return ys, last, prev, seq_ if hoist else xins, results

    # ---- forward: the loop, run once (its own derivative is needed only at second order)
    if hoist:
        px = rec.finish_input(pw, rec.linear(xs, w_in))      # differentiated by autodiff
        seq = px
    else:
        seq = xs
    ys, last, prev, xins, results = _forward(forward_loop, (pw, w_in, ws, seq, carry), consts)
    operands = _operands(rec, pw, prev, xins, results, consts[1], hoist)

    # ---- what autodiff sees: the input half and the taps of the recurrent matmuls
    x_in = px if hoist else taps.tap(rec.linear, xs, w_in)
    u_in = tuple(taps.tap_weight(rec.linear, a, w) for a, w in zip(operands, ws))
    return _replay(step_fn, rec.linear, plan, (x_in, u_in, carry, pw),
                   (ys, last, prev, xins, results, ws, consts))


def _forward(loop, diff, consts):
    """``loop(*diff, consts)``, whose VJP is autodiff of the loop run again.

    At first order nothing asks for it: the forward loop's results reach the gradient only
    through the replay (whose VJP gives them none) and the weight taps (which do not
    differentiate their operands), so its cotangents are symbolic zeros and it returns at
    once. Gradients of gradients do ask, and get the exact one."""

    @jax.custom_vjp
    def forward(diff, consts):
        return loop(*diff, consts)

    def forward_fwd(diff, consts):
        diff, consts = jax.tree.map(lambda p: p.value, (diff, consts),
                                    is_leaf=lambda p: isinstance(p, _Primal))
        return loop(*diff, consts), (diff, consts)

    def forward_bwd(res, cts):
        diff, consts = res
        leaves, treedef = jax.tree.flatten(cts, is_leaf=lambda c: isinstance(c, _SymbolicZero))
        if all(isinstance(c, _SymbolicZero) for c in leaves):
            return None, None
        cts = treedef.unflatten([jnp.zeros(c.shape, c.dtype) if isinstance(c, _SymbolicZero)
                                 else c for c in leaves])
        _, vjp = jax.vjp(lambda *d: loop(*d, consts), *diff)
        return vjp(cts), None

    forward.defvjp(forward_fwd, forward_bwd, symbolic_zeros=True)
    return forward(diff, consts)


def _operands(rec, pw, prev, xins, results, rec_mask, hoist):
    """The operand of every recurrent matmul at every step, recomputed after the loop (all
    steps at once: the update is pointwise) rather than stored by it. Usually it is the
    previous state itself (``prev.h``), which costs nothing; otherwise (``r * h`` in a GRU
    with ``reset_after=False``) one elementwise pass that XLA fuses."""
    operands = []

    def mm(k, a):
        operands.append(a)
        return results[k]

    px = xins if hoist else rec.finish_input(pw, xins)
    rec.update(pw, prev, px, mm, rec_mask)   # only the operands are used: the rest is dead code
    return tuple(operands)


def _pretransposed(w):
    """``w`` as the transpose of a materialized transpose: the same values, but the backward
    loop's transposed matmul ``du @ w.T`` then reads a row-major ``w.T`` made once before
    the loop, instead of packing a transposed operand at every step, which XLA:CPU does more
    slowly (the figures are in docs/benchmarks.md)."""
    if w.ndim != 2:
        return w
    return lax.optimization_barrier(w.T).T


def _replay(step_fn, linear, plan, diff, stored):
    """Returns the stored ``(ys, last carry)``; its VJP is the reverse loop.

    ``diff`` are the differentiable inputs: each step's input (or a tap of the input map),
    the taps of the recurrent maps, the initial carry and ``pw``. ``stored`` are the forward
    loop's results and constants."""

    @jax.custom_vjp
    def replay(diff, stored):
        return stored[0], stored[1]

    def replay_fwd(diff, stored):
        return (stored[0], stored[1]), (diff[3], stored)

    def replay_bwd(res, cts):
        pw, (_, _, prev, xins, results, ws, consts) = res
        dys, dlast = cts
        ws = tuple(_pretransposed(w) for w in ws)
        steps, zoneout_masks = consts[3], consts[2]

        def body(state, s):
            dc, dpw = state
            dy_t, c_prev, xin_t, us_t, t, zmask = s

            def phi(pw_, c_, xin_, es):
                def mm(k, a):
                    # the stored result (no matmul), differentiated like the matmul: in ``a``
                    # through the tap, and at the result itself through the zero ``es[k]``.
                    # Gradients of gradients differentiate the tap in ``W`` too, so the stored
                    # result's own derivative is cut (stop_gradient): counted once.
                    return _sg(us_t[k]) + taps.tap(linear, a, ws[k]) + es[k]
                return step_fn(pw_, ws, consts, c_, xin_, t, zmask, mm)

            zeros = tuple(jnp.zeros_like(u) for u in us_t)
            _, vjp = jax.vjp(phi, pw, c_prev, xin_t, zeros)
            dpw_t, dc_prev, dxin, dus = vjp((dc, dy_t))
            return (dc_prev, _tree_add(dpw, dpw_t)), (dxin, dus)

        zero_pw = jax.tree.map(jnp.zeros_like, pw)
        (dc0, dpw), (dxins, dus) = lax.scan(
            body, (dlast, zero_pw), (dys, prev, xins, results, steps, zoneout_masks),
            reverse=True, unroll=plan.unroll_bwd)
        return (dxins, dus, dc0, dpw), None

    replay.defvjp(replay_fwd, replay_bwd)
    return replay(diff, stored)
