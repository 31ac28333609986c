"""Minimal gated units.

- ``mgu`` (Zhou et al. 2016), one forget gate::

      f  = sigmoid(x W_f + h U_f + b_f)
      h~ = tanh(x W_h + (f * h) U_h + b_h)
      h' = (1 - f) * h + f * h~

- ``min_gru`` and ``min_lstm`` (Feng et al. 2024, "Were RNNs all we needed?"): the gates
  read x_t only, so h_t = a_t * h_{t-1} + b_t is a linear recurrence whose coefficients
  are known for every step at once, and training can use a parallel (associative) scan
  over time in log space. ``g`` keeps the candidate positive, as the paper's log-space
  form needs: g(v) = v + 0.5 for v >= 0, sigmoid(v) otherwise::

      min_gru:  z = sigmoid(x W_z + b_z);  h~ = g(x W_h + b_h)
                h' = (1 - z) * h + z * h~
      min_lstm: f = sigmoid(x W_f + b_f);  i = sigmoid(x W_i + b_i);  h~ = g(x W_h + b_h)
                h' = f / (f + i) * h + i / (f + i) * h~

  Their cells carry ``log_coefficients(params, px) -> (log a_t, log b_t)``, which
  ``jr.scan(..., parallel=True)`` uses.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells import base, checks


class MGUParams(NamedTuple):
    w_ih: jax.Array   # [input, 2H]: f, h~
    w_hh: jax.Array   # [H, 2H]
    b: jax.Array      # [2H]


class MinGRUParams(NamedTuple):
    w_ih: jax.Array   # [input, 2H]: z, h~
    b: jax.Array      # [2H]


class MinLSTMParams(NamedTuple):
    w_ih: jax.Array   # [input, 3H]: f, i, h~
    b: jax.Array      # [3H]


class MinimalCarry(NamedTuple):
    h: jax.Array      # [..., H]


def g(v):
    """The positive candidate activation of minGRU/minLSTM."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def log_g(v):
    return jnp.where(v >= 0, jnp.log(jnp.maximum(v, 0.0) + 0.5), -jax.nn.softplus(-v))


def _common(name, H, compute, pdt, blocks, with_recurrent, forget_bias):
    def init(key, input_size: int):
        I = base.check_positive_int("input_size", input_size)
        k_ih, k_hh = jax.random.split(key)
        w_ih = base.glorot_init(k_ih, (I, blocks * H), pdt)
        b = jnp.zeros((blocks * H,), pdt)
        if forget_bias:
            b = b.at[:H].set(forget_bias)   # the first block is the forget/update gate
        if with_recurrent:
            return MGUParams(w_ih, base.orthogonal_blocks(k_hh, H, H, blocks, pdt), b)
        return (MinGRUParams if blocks == 2 else MinLSTMParams)(w_ih, b)

    def input_size(params):
        return params.w_ih.shape[0]

    def initial_carry(params, batch_shape=()):
        return base.zeros_carry(MinimalCarry, (H,), batch_shape, params.w_ih.dtype)

    def split(params):
        if with_recurrent:
            ws = (params.w_hh[:, :H], params.w_hh[:, H:])
            return params.w_ih, ws, params._replace(w_ih=None, w_hh=None)
        return params.w_ih, (), params._replace(w_ih=None)

    finish_input = base.add_bias

    def output(carry):
        return carry.h

    def recurrence(update):
        return base.Recurrence(split, finish_input, update, base.matmul_in(compute))

    return init, input_size, initial_carry, recurrence, output


def mgu(hidden_size: int, *, forget_bias: float = 1.0, dtype=None,
        param_dtype=jnp.float32) -> base.Cell:
    """The minimal gated unit (one gate, Zhou et al. 2016)."""
    H = checks.check_positive_int("hidden_size", hidden_size, where="mgu")
    forget_bias = checks.check_finite_float("forget_bias", forget_bias, where="mgu")
    compute = base.resolve_dtype(dtype, where="mgu")
    pdt = base.param_dtype_of(param_dtype, where="mgu")
    init, input_size, initial_carry, recurrence, output = _common(
        "mgu", H, compute, pdt, 2, True, forget_bias)

    def update(pw, carry, px, mm, rec_mask=None):
        h = carry.h
        h_in = base.apply_rec_mask(h, rec_mask)
        x_f, x_h = jnp.split(px, 2, axis=-1)
        f = jax.nn.sigmoid(x_f + mm(0, h_in))
        cand = jnp.tanh(x_h + mm(1, f * h_in.astype(f.dtype)))
        return MinimalCarry(((1.0 - f) * h.astype(f.dtype) + f * cand).astype(h.dtype))

    return base.make_cell(init=init, initial_carry=initial_carry, recurrence=recurrence(update),
                          output=output, input_size=input_size,
                          hidden_size=H, output_size=H, name="mgu",
                          options=dict(hidden_size=H, forget_bias=forget_bias,
                                       dtype=dtype, param_dtype=pdt))


def min_gru(hidden_size: int, *, dtype=None, param_dtype=jnp.float32) -> base.Cell:
    """minGRU: a GRU whose gates read x_t only (Feng et al. 2024)."""
    H = checks.check_positive_int("hidden_size", hidden_size, where="min_gru")
    compute = base.resolve_dtype(dtype, where="min_gru")
    pdt = base.param_dtype_of(param_dtype, where="min_gru")
    init, input_size, initial_carry, recurrence, output = _common(
        "min_gru", H, compute, pdt, 2, False, 0.0)

    def update(pw, carry, px, mm, rec_mask=None):
        del mm, rec_mask  # no recurrent weights: nothing to multiply or drop
        k_z, k_h = jnp.split(px, 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        h = carry.h
        return MinimalCarry(((1.0 - z) * h.astype(z.dtype) + z * g(k_h)).astype(h.dtype))

    def log_coefficients(params, px):
        k_z, k_h = jnp.split(px, 2, axis=-1)
        log_a = -jax.nn.softplus(k_z)           # log(1 - z)
        log_b = -jax.nn.softplus(-k_z) + log_g(k_h)
        return log_a, log_b

    return base.make_cell(init=init, initial_carry=initial_carry, recurrence=recurrence(update),
                          log_coefficients=log_coefficients, output=output, input_size=input_size,
                          hidden_size=H, output_size=H, name="min_gru",
                          options=dict(hidden_size=H, dtype=dtype, param_dtype=pdt))


def min_lstm(hidden_size: int, *, forget_bias: float = 1.0, dtype=None,
             param_dtype=jnp.float32) -> base.Cell:
    """minLSTM: an LSTM whose gates read x_t only, normalized f' + i' = 1 (Feng et al. 2024)."""
    H = checks.check_positive_int("hidden_size", hidden_size, where="min_lstm")
    forget_bias = checks.check_finite_float("forget_bias", forget_bias, where="min_lstm")
    compute = base.resolve_dtype(dtype, where="min_lstm")
    pdt = base.param_dtype_of(param_dtype, where="min_lstm")
    init, input_size, initial_carry, recurrence, output = _common(
        "min_lstm", H, compute, pdt, 3, False, forget_bias)

    def update(pw, carry, px, mm, rec_mask=None):
        del mm, rec_mask
        k_f, k_i, k_h = jnp.split(px, 3, axis=-1)
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        h = carry.h
        return MinimalCarry(((f * h.astype(f.dtype) + i * g(k_h)) / (f + i)).astype(h.dtype))

    def log_coefficients(params, px):
        k_f, k_i, k_h = jnp.split(px, 3, axis=-1)
        log_f, log_i = -jax.nn.softplus(-k_f), -jax.nn.softplus(-k_i)
        log_norm = jnp.logaddexp(log_f, log_i)
        return log_f - log_norm, log_i - log_norm + log_g(k_h)

    return base.make_cell(init=init, initial_carry=initial_carry, recurrence=recurrence(update),
                          log_coefficients=log_coefficients, output=output, input_size=input_size,
                          hidden_size=H, output_size=H, name="min_lstm",
                          options=dict(hidden_size=H, forget_bias=forget_bias,
                                       dtype=dtype, param_dtype=pdt))
