"""A fast GRU layer over a whole batch, with a hand-derived backward pass.

``gru_layer(params, xs)`` equals ``jax.vmap(jr.scan)`` of ``jr.gru(H)`` with
``reset_after=True`` (PyTorch's and cuDNN's GRU) on a batch ``xs [B, T, I]``: the
same outputs, final carry and gradients, with ``seq_lengths`` and ``reverse`` as in
``jr.scan``. Built like :mod:`jaxrnn.fast.lstm`: whole-batch matmuls, a
``jax.custom_vjp`` whose reverse loop carries only ``dh`` and runs one matmul per
step, and weight gradients as one large matmul each after the loop.

Equations (gate order r, z, n)::

    a = x W_ih + b_ih;  u = h W_hh + b_hh
    r = sigmoid(a_r + u_r);  z = sigmoid(a_z + u_z);  n = tanh(a_n + r u_n)
    h' = (1 - z) n + z h

Backward, per step (``dh`` from step t+1 plus ``dy_t``)::

    dn = dh (1 - z) (1 - n^2);  dz = dh (h - n) z (1 - z);  dr = dn u_n r (1 - r)
    da = [dr, dz, dn];  du = [dr, dz, dn r]
    dh_{t-1} = dh z + du W_hh^T

and after the loop ``dW_ih = X^T dA``, ``dW_hh = H_prev^T dU``, ``db_ih = sum dA``,
``db_hh = sum dU``, ``dX = dA W_ih^T``.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn.fast import _common
from jaxrnn.fast._common import Plan, column_blocks, mm, mm_blocks, mm_blocks_t

__all__ = ["gru_layer", "supports_gru"]


def supports_gru(cell) -> bool:
    """True if ``cell`` is a GRU that :func:`gru_layer` computes exactly."""
    return cell.name == "gru" and bool(cell.options.get("reset_after", True))


@functools.lru_cache(maxsize=None)
def _make_core(plan: Plan, reverse: bool, masked: bool, mdt, acc):
    """The custom-VJP kernel for one static configuration.

    Kernel arguments, time-major: ``w_ih [I, 3H], w_hh [H, 3H], b_ih, b_hh [3H],
    xs [T, B, I], h0 [B, H], mask [T, B, 1]`` (bool; a dummy when not ``masked``).
    Returns ``(hs, h_T)``.
    """

    def consts(H):
        scale, offset = _common.sigmoid_tanh_consts(2, 0, 0, H)
        return jnp.asarray(scale, acc), jnp.asarray(offset, acc)

    def gates_of(a, u, h, scale, offset):
        """r, z, n, u_n and the new state from the two projections."""
        H = h.shape[-1]
        rz = scale * jnp.tanh(scale * (a[..., :2 * H] + u[..., :2 * H])) + offset
        r, z = rz[..., :H], rz[..., H:]
        u_n = u[..., 2 * H:]
        n = jnp.tanh(a[..., 2 * H:] + r * u_n)
        h_new = (1.0 - z) * n + z * h
        return r, z, n, u_n, h_new

    def forward(w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save):
        hdt = h0.dtype
        scale, offset = consts(h0.shape[-1])
        bi, bh = b_ih.astype(acc), b_hh.astype(acc)
        seq = mm(xs, w_ih, mdt, acc) + bi if plan.hoist else xs
        store_gates = save and not plan.remat
        hh_blocks = column_blocks("gru_layer", w_hh, plan.split)
        ih_blocks = column_blocks("gru_layer", w_ih, plan.split)

        def body(h, s):
            x_t, m_t = s
            a = x_t if plan.hoist else mm_blocks(x_t, ih_blocks, mdt, acc) + bi
            u = mm_blocks(h, hh_blocks, mdt, acc) + bh
            r, z, n, u_n, h_new = gates_of(a, u, h.astype(acc), scale, offset)
            h_new = h_new.astype(hdt)
            if masked:
                h_new = jnp.where(m_t, h_new, h)
            if store_gates:
                return h_new, (h_new, jnp.concatenate([r, z, n, u_n], axis=-1))
            return h_new, h_new

        hT, out = lax.scan(body, h0, (seq, mask), reverse=reverse, unroll=plan.unroll)
        return hT, out

    @jax.custom_vjp
    def core(w_ih, w_hh, b_ih, b_hh, xs, h0, mask):
        hT, hs = forward(w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save=False)
        return hs, hT

    def core_fwd(w_ih, w_hh, b_ih, b_hh, xs, h0, mask):
        hT, out = forward(w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save=True)
        hs, gates = (out, None) if plan.remat else out
        return (hs, hT), (w_ih, w_hh, b_ih, b_hh, xs, h0, mask, hs, gates)

    def core_bwd(res, cts):
        w_ih, w_hh, b_ih, b_hh, xs, h0, mask, hs, gates = res
        dhs, dhT = cts
        H = h0.shape[-1]
        scale, offset = consts(H)
        bi, bh = b_ih.astype(acc), b_hh.astype(acc)
        h_prev = _common.shifted(hs, h0, reverse)
        hh_blocks = column_blocks("gru_layer", w_hh, plan.split)
        ih_blocks = column_blocks("gru_layer", w_ih, plan.split)

        def body(dh, s):
            dy, g4, hp, x_t, m = s
            hp = hp.astype(acc)
            if plan.remat:   # recompute this step's gates from the stored states
                a = mm_blocks(x_t, ih_blocks, mdt, acc) + bi
                u = mm_blocks(hp, hh_blocks, mdt, acc) + bh
                r, z, n, u_n, _ = gates_of(a, u, hp, scale, offset)
            else:
                r, z, n, u_n = (g4[..., k * H:(k + 1) * H] for k in range(4))
            dh = dh + dy.astype(acc)
            dn = dh * (1.0 - z) * (1.0 - n * n)
            dzg = dh * (hp - n) * z * (1.0 - z)
            dr = dn * u_n * r * (1.0 - r)
            da = jnp.concatenate([dr, dzg, dn], axis=-1)
            du = jnp.concatenate([dr, dzg, dn * r], axis=-1)
            direct = dh * z
            if masked:
                da = jnp.where(m, da, 0.0)
                du = jnp.where(m, du, 0.0)
                direct = jnp.where(m, direct, dh)
            dh_prev = mm_blocks_t(du, hh_blocks, mdt, acc) + direct
            return dh_prev, (da, du)

        seqs = (dhs, gates, h_prev, xs, mask)

        def chunk_grads(s, outs):
            # Weight gradients as one large matmul over all (chunk) steps' T*B gate gradients.
            _, _, hp, x, _ = s
            das, dus = outs
            dam, dum = das.astype(mdt), dus.astype(mdt)
            dw_ih = jnp.einsum("tbi,tbg->ig", x.astype(mdt), dam, preferred_element_type=acc)
            dw_hh = jnp.einsum("tbh,tbg->hg", hp.astype(mdt), dum, preferred_element_type=acc)
            db_ih = jnp.sum(das, axis=(0, 1))
            db_hh = jnp.sum(dus, axis=(0, 1))
            dx = jnp.einsum("tbg,ig->tbi", dam, w_ih.astype(mdt), preferred_element_type=acc)
            return (dw_ih, dw_hh, db_ih, db_hh), dx.astype(xs.dtype)

        grads0 = tuple(jnp.zeros(a.shape, acc) for a in (w_ih, w_hh, b_ih, b_hh))
        dh0, (dw_ih, dw_hh, db_ih, db_hh), dxs = _common.bptt(
            body, dhT.astype(acc), seqs, chunk_grads, grads0, xs.shape[0], plan.chunk,
            not reverse, plan.unroll_bwd)
        return (dw_ih.astype(w_ih.dtype), dw_hh.astype(w_hh.dtype), db_ih.astype(b_ih.dtype),
                db_hh.astype(b_hh.dtype), dxs, dh0.astype(h0.dtype), None)

    core.defvjp(core_fwd, core_bwd)
    return core


def gru_layer(params, xs, carry=None, *, seq_lengths=None, reverse: bool = False,
              dtype=None, plan: Optional[Plan] = None):
    """A GRU (``reset_after=True``) over a batch ``xs [B, T, I]``; returns ``(ys, carry)``.

    Equals ``jax.vmap(jr.scan)`` of ``jr.gru(H, dtype=dtype)``: ``ys [B, T, H]`` is zero past
    ``seq_lengths [B]``, the returned ``GRUCarry(h)`` (``[B, H]``) is the carry after each
    sequence's last valid step, and ``reverse=True`` reads the valid part backwards with
    ``ys`` aligned with ``xs``.

    Args:
      params: ``GRUParams`` (``w_ih [I, 3H]``, ``w_hh [H, 3H]``, ``b_ih [3H]``, ``b_hh [3H]``).
      xs: ``[B, T, I]``.
      carry: ``GRUCarry(h)`` with a ``[B, H]`` leaf; zeros (in the params' dtype) when None.
      seq_lengths: ``[B]`` integers in ``[0, T]``, or None.
      reverse: read the valid part of each sequence backwards.
      dtype: the matmuls' compute dtype (as ``jr.gru(dtype=...)``); gates and weight
        gradients stay in float32.
      plan: a :class:`jaxrnn.fast.Plan`; the measured default of the backend when None.
    """
    from jaxrnn.cells.gru import GRUCarry

    w_ih, w_hh, b_ih, b_hh = params.w_ih, params.w_hh, params.b_ih, params.b_hh
    H = w_hh.shape[0]
    if (w_hh.shape != (H, 3 * H) or w_ih.shape[1] != 3 * H or b_ih.shape != (3 * H,)
            or b_hh.shape != (3 * H,)):
        raise ValueError(f"gru_layer: expected w_ih [I, 3H], w_hh [H, 3H], b_ih [3H], b_hh [3H]; "
                         f"got {w_ih.shape}, {w_hh.shape}, {b_ih.shape}, {b_hh.shape}")
    xs = jnp.asarray(xs)
    _common.check_batch("gru_layer", xs, w_ih.shape[0])
    B, T, _ = xs.shape
    lengths = _common.check_lengths("gru_layer", seq_lengths, B, T)
    if carry is None:
        carry = GRUCarry(jnp.zeros((B, H), w_hh.dtype))
    _common.check_carry_leaf("gru_layer", "h", carry.h, B, H)
    plan = _common.resolve_plan(plan, "gru", B, H, T)
    mdt, acc = _common.compute_dtypes(dtype, xs, w_ih)
    mdt_h, _ = _common.compute_dtypes(dtype, carry.h, w_hh)
    mdt = jnp.promote_types(mdt, mdt_h)
    core = _make_core(plan, bool(reverse), lengths is not None, jnp.dtype(mdt), jnp.dtype(acc))
    mask = jnp.zeros((T, 1, 1), bool) if lengths is None else _common.step_mask(lengths, T)
    hs, hT = core(w_ih, w_hh, b_ih, b_hh, jnp.swapaxes(xs, 0, 1), carry.h, mask)
    if lengths is not None:
        hs = jnp.where(mask, hs, jnp.zeros((), hs.dtype))
    return jnp.swapaxes(hs, 0, 1), GRUCarry(hT)
