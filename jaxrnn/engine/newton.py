"""Parallel in time: the whole trajectory at once by Newton's method (DEER, quasi-DEER, ELK).

A recurrence ``s_t = F_t(s_{t-1})`` (``F_t`` is the cell's step with the input ``x_t`` folded
in) is a system of ``T`` equations in the ``T`` unknown states. Newton's method solves it for
all of them at once (Lim et al. 2024, "DEER"): from a guess of the whole trajectory, evaluate
every step in parallel, ``f_t = F_t(s_{t-1})`` (one ``[T, H] @ W`` matmul instead of ``T``
small ones), linearize each step around the guess with ``J_t = dF_t/ds``, and solve the linear
recurrence ``s_t = J_t s_{t-1} + (f_t - J_t s^{old}_{t-1})`` with an associative scan
(``O(log T)`` depth). Repeat until the trajectory stops changing.

- ``jacobian="full"``: DEER, the exact ``D x D`` Jacobian of every step (``D``: the carry's
  size, ``2H`` for an LSTM). Quadratic convergence; ``O(T D^2)`` memory, ``O(T D^3)`` per
  scan: for small ``H``.
- ``jacobian="diagonal"`` (the default): quasi-DEER (Gonzalez et al. 2024), only the Jacobian's
  diagonal, so the scan is elementwise and an iteration costs about one batched step. For a
  step that is one matmul followed by unit-wise maps (tanh RNN, LSTM, GRU with the reset after
  the matmul, MGU) it is the exact diagonal; for the rest (GRU with the reset before the
  matmul, layer norm, a projection) it is the diagonal of the unit-local part of the
  Jacobian. Either way it is only the Newton matrix: the fixed point, the answer, is the
  sequential trajectory; a cruder matrix only takes more iterations.
- ``damping=lam > 0`` (diagonal only): the ELK step (Gonzalez et al. 2024), the
  Levenberg-Marquardt step of the residuals ``r_t = s_t - F_t(s_{t-1})``: it minimizes
  ``sum_t |r_t + d_t - J_t d_{t-1}|^2 + lam |d_t|^2``, a trust region around the guess
  (equivalently a Kalman smoother). With a diagonal ``J`` that is one symmetric tridiagonal
  system over time per state unit, solved with ``jax.lax.linalg.tridiagonal_solve``. ``lam``
  adapts as in Levenberg-Marquardt: divided by 3 after a step that lowers the squared
  residuals, multiplied by 3 (and the step refused) after one that does not. Where plain
  Newton's linearized recurrence explodes (large recurrent weights) the damped iterates stay
  finite; they do not, in our measurements, converge in fewer iterations there.

Every iteration leaves the steps before the first wrong one exact, so undamped Newton, with
either Jacobian, reaches the sequential trajectory in at most ``T`` iterations in exact
arithmetic; in practice far fewer for a contracting recurrence. The loop stops when the
residual ``max_t |s_t - F_t(s_{t-1})|`` of the trajectory it holds is at most
``tol * max(1, max |s|)``; the returned trajectory is the one whose residual was measured.

Gradients do not differentiate through the iterations. At the solution, the backward pass is
the linear adjoint recurrence of backpropagation through time,
``lam_t = dL/ds_t + J_{t+1}^T lam_{t+1}``, solved with a reverse associative scan over the
exact Jacobians (``"full"``), or (``"diagonal"``) by the same quasi-Newton iteration on that
linear system: the diagonal part is solved by a reverse elementwise scan, the rest is applied
exactly with one batched VJP of the step per iteration, until the adjoint's residual is below
``tol``. The parameter and input gradients are then one batched VJP of the step at all ``T``
steps (large matmuls over time), through ``jax.custom_vjp``.

Not converging within ``max_iters`` is never silent: ``on_failure="warn"`` (the default) emits
a :class:`NewtonConvergenceWarning` from the compiled program (``jax.debug.callback``) naming
the iterations and the residual, ``"nan"`` returns NaN, and :func:`jaxrnn.newton_scan` returns
the iterations, the residual and a ``converged`` flag.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrnn.cells import checks
from jaxrnn.engine.step import advance

PyTree = Any

JACOBIANS = ("diagonal", "full")
ON_FAILURE = ("warn", "nan", "ignore")


class NewtonConvergenceWarning(RuntimeWarning):
    """Newton's method stopped at ``max_iters`` with a residual above its tolerance."""


class NewtonOptions(NamedTuple):
    """Options of ``method="newton"`` (all static; validated by :func:`check_options`).

    Attributes:
      jacobian: ``"diagonal"`` (quasi-DEER, the default) or ``"full"`` (DEER, for small H).
      max_iters: the most Newton iterations (and, for ``"diagonal"``, adjoint iterations).
      tol: the residual to stop at, relative to ``max(1, max |s|)`` (the adjoint's: relative
        to ``max |lam|``); None: 1e-12 for float64 carries, 1e-6 for float32, 1e-3 for less.
      damping: ``lam >= 0`` of the ELK (Levenberg-Marquardt) step; 0: plain Newton.
      on_failure: ``"warn"`` (a :class:`NewtonConvergenceWarning`), ``"nan"`` (NaN outputs)
        or ``"ignore"`` (read :func:`jaxrnn.newton_scan`'s info instead).
    """

    jacobian: str = "diagonal"
    max_iters: int = 100
    tol: Optional[float] = None
    damping: float = 0.0
    on_failure: str = "warn"


class NewtonInfo(NamedTuple):
    """How the forward solve went (one per sequence; batched under ``vmap``).

    Attributes:
      iterations: Newton iterations taken (int32).
      residual: ``max_t |s_t - F_t(s_{t-1})|`` of the returned trajectory.
      converged: whether the residual met the tolerance.
      states: the carry after every step, ``[T, ...]`` per leaf, aligned with ``xs`` as the
        outputs are (past a sequence's length: its final carry). Pass it back as ``init`` to
        warm-start the next solve (for example the next epoch's, on the same sequence).
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    states: PyTree


def check_options(options, where: str = "newton") -> NewtonOptions:
    """``options`` as :class:`NewtonOptions`: None (the defaults), an instance, or a dict of
    its fields (from a config); every field is checked."""
    if options is None:
        return NewtonOptions()
    if isinstance(options, dict):
        unknown = sorted(set(options) - set(NewtonOptions._fields))
        if unknown:
            raise checks.InvalidArgumentValue(
                f"{where}: unknown Newton option(s) {unknown}; the options are "
                f"{list(NewtonOptions._fields)}")
        options = NewtonOptions(**options)
    if not isinstance(options, NewtonOptions):
        raise checks.InvalidArgumentType(
            f"{where}: newton= takes jr.NewtonOptions(...) or a dict of its fields, got "
            f"{type(options).__name__}")
    jacobian = checks.check_choice("jacobian", options.jacobian, JACOBIANS, where=where)
    max_iters = checks.check_positive_int("max_iters", options.max_iters, where=where)
    tol = options.tol
    if tol is not None:
        tol = checks.check_finite_float("tol", tol, where=where, greater_than=0)
    damping = checks.check_finite_float("damping", options.damping, where=where)
    if damping < 0:
        raise checks.InvalidArgumentValue(f"{where}: damping must be >= 0, got {damping}")
    on_failure = checks.check_choice("on_failure", options.on_failure, ON_FAILURE,
                                     where=where)
    if damping and jacobian != "diagonal":
        raise checks.InvalidArgumentValue(
            f"{where}: damping={damping} is the ELK step for jacobian='diagonal'; with "
            f"jacobian='full' use damping=0")
    return NewtonOptions(jacobian, max_iters, tol, damping, on_failure)


def check_cell(cell) -> None:
    if cell.spatial_dims:
        raise checks.InvalidArgumentValue(
            f"method='newton' runs cells with a dense state; the {cell.name!r} cell's state "
            f"is spatial: use method='fused'")


def default_tol(dtype) -> float:
    size = jnp.dtype(dtype).itemsize
    return 1e-12 if size >= 8 else 1e-6 if size >= 4 else 1e-3


# --------------------------------------------------------------------------- the carry as a vector

class _Flat(NamedTuple):
    """The carry of one sequence as one vector ``[D]`` (its leaves side by side)."""
    treedef: Any
    sizes: tuple
    dtypes: tuple
    dtype: Any

    @classmethod
    def of(cls, carry):
        leaves, treedef = jax.tree.flatten(carry)
        for leaf in leaves:
            if jnp.ndim(leaf) != 1:
                raise checks.InvalidArgumentValue(
                    f"method='newton': every carry leaf of one sequence must be a vector, got "
                    f"shape {jnp.shape(leaf)}")
        dtypes = tuple(jnp.dtype(leaf.dtype) for leaf in leaves)
        return cls(treedef, tuple(int(leaf.shape[0]) for leaf in leaves), dtypes,
                   jnp.result_type(*dtypes))

    @property
    def size(self):
        return sum(self.sizes)

    def segments(self):
        start = 0
        for n in self.sizes:
            yield start, n
            start += n

    def ravel(self, carry):
        return jnp.concatenate([leaf.astype(self.dtype) for leaf in jax.tree.leaves(carry)],
                               axis=-1)

    def unravel(self, v):
        return jax.tree.unflatten(self.treedef, [
            v[..., s:s + n].astype(dt) for (s, n), dt in zip(self.segments(), self.dtypes)])


def _diagonal_mm(linear, width: int):
    """The matmul ``a ⊗ w`` whose JVP keeps only unit ``i``'s own entries ``w[i, g*M + i]`` of
    every gate block ``g`` (the diagonal's share of the matmul), for a state of ``width``
    units; a matmul of another shape (a projection) contributes no tangent."""

    @jax.custom_jvp
    def mm(a, w):
        return linear(a, w)

    @mm.defjvp
    def _jvp(primals, tangents):
        a, w = primals
        da, _ = tangents            # only the state is ever linearized
        y = linear(a, w)
        M, N = w.shape[-2], w.shape[-1]
        if M != width or a.shape[-1] != M or N % M:
            return y, jnp.zeros_like(y)
        idx = jnp.arange(M)
        diag = jnp.concatenate([w[idx, g * M + idx] for g in range(N // M)])   # [N]
        dy = jnp.concatenate([da] * (N // M), axis=-1) * diag.astype(da.dtype)
        return y, dy.astype(y.dtype)

    return mm


# --------------------------------------------------------------------------- linear scans
# A step's Newton matrix comes in one of three layouts (static, chosen by :func:`_kind`):
#   "diag":  [T, D]           the diagonal;
#   "block": [T, H, L, L]     per unit, the L x L block coupling its L carry leaves (an LSTM's
#                             h_i and c_i): the diagonal of every leaf-to-leaf Jacobian;
#   "full":  [T, D, D]        the whole Jacobian.
# The flat state [T, D] holds the leaves side by side: flat index l * H + i is unit i of leaf l.

def _combine_diag(left, right):
    a1, b1 = left
    a2, b2 = right
    return a2 * a1, a2 * b1 + b2


def _combine_mat(left, right):
    a1, b1 = left
    a2, b2 = right
    hi = lax.Precision.HIGHEST
    return (jnp.einsum("...ij,...jk->...ik", a2, a1, precision=hi),
            jnp.einsum("...ij,...j->...i", a2, b1, precision=hi) + b2)


def _to_blocks(v, L):
    return jnp.swapaxes(v.reshape(v.shape[:-1] + (L, v.shape[-1] // L)), -1, -2)


def _from_blocks(v):
    return jnp.swapaxes(v, -1, -2).reshape(v.shape[:-2] + (-1,))


def _matvec(kind, J, v):
    """``J_t v_t`` for every step."""
    if kind == "diag":
        return J * v
    hi = lax.Precision.HIGHEST
    if kind == "full":
        return jnp.einsum("tij,tj->ti", J, v, precision=hi)
    return _from_blocks(jnp.einsum("thij,thj->thi", J, _to_blocks(v, J.shape[-1]),
                                   precision=hi))


def _transpose(kind, J):
    return J if kind == "diag" else jnp.swapaxes(J, -1, -2)


def linear_scan(kind, J, b):
    """``s_t = J_t s_{t-1} + b_t`` for every ``t`` with ``s_{-1} = 0`` (``J_0`` unused), by an
    associative scan over time."""
    if kind == "diag":
        return lax.associative_scan(_combine_diag, (J, b), axis=0)[1]
    if kind == "full":
        return lax.associative_scan(_combine_mat, (J, b), axis=0)[1]
    out = lax.associative_scan(_combine_mat, (J, _to_blocks(b, J.shape[-1])), axis=0)[1]
    return _from_blocks(out)


def _reverse_scan(kind, J, b):
    """``s_t = J_t s_{t+1} + b_t`` with ``s_T = 0`` (``J_{T-1}`` unused)."""
    flip = functools.partial(jnp.flip, axis=0)
    return flip(linear_scan(kind, flip(J), flip(b)))


def _shift_down(v, first):
    """``[first, v_0, ..., v_{T-2}]``: the state entering every step."""
    return jnp.concatenate([first[None], v[:-1]], axis=0)


def _shift_up(v):
    """``[v_1, ..., v_{T-1}, 0]``."""
    return jnp.concatenate([v[1:], jnp.zeros_like(v[:1])], axis=0)


def _damped_delta(a, r, damping):
    """The ELK step ``d`` (diagonal Jacobian ``a`` ``[T, D]``, residuals ``r``): the minimizer
    of ``sum_t |r_t + d_t - a_t d_{t-1}|^2 + damping |d_t|^2`` with ``d_{-1} = 0``, by its
    normal equations, one symmetric tridiagonal system over time per unit."""
    a_next = _shift_up(a)
    lower = a.at[0].set(0.0)
    diag = 1.0 + damping + a_next * a_next
    rhs = -r + a_next * _shift_up(r)
    # tridiagonal_solve: systems over the last axis of the diagonals, right-hand side [..., m, 1]
    d = lax.linalg.tridiagonal_solve(-lower.T, diag.T, -a_next.T, rhs.T[..., None])
    return d[..., 0].T


# --------------------------------------------------------------------------- the solver

class _Problem(NamedTuple):
    """What the solve of one sequence is made of (static: closed over, never traced)."""
    cell: Any
    flat: _Flat
    options: NewtonOptions
    tol: float
    zoneout_rate: float

    @property
    def kind(self) -> str:
        """The Newton matrix's layout: "full", or for ``jacobian="diagonal"`` per-unit blocks
        when the carry has several leaves of one size (undamped), else the diagonal."""
        if self.options.jacobian == "full":
            return "full"
        sizes = self.flat.sizes
        if len(sizes) > 1 and len(set(sizes)) == 1 and not self.options.damping:
            return "block"
        return "diag"


def _step_fn(problem: _Problem, diagonal_jvp: bool):
    """``F(pws, s_prev [D], px_t, extras_t) -> s_t [D]``: the cell's step (``advance``, the one
    definition every loop runs) on the flat carry."""
    rec = problem.cell.recurrence
    flat = problem.flat
    mm_d = _diagonal_mm(rec.linear, problem.cell.hidden_size) if diagonal_jvp else None

    def F(pws, s_prev, px_t, extras_t):
        pw, ws = pws
        ok, zmask, rec_mask = extras_t
        if mm_d is None:
            def mm(k, a):
                return rec.linear(a, ws[k])
        else:
            def mm(k, a):
                return mm_d(a, ws[k])
        new = advance(rec.update, pw, flat.unravel(s_prev), px_t, mm, ok=ok,
                      rec_mask=rec_mask, zoneout_rate=problem.zoneout_rate,
                      zoneout_mask=zmask)
        return flat.ravel(new)

    return F


_EXTRAS_AXES = (0, 0, None)       # ok [T], zoneout masks [T, ...], rec_mask (one per sequence)


def _batched(F):
    """``F`` at every step at once."""
    return jax.vmap(F, in_axes=(None, 0, 0, _EXTRAS_AXES))


def _evaluate_at(problem, pws, px, extras, prev):
    """``f_t = F_t(prev_t)`` at every step, and the steps' Newton matrices (see
    :func:`linear_scan` for the layouts)."""
    kind = problem.kind
    if kind == "full":
        F = _step_fn(problem, diagonal_jvp=False)

        def with_value(p, px_t, ex_t):
            y = F(pws, p, px_t, ex_t)
            return y, y

        J, f = jax.vmap(jax.jacfwd(with_value, has_aux=True),
                        in_axes=(0, 0, _EXTRAS_AXES))(prev, px, extras)
        return f, J
    Fd = _batched(_step_fn(problem, diagonal_jvp=True))
    f, lin = jax.linearize(lambda p: Fd(pws, p, px, extras), prev)
    segments = list(problem.flat.segments())
    # one JVP per carry leaf: the ones of that leaf in, every leaf's response out
    outs = [lin(jnp.zeros_like(prev).at[:, s:s + n].set(1.0)) for s, n in segments]
    if kind == "block":
        L = len(segments)
        J = jnp.stack([_to_blocks(o, L) for o in outs], axis=-1)     # [T, H, L_out, L_in]
        return f, J
    return f, jnp.concatenate([o[:, s:s + n] for o, (s, n) in zip(outs, segments)], axis=-1)


def _residual(S, f):
    """``max |S - f|`` (infinite where anything is not finite) and the scale it is judged by."""
    d = jnp.abs(S - f)
    r = jnp.max(jnp.where(jnp.isfinite(d), d, jnp.inf))
    return r, jnp.maximum(1.0, jnp.max(jnp.abs(S)))


def _newton_step(problem, S, prev, f, J):
    b = f - _matvec(problem.kind, J, prev)
    b = b.at[0].set(f[0])          # s_0 = F_0(s0) exactly: the first step is known
    return linear_scan(problem.kind, J, b)


def _merit(S, f):
    d = S - f
    return jnp.sum(jnp.where(jnp.isfinite(d), d * d, jnp.inf))


def _solve_forward(problem: _Problem, pws, px, s0, extras, init):
    """Newton iterations from ``init`` (or zeros); returns the trajectory ``[T, D]`` and
    ``(iterations, residual, converged)``.

    With damping the step is Levenberg-Marquardt's: a step that lowers the sum of squared
    residuals is taken and the damping divided by 3 (towards the Newton step), one that does not
    is refused and the damping multiplied by 3 (a smaller step next time)."""
    T = px.shape[0]
    S = jnp.zeros((T, problem.flat.size), problem.flat.dtype) if init is None else init
    damped = bool(problem.options.damping)

    def evaluate(S):
        prev = _shift_down(S, s0)
        f, J = _evaluate_at(problem, pws, px, extras, prev)
        return (prev, f, J) + _residual(S, f)

    def cond(state):
        k, _, (_, _, _, r, scale), _ = state
        return (k < problem.options.max_iters) & ~(r <= problem.tol * scale)

    def body(state):
        k, S, ev, lam = state
        prev, f, J, _, _ = ev
        if not damped:
            S = _newton_step(problem, S, prev, f, J)
            return k + 1, S, evaluate(S), lam
        S_new = S + _damped_delta(J, S - f, lam)
        ev_new = evaluate(S_new)
        better = _merit(S_new, ev_new[1]) < _merit(S, f)
        pick = functools.partial(jax.tree.map, lambda a, b: jnp.where(better, a, b))
        lam = jnp.where(better, lam / 3.0, lam * 3.0)
        return k + 1, pick(S_new, S), pick(ev_new, ev), lam

    lam0 = jnp.asarray(problem.options.damping, problem.flat.dtype)
    k, S, (_, _, _, r, scale), _ = lax.while_loop(cond, body, (jnp.int32(0), S, evaluate(S), lam0))
    return S, (k, r, r <= problem.tol * scale)


def _solve_adjoint(problem: _Problem, pws, px, extras, prev, gS):
    """``lam_t = gS_t + J_{t+1}^T lam_{t+1}`` (``lam_T = 0``): the adjoint of the solved
    trajectory. Returns ``lam`` and ``(iterations, residual, converged)``."""
    F = _batched(_step_fn(problem, diagonal_jvp=False))
    _, vjp_prev = jax.vjp(lambda p: F(pws, p, px, extras), prev)

    def transposed(lam):            # [J_{t+1}^T lam_{t+1}]_t, exactly
        return _shift_up(vjp_prev(lam)[0])

    kind = problem.kind
    _, J = _evaluate_at(problem, pws, px, extras, prev)
    JT_next = _shift_up(_transpose(kind, J))          # J_{t+1}^T, zero at the end
    scale_g = jnp.max(jnp.abs(gS))
    tol = problem.tol

    def residual(lam, v):
        d = jnp.abs(lam - gS - v)
        return jnp.max(jnp.where(jnp.isfinite(d), d, jnp.inf))

    def done(lam, r):
        return r <= tol * jnp.maximum(jnp.max(jnp.abs(lam)), scale_g)

    def cond(state):
        k, lam, _, r = state
        return (k < problem.options.max_iters) & ~done(lam, r)

    def body(state):
        # the quasi-Newton step of the linear system: its (block-)diagonal part solved by the
        # reverse scan, the rest applied exactly (v) from the previous iterate; with the full
        # Jacobian the scan is exact and this only refines rounding
        k, lam, v, _ = state
        c = gS + v - _matvec(kind, JT_next, _shift_up(lam))
        lam = _reverse_scan(kind, JT_next, c)
        v = transposed(lam)
        return k + 1, lam, v, residual(lam, v)

    # the full Jacobian's reverse scan solves the adjoint exactly: start there (0 iterations
    # unless rounding needs a refinement); the diagonal starts from zero
    lam = _reverse_scan(kind, JT_next, gS) if kind == "full" else jnp.zeros_like(gS)
    v = transposed(lam)
    k, lam, _, r = lax.while_loop(cond, body, (jnp.int32(0), lam, v, residual(lam, v)))
    return lam, (k, r, done(lam, r))


def _zero_cotangent(x):
    if x is None:
        return None
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


def _report(problem: _Problem, what: str, stats):
    """The warning of ``on_failure="warn"``, from inside the compiled program."""
    if problem.options.on_failure != "warn":
        return
    iters, resid, conv = stats
    jax.debug.callback(functools.partial(_warn, what, problem.options.max_iters, problem.tol),
                       iters, resid, conv)


def _warn(what, max_iters, tol, iters, resid, conv):
    conv = np.asarray(conv)
    if conv.all():
        return
    resid = np.asarray(resid)
    worst = float(np.max(np.where(conv, -np.inf, resid)))
    warnings.warn(NewtonConvergenceWarning(
        f"method='newton': the {what} did not converge in max_iters={max_iters} iterations "
        f"({int(np.sum(~conv))} of {conv.size} sequence(s); residual {worst:.3g} > tol "
        f"{tol:.3g} relative): the result is not the sequential answer. Raise max_iters, add "
        f"damping, or use method='fused'"), stacklevel=2)


def _make_solve(problem: _Problem):
    """The trajectory as a function of (params' pieces, px, s0, extras, init), with the
    adjoint as its VJP."""

    @jax.custom_vjp
    def solve(pws, px, s0, extras, init):
        return _solve_forward(problem, pws, px, s0, extras, init)

    def fwd(pws, px, s0, extras, init):
        S, stats = _solve_forward(problem, pws, px, s0, extras, init)
        return (S, stats), (pws, px, s0, extras, init, S)

    def bwd(res, cts):
        pws, px, s0, extras, init, S = res
        gS = cts[0]
        prev = _shift_down(S, s0)
        lam, stats = _solve_adjoint(problem, pws, px, extras, prev, gS)
        _report(problem, "backward (adjoint) solve", stats)
        if problem.options.on_failure == "nan":
            lam = jnp.where(stats[2], lam, jnp.nan)
        F = _batched(_step_fn(problem, diagonal_jvp=False))
        _, vjp = jax.vjp(lambda w, p, pr: F(w, pr, p, extras), pws, px, prev)
        g_pws, g_px, g_prev = vjp(lam)
        return (g_pws, g_px, g_prev[0], jax.tree.map(_zero_cotangent, extras),
                None if init is None else jnp.zeros_like(init))

    solve.defvjp(fwd, bwd)
    return solve


def run(cell, params, px_order_xs, carry, *, seq_lengths=None, rec_mask=None,
        zoneout_rate=0.0, zoneout_masks=None, options: NewtonOptions, init=None):
    """Newton's method over one sequence already in processing order (``jr.scan``'s
    ``run`` permutes for ``reverse``). Returns ``(ys, carry, info)`` with ``info.states`` in
    processing order. ``options`` must be checked; ``init``: states ``[T, ...]`` or None."""
    xs = px_order_xs
    T = xs.shape[0]
    rec = cell.recurrence
    _, ws, pw = rec.split(params)
    px = cell.project(params, xs)
    flat = _Flat.of(carry)
    tol = options.tol if options.tol is not None else default_tol(flat.dtype)
    problem = _Problem(cell, flat, options, float(tol), float(zoneout_rate))
    ok = None if seq_lengths is None else jnp.arange(T, dtype=jnp.int32) < seq_lengths
    extras = (ok, zoneout_masks, rec_mask)
    s0 = flat.ravel(carry)
    S0 = None if init is None else jax.vmap(flat.ravel)(init)
    S, stats = _make_solve(problem)((pw, ws), px, s0, extras, S0)
    _report(problem, "forward solve", stats)
    if options.on_failure == "nan":
        S = jnp.where(stats[2], S, jnp.nan)
    states = jax.vmap(flat.unravel)(S)
    ys = jax.vmap(cell.output)(states)
    if ok is not None:
        ys = jnp.where(ok.reshape((T,) + (1,) * (ys.ndim - 1)), ys, jnp.zeros((), ys.dtype))
    final = jax.tree.map(lambda a: a[-1], states)
    return ys, final, NewtonInfo(stats[0], stats[1], stats[2], states)
