"""A fast LSTM layer over a whole batch, with a hand-derived backward pass.

``lstm_layer(params, xs)`` equals ``jax.vmap(jr.scan)`` of ``jr.lstm(H)`` (the plain
LSTM: no peephole, coupling, layer norm or projection) on a batch ``xs [B, T, I]``:
the same outputs, final carries and gradients, with ``seq_lengths`` and ``reverse``
meaning what they mean for ``jr.scan``. It is faster because

- it works on the whole batch inside (batch-major matmuls, one per step);
- its backward pass is a ``jax.custom_vjp`` written from the BPTT recursion: the
  forward pass stores the gate activations and the states; the reverse loop carries
  only ``dh`` and ``dc`` and runs one matmul per step (``dz @ W_hh^T``); the weight
  gradients are computed after the loop as one large matmul over all ``T*B`` gate
  gradients (autodiff of ``lax.scan`` instead accumulates ``h^T dz`` step by step);
- each step is two XLA operations (a matmul and one fused elementwise kernel), which
  matters on CPU where the runtime pays per operation.

Equations (PyTorch's gate order i, f, g, o)::

    z = x W_ih + h W_hh + b;  i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
    c' = f c + i g;  h' = o tanh(c')

Backward, per step (``dh``, ``dc`` flow from step t+1 and ``dy_t`` from the output)::

    dh  += dy_t;  tc = tanh(c_t)
    dc  += dh o (1 - tc^2)
    dz   = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh tc o(1-o)]
    dh_{t-1} = dz W_hh^T;  dc_{t-1} = dc f

and after the loop ``dW_hh = H_prev^T dZ``, ``dW_ih = X^T dZ``, ``db = sum dZ``,
``dX = dZ W_ih^T`` over all ``T*B`` rows at once.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn.fast import _common
from jaxrnn.fast._common import Plan, column_blocks, mm, mm_blocks, mm_blocks_t

__all__ = ["lstm_layer", "supports_lstm"]


def supports_lstm(cell) -> bool:
    """True if ``cell`` is a plain LSTM that :func:`lstm_layer` computes exactly."""
    o = cell.options
    return (cell.name == "lstm" and not o.get("peephole") and not o.get("coupled")
            and not o.get("layer_norm") and o.get("proj_size") is None)


def _activate(z, scale, offset):
    """[i, f, g, o] = sigmoid/tanh of the pre-activations, in one elementwise pass."""
    return scale * jnp.tanh(scale * z) + offset


@functools.lru_cache(maxsize=None)
def _make_core(plan: Plan, reverse: bool, masked: bool, mdt, acc):
    """The custom-VJP kernel for one static configuration.

    Kernel arguments, time-major: ``w_ih [I, 4H], w_hh [H, 4H], b [4H], xs [T, B, I],
    h0, c0 [B, H], mask [T, B, 1]`` (bool; a dummy when not ``masked``).
    Returns ``(hs, h_T, c_T)``: the h carry after every step (it stays put at padded
    steps) and the final carry.
    """

    def consts(H):
        scale, offset = _common.sigmoid_tanh_consts(2, 1, 1, H)
        return jnp.asarray(scale, acc), jnp.asarray(offset, acc)

    def gates_of(z, c, scale, offset):
        a = _activate(z, scale, offset)
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c_new = f * c + i * g
        return a, c_new, o * jnp.tanh(c_new)

    def forward(w_ih, w_hh, b, xs, h0, c0, mask, save):
        hdt, cdt = h0.dtype, c0.dtype
        scale, offset = consts(h0.shape[-1])
        bb = b.astype(acc)
        seq = mm(xs, w_ih, mdt, acc) + bb if plan.hoist else xs
        store_gates = save and not plan.remat
        hh_blocks = column_blocks("lstm_layer", w_hh, plan.split)
        ih_blocks = column_blocks("lstm_layer", w_ih, plan.split)

        def body(carry, s):
            h, c = carry
            x_t, m_t = s
            z = mm_blocks(h, hh_blocks, mdt, acc)
            z = z + x_t if plan.hoist else z + mm_blocks(x_t, ih_blocks, mdt, acc) + bb
            a, c_new, h_new = gates_of(z, c.astype(acc), scale, offset)
            h_new = h_new.astype(hdt)
            c_new = c_new.astype(cdt)
            if masked:
                h_new = jnp.where(m_t, h_new, h)
                c_new = jnp.where(m_t, c_new, c)
            # With gradients: also the cell state *entering* the step (c_{t-1}, what the
            # backward pass needs; c_t is the next step's c_{t-1} or the final carry).
            if not save:
                out = h_new
            elif store_gates:
                out = (h_new, c, a)
            else:
                out = (h_new, c)
            return (h_new, c_new), out

        (hT, cT), out = lax.scan(body, (h0, c0), (seq, mask), reverse=reverse,
                                 unroll=plan.unroll)
        return hT, cT, out

    @jax.custom_vjp
    def core(w_ih, w_hh, b, xs, h0, c0, mask):
        hT, cT, hs = forward(w_ih, w_hh, b, xs, h0, c0, mask, save=False)
        return hs, hT, cT

    def core_fwd(w_ih, w_hh, b, xs, h0, c0, mask):
        hT, cT, out = forward(w_ih, w_hh, b, xs, h0, c0, mask, save=True)
        return (out[0], hT, cT), (w_ih, w_hh, b, xs, h0, c0, mask, cT) + tuple(out)

    def core_bwd(res, cts):
        w_ih, w_hh, b, xs, h0, c0, mask, c_final, hs, c_prev = res[:10]
        gates = None if plan.remat else res[10]
        dhs, dhT, dcT = cts
        scale, offset = consts(h0.shape[-1])
        bb = b.astype(acc)
        h_prev = _common.shifted(hs, h0, reverse)
        hh_blocks = column_blocks("lstm_layer", w_hh, plan.split)
        ih_blocks = column_blocks("lstm_layer", w_ih, plan.split)

        def body(carry, s):
            dh, dc, c = carry          # c: the cell state after this step
            dy, a, cp, hp, x_t, m = s
            cp = cp.astype(acc)
            if plan.remat:   # recompute this step's gates from the stored carries
                z = (mm_blocks(hp, hh_blocks, mdt, acc) + mm_blocks(x_t, ih_blocks, mdt, acc)
                     + bb)
                a = _activate(z, scale, offset)
            i, f, g, o = jnp.split(a, 4, axis=-1)
            dh = dh + dy.astype(acc)
            tc = jnp.tanh(c.astype(acc))
            dc_t = dc + dh * o * (1.0 - tc * tc)
            dz = jnp.concatenate([dc_t * g * i * (1.0 - i),
                                  dc_t * cp * f * (1.0 - f),
                                  dc_t * i * (1.0 - g * g),
                                  dh * tc * o * (1.0 - o)], axis=-1)
            dc_prev = dc_t * f
            if masked:
                dz = jnp.where(m, dz, 0.0)
                dc_prev = jnp.where(m, dc_prev, dc)
            dh_prev = mm_blocks_t(dz, hh_blocks, mdt, acc)
            if masked:
                dh_prev = dh_prev + jnp.where(m, 0.0, dh)
            return (dh_prev, dc_prev, cp), dz

        seqs = (dhs, gates, c_prev, h_prev, xs, mask)

        def chunk_grads(s, dzs):
            # Weight gradients as one large matmul over all (chunk) steps' T*B gate gradients.
            _, _, _, hp, x, _ = s
            dzm = dzs.astype(mdt)
            dw_hh = jnp.einsum("tbh,tbg->hg", hp.astype(mdt), dzm, preferred_element_type=acc)
            dw_ih = jnp.einsum("tbi,tbg->ig", x.astype(mdt), dzm, preferred_element_type=acc)
            db = jnp.sum(dzs, axis=(0, 1))
            dx = jnp.einsum("tbg,ig->tbi", dzm, w_ih.astype(mdt), preferred_element_type=acc)
            return (dw_ih, dw_hh, db), dx.astype(xs.dtype)

        G = w_hh.shape[1]
        grads0 = (jnp.zeros(w_ih.shape, acc), jnp.zeros(w_hh.shape, acc), jnp.zeros((G,), acc))
        carry0 = (dhT.astype(acc), dcT.astype(acc), c_final.astype(acc))
        (dh0, dc0, _), (dw_ih, dw_hh, db), dxs = _common.bptt(
            body, carry0, seqs, chunk_grads, grads0, xs.shape[0], plan.chunk, not reverse,
            plan.unroll_bwd)
        return (dw_ih.astype(w_ih.dtype), dw_hh.astype(w_hh.dtype), db.astype(b.dtype),
                dxs, dh0.astype(h0.dtype), dc0.astype(c0.dtype), None)

    core.defvjp(core_fwd, core_bwd)
    return core


def lstm_layer(params, xs, carry=None, *, seq_lengths=None, reverse: bool = False,
               dtype=None, plan: Optional[Plan] = None):
    """A plain LSTM over a batch ``xs [B, T, I]``; returns ``(ys [B, T, H], carry)``.

    Equals ``jax.vmap(jr.scan, in_axes=(None, None, 0, 0, ...))`` of ``jr.lstm(H, dtype=dtype)``:
    ``ys`` is zero past ``seq_lengths [B]``, the returned ``LSTMCarry(h, c)`` (each ``[B, H]``)
    is the carry after each sequence's last valid step, and ``reverse=True`` reads the valid
    part of each sequence backwards with ``ys`` aligned with ``xs``.

    Args:
      params: ``LSTMParams`` of a plain LSTM (``w_ih [I, 4H]``, ``w_hh [H, 4H]``, ``b [4H]``;
        the optional fields must be None).
      xs: ``[B, T, I]``.
      carry: ``LSTMCarry(h, c)`` with ``[B, H]`` leaves; zeros (in the params' dtype) when None.
      seq_lengths: ``[B]`` integers in ``[0, T]``, or None.
      reverse: read the valid part of each sequence backwards.
      dtype: the matmuls' compute dtype (as ``jr.lstm(dtype=...)``); gates, cell state and
        gradients of the weights stay in float32.
      plan: a :class:`jaxrnn.fast.Plan`; the measured default of the backend when None.
    """
    from jaxrnn.cells.lstm import LSTMCarry

    for field in ("w_peep", "ln_x", "ln_h", "ln_c", "w_proj"):
        if getattr(params, field, None) is not None:
            raise ValueError(f"lstm_layer: the fast LSTM is the plain LSTM; params.{field} "
                             f"is set (use jr.scan for peephole/layer-norm/projection LSTMs)")
    w_ih, w_hh, b = params.w_ih, params.w_hh, params.b
    H = w_hh.shape[0]
    if w_hh.shape != (H, 4 * H) or w_ih.shape[1] != 4 * H or b.shape != (4 * H,):
        raise ValueError(f"lstm_layer: expected w_ih [I, 4H], w_hh [H, 4H], b [4H]; got "
                         f"{w_ih.shape}, {w_hh.shape}, {b.shape}")
    xs = jnp.asarray(xs)
    _common.check_batch("lstm_layer", xs, w_ih.shape[0])
    B, T, _ = xs.shape
    lengths = _common.check_lengths("lstm_layer", seq_lengths, B, T)
    if carry is None:
        carry = LSTMCarry(jnp.zeros((B, H), w_hh.dtype), jnp.zeros((B, H), w_hh.dtype))
    _common.check_carry_leaf("lstm_layer", "h", carry.h, B, H)
    _common.check_carry_leaf("lstm_layer", "c", carry.c, B, H)
    plan = _common.resolve_plan(plan, "lstm", B, H, T)
    mdt, acc = _common.compute_dtypes(dtype, xs, w_ih)
    mdt_h, _ = _common.compute_dtypes(dtype, carry.h, w_hh)
    if mdt_h != mdt:
        mdt = jnp.promote_types(mdt, mdt_h)
    core = _make_core(plan, bool(reverse), lengths is not None, jnp.dtype(mdt), jnp.dtype(acc))
    mask = jnp.zeros((T, 1, 1), bool) if lengths is None else _common.step_mask(lengths, T)
    hs, hT, cT = core(w_ih, w_hh, b, jnp.swapaxes(xs, 0, 1), carry.h, carry.c, mask)
    if lengths is not None:
        hs = jnp.where(mask, hs, jnp.zeros((), hs.dtype))
    return jnp.swapaxes(hs, 0, 1), LSTMCarry(hT, cT)
