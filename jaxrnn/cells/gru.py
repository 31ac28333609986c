"""Gated recurrent unit (Cho et al. 2014), gate order r, z, n as in PyTorch and cuDNN.

    r  = sigmoid(x W_r + b_ir + h U_r + b_hr)          reset gate
    z  = sigmoid(x W_z + b_iz + h U_z + b_hz)          update gate
    reset_after=True  (PyTorch, cuDNN, the write-ups):
        n = tanh(x W_n + b_in + r * (h U_n + b_hn))
    reset_after=False (Cho et al. 2014):
        n = tanh(x W_n + b_in + (r * h) U_n + b_hn)
    h' = z * h + (1 - z) * n
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells import base, checks


class GRUParams(NamedTuple):
    w_ih: jax.Array   # [input, 3H]
    w_hh: jax.Array   # [H, 3H]
    b_ih: jax.Array   # [3H]
    b_hh: jax.Array   # [3H]


class GRUCarry(NamedTuple):
    h: jax.Array      # [..., H]


def gru(hidden_size: int, *, reset_after: bool = True, dtype=None,
        param_dtype=jnp.float32) -> base.Cell:
    """A GRU cell. ``reset_after`` picks where the reset gate acts (see module doc)."""
    H = checks.check_positive_int("hidden_size", hidden_size, where="gru")
    reset_after = checks.check_bool("reset_after", reset_after, where="gru")
    compute = base.resolve_dtype(dtype, where="gru")
    pdt = base.param_dtype_of(param_dtype, where="gru")
    name = "gru"

    def init(key, input_size: int) -> GRUParams:
        I = base.check_positive_int("input_size", input_size)
        k_ih, k_hh = jax.random.split(key)
        return GRUParams(base.glorot_init(k_ih, (I, 3 * H), pdt),
                         base.orthogonal_blocks(k_hh, H, H, 3, pdt),
                         jnp.zeros((3 * H,), pdt), jnp.zeros((3 * H,), pdt))

    def input_size(params):
        return params.w_ih.shape[0]

    def initial_carry(params, batch_shape=()):
        return base.zeros_carry(GRUCarry, (H,), batch_shape, params.w_hh.dtype)

    def split(params):
        if reset_after:
            ws = (params.w_hh,)
        else:
            ws = (params.w_hh[:, :2 * H], params.w_hh[:, 2 * H:])
        return params.w_ih, ws, params._replace(w_ih=None, w_hh=None)

    def finish_input(pw, xw):
        return xw + base.broadcast_like(pw.b_ih, xw)

    def update(pw, carry, px, mm, rec_mask=None):
        h = carry.h
        h_in = base.apply_rec_mask(h, rec_mask)
        x_r, x_z, x_n = jnp.split(px, 3, axis=-1)
        if reset_after:
            u = mm(0, h_in)
            h_r, h_z, h_n = jnp.split(u + base.broadcast_like(pw.b_hh, u), 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            u = mm(0, h_in)
            h_r, h_z = jnp.split(u + base.broadcast_like(pw.b_hh[:2 * H], u), 2, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            u_n = mm(1, r * h_in.astype(r.dtype))
            n = jnp.tanh(x_n + u_n + base.broadcast_like(pw.b_hh[2 * H:], u_n))
        h_new = z * h.astype(z.dtype) + (1.0 - z) * n
        return GRUCarry(h_new.astype(h.dtype))

    def output(carry):
        return carry.h

    return base.make_cell(init=init, initial_carry=initial_carry,
                          recurrence=base.Recurrence(split, finish_input, update,
                                                     base.matmul_in(compute)),
                          output=output, input_size=input_size,
                          hidden_size=H, output_size=H, name=name,
                          options=dict(hidden_size=H, reset_after=reset_after,
                                       dtype=dtype, param_dtype=pdt))
