"""The vanilla (Elman) RNN: S_t = f(x_t U + S_{t-1} W + b), f = tanh or relu."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells import base, checks


class SimpleRNNParams(NamedTuple):
    w_ih: jax.Array   # [input, H]  (U in the write-ups)
    w_hh: jax.Array   # [H, H]      (W in the write-ups)
    b: jax.Array      # [H]


class SimpleRNNCarry(NamedTuple):
    h: jax.Array      # [..., H]  (S_t in the write-ups)


_NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def simple_rnn(hidden_size: int, *, nonlinearity: str = "tanh", dtype=None,
               param_dtype=jnp.float32) -> base.Cell:
    """A vanilla RNN cell with a ``tanh`` or ``relu`` nonlinearity."""
    w = "simple_rnn"
    H = checks.check_positive_int("hidden_size", hidden_size, where=w)
    act = _NONLINEARITIES[checks.check_choice("nonlinearity", nonlinearity,
                                              sorted(_NONLINEARITIES), where=w)]
    compute = base.resolve_dtype(dtype, where=w)
    pdt = base.param_dtype_of(param_dtype, where=w)
    name = "simple_rnn"

    def init(key, input_size: int) -> SimpleRNNParams:
        I = base.check_positive_int("input_size", input_size)
        k_ih, k_hh = jax.random.split(key)
        return SimpleRNNParams(base.glorot_init(k_ih, (I, H), pdt),
                               base.orthogonal_blocks(k_hh, H, H, 1, pdt),
                               jnp.zeros((H,), pdt))

    def input_size(params):
        return params.w_ih.shape[0]

    def initial_carry(params, batch_shape=()):
        return base.zeros_carry(SimpleRNNCarry, (H,), batch_shape, params.w_hh.dtype)

    split, finish_input = base.split_one_map, base.add_bias

    def update(pw, carry, px, mm, rec_mask=None):
        z = mm(0, base.apply_rec_mask(carry.h, rec_mask))
        return SimpleRNNCarry(act(z + px.astype(z.dtype)).astype(carry.h.dtype))

    def output(carry):
        return carry.h

    return base.make_cell(init=init, initial_carry=initial_carry,
                          recurrence=base.Recurrence(split, finish_input, update,
                                                     base.matmul_in(compute)),
                          output=output, input_size=input_size,
                          hidden_size=H, output_size=H, name=name,
                          options=dict(hidden_size=H, nonlinearity=nonlinearity,
                                       dtype=dtype, param_dtype=pdt))
