"""Long short-term memory (Hochreiter & Schmidhuber 1997) and its classic variants.

Equations (gate order i, f, g, o as in PyTorch and cuDNN)::

    i = sigmoid(x W_i + h U_i [+ p_i * c])      input gate
    f = sigmoid(x W_f + h U_f [+ p_f * c])      forget gate
    g = tanh   (x W_g + h U_g)                  candidate
    c' = f * c + i * g                          the cell state: the conveyor belt
    o = sigmoid(x W_o + h U_o [+ p_o * c'])     output gate
    h' = o * tanh(c')                           [then h' = h' W_proj with proj_size]

Options:

- ``peephole``: gates also read the cell state (Gers & Schmidhuber 2000): i and f
  read c_{t-1}, o reads c_t, through diagonal weights ``p_i, p_f, p_o``.
- ``coupled``: coupled input and forget gates (CIFG): i = 1 - f. Gate order f, g, o.
- ``layer_norm``: layer-normalized LSTM (Ba et al. 2016):
  gates = LN(x W) + LN(h U) + b and h' = o * tanh(LN(c')).
- ``proj_size``: LSTM with a projection layer (Sak et al. 2014; PyTorch's ``proj_size``).
- ``forget_bias``: added to the forget-gate bias at init (default 1.0, Jozefowicz et al. 2015).
- ``chrono_t_max``: chrono initialization (Tallec & Ollivier 2018) of the forget and
  input biases instead of ``forget_bias``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxrnn.cells import base, checks


class LSTMParams(NamedTuple):
    w_ih: jax.Array              # [input, G*H]
    w_hh: jax.Array              # [P or H, G*H]
    b: jax.Array                 # [G*H]
    w_peep: Optional[jax.Array] = None   # [3, H]: p_i, p_f, p_o (coupled: p_f, p_o, unused row 0)
    ln_x: Optional[jax.Array] = None     # [2, G*H]: scale, bias of LN(x W)
    ln_h: Optional[jax.Array] = None     # [2, G*H]: scale, bias of LN(h U)
    ln_c: Optional[jax.Array] = None     # [2, H]:   scale, bias of LN(c)
    w_proj: Optional[jax.Array] = None   # [H, P]


class LSTMCarry(NamedTuple):
    h: jax.Array   # [..., P or H] the emitted state
    c: jax.Array   # [..., H] the cell state


def lstm(hidden_size: int, *, peephole: bool = False, coupled: bool = False,
         layer_norm: bool = False, proj_size: Optional[int] = None,
         forget_bias: float = 1.0, chrono_t_max: Optional[float] = None,
         dtype=None, param_dtype=jnp.float32) -> base.Cell:
    """An LSTM cell. See the module docstring for the equations and options.

    Args:
      hidden_size: width of the cell state (and of h without ``proj_size``).
      dtype: compute dtype of the matmuls (e.g. ``jnp.bfloat16``); gates, the cell
        state and the carry stay in float32 (or ``param_dtype`` if wider).
      param_dtype: dtype of the parameters and of the carry.
    """
    w = "lstm"
    H = checks.check_positive_int("hidden_size", hidden_size, where=w)
    peephole = checks.check_bool("peephole", peephole, where=w)
    coupled = checks.check_bool("coupled", coupled, where=w)
    layer_norm = checks.check_bool("layer_norm", layer_norm, where=w)
    P = checks.check_optional_positive_int("proj_size", proj_size, where=w)
    if P is not None and P >= H:
        raise checks.InvalidArgumentValue(
            f"lstm: proj_size ({P}) must be smaller than hidden_size ({H}), as in PyTorch")
    forget_bias = checks.check_finite_float("forget_bias", forget_bias, where=w)
    if chrono_t_max is not None:
        chrono_t_max = checks.check_finite_float("chrono_t_max", chrono_t_max, where=w,
                                                 greater_than=2)
    compute = base.resolve_dtype(dtype, where=w)
    pdt = base.param_dtype_of(param_dtype, where=w)
    G = 3 if coupled else 4
    out = P or H
    name = "lstm"

    def gate_index(gate: str) -> int:
        order = "fgo" if coupled else "ifgo"
        return order.index(gate)

    def init(key, input_size: int) -> LSTMParams:
        I = base.check_positive_int("input_size", input_size)
        k_ih, k_hh, k_b, k_p, k_proj = jax.random.split(key, 5)
        w_ih = base.glorot_init(k_ih, (I, G * H), pdt)
        w_hh = base.orthogonal_blocks(k_hh, out, H, G, pdt)
        b = jnp.zeros((G, H), pdt)
        if chrono_t_max is not None:
            bf = base.chrono_forget_bias(k_b, H, chrono_t_max, pdt)
            b = b.at[gate_index("f")].set(bf)
            if not coupled:
                b = b.at[gate_index("i")].set(-bf)
        else:
            b = b.at[gate_index("f")].set(forget_bias)
        b = b.reshape(G * H)
        w_peep = base.optional(peephole, base.uniform_init(k_p, (3, H), 0.1, pdt))
        ln_x = base.optional(layer_norm, jnp.stack([jnp.ones(G * H, pdt), jnp.zeros(G * H, pdt)]))
        ln_h = base.optional(layer_norm, jnp.stack([jnp.ones(G * H, pdt), jnp.zeros(G * H, pdt)]))
        ln_c = base.optional(layer_norm, jnp.stack([jnp.ones(H, pdt), jnp.zeros(H, pdt)]))
        w_proj = None if P is None else base.glorot_init(k_proj, (H, P), pdt)
        return LSTMParams(w_ih, w_hh, b, w_peep, ln_x, ln_h, ln_c, w_proj)

    def input_size(params: LSTMParams) -> int:
        return params.w_ih.shape[0]

    def initial_carry(params: LSTMParams, batch_shape=()) -> LSTMCarry:
        return base.zeros_carry(LSTMCarry, (out, H), batch_shape, params.w_hh.dtype)

    def split(params: LSTMParams):
        ws = (params.w_hh,) if P is None else (params.w_hh, params.w_proj)
        return params.w_ih, ws, params._replace(w_ih=None, w_hh=None, w_proj=None)

    def finish_input(pw: LSTMParams, xw):
        if layer_norm:
            xw = base.layer_norm(xw, pw.ln_x[0], pw.ln_x[1])
        return xw + base.broadcast_like(pw.b, xw)

    def update(pw: LSTMParams, carry: LSTMCarry, px, mm, rec_mask=None) -> LSTMCarry:
        z = mm(0, base.apply_rec_mask(carry.h, rec_mask))
        if layer_norm:
            z = base.layer_norm(z, pw.ln_h[0], pw.ln_h[1])
        z = z + px.astype(z.dtype)
        c_prev = carry.c.astype(z.dtype)
        if coupled:
            zf, zg, zo = jnp.split(z, 3, axis=-1)
            if peephole:
                zf = zf + base.broadcast_like(pw.w_peep[1], c_prev) * c_prev
            f = jax.nn.sigmoid(zf)
            i = 1.0 - f
        else:
            zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
            if peephole:
                zi = zi + base.broadcast_like(pw.w_peep[0], c_prev) * c_prev
                zf = zf + base.broadcast_like(pw.w_peep[1], c_prev) * c_prev
            i = jax.nn.sigmoid(zi)
            f = jax.nn.sigmoid(zf)
        c = f * c_prev + i * jnp.tanh(zg)
        if peephole:
            zo = zo + base.broadcast_like(pw.w_peep[2], c) * c
        o = jax.nn.sigmoid(zo)
        c_out = base.layer_norm(c, pw.ln_c[0], pw.ln_c[1]) if layer_norm else c
        h = o * jnp.tanh(c_out)
        if P is not None:
            h = mm(1, h)                  # the projection (LSTMP): h' = (o * tanh(c')) W_proj
        return LSTMCarry(h.astype(carry.h.dtype), c.astype(carry.c.dtype))

    def output(carry: LSTMCarry):
        return carry.h

    return base.make_cell(
        init=init, initial_carry=initial_carry,
        recurrence=base.Recurrence(split, finish_input, update, base.matmul_in(compute)),
        output=output, input_size=input_size, hidden_size=H, output_size=out,
        name=name,
        options=dict(hidden_size=H, peephole=peephole, coupled=coupled,
                     layer_norm=layer_norm, proj_size=P, forget_bias=forget_bias,
                     chrono_t_max=chrono_t_max, dtype=dtype, param_dtype=pdt))
