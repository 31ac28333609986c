"""The convolutional LSTM (Shi et al. 2015): an LSTM whose gates are convolutions.

Inputs and carries are feature maps with channels last: ``x_t`` is ``[*spatial, C_in]``
and ``h, c`` are ``[*spatial, channels]`` (``spatial_dims`` = 1, 2 or 3 axes). Gate order
i, f, g, o; 'SAME' padding and stride 1 keep the spatial shape::

    i, f, g, o = split(conv(x, W) + conv(h, U) + b)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g);   h' = sigmoid(o) * tanh(c')

``initial_carry(params, batch_shape)`` takes every axis but the channels, e.g.
``(B, H, W)``; ``jr.scan`` infers it from the input.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import base, checks
from jaxrnn.cells.lstm import LSTMCarry


class ConvLSTMParams(NamedTuple):
    w_ih: jax.Array   # [*kernel, C_in, 4C]
    w_hh: jax.Array   # [*kernel, C, 4C]
    b: jax.Array      # [4C]


_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def conv_lstm(channels: int, kernel_size: Union[int, Sequence[int]] = 3, *,
              spatial_dims: int = 2, forget_bias: float = 1.0, dtype=None,
              param_dtype=jnp.float32) -> base.Cell:
    """A convolutional LSTM over 1-D, 2-D or 3-D feature maps (channels last)."""
    w = "conv_lstm"
    C = checks.check_positive_int("channels", channels, where=w)
    spatial_dims = checks.check_positive_int("spatial_dims", spatial_dims, where=w)
    if spatial_dims not in _SPATIAL:
        raise checks.InvalidArgumentValue(
            f"conv_lstm: spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    # any positive kernel size: 'SAME' padding keeps the spatial shape for even sizes too
    if isinstance(kernel_size, (tuple, list)):
        kernel = tuple(checks.check_positive_int(f"kernel_size[{i}]", k, where=w)
                       for i, k in enumerate(kernel_size))
        if len(kernel) != spatial_dims:
            raise checks.InvalidArgumentValue(
                f"conv_lstm: kernel_size {tuple(kernel_size)!r} has {len(kernel)} entries, "
                f"expected one per spatial axis (spatial_dims={spatial_dims})")
    else:
        kernel = (checks.check_positive_int("kernel_size", kernel_size, where=w),) * spatial_dims
    forget_bias = checks.check_finite_float("forget_bias", forget_bias, where=w)
    compute = base.resolve_dtype(dtype, where=w)
    pdt = base.param_dtype_of(param_dtype, where=w)
    sp = _SPATIAL[spatial_dims]
    dims = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    name = "conv_lstm"

    def conv(x, w):
        lead = x.shape[:-(spatial_dims + 1)]
        flat = x.reshape((-1,) + x.shape[len(lead):])
        common = base.compute_dtypes(flat, w, compute)
        flat, w = flat.astype(common), w.astype(common)
        acc = base.accumulator(common)
        y = jax.lax.conv_general_dilated(flat, w, (1,) * spatial_dims, "SAME",
                                         dimension_numbers=dims,
                                         preferred_element_type=acc)
        return y.reshape(lead + y.shape[1:])

    def init(key, input_size: int) -> ConvLSTMParams:
        I = base.check_positive_int("input_size", input_size)
        k_ih, k_hh = jax.random.split(key)
        fan = int(np.prod(kernel))
        w_ih = base.uniform_init(k_ih, kernel + (I, 4 * C), float(np.sqrt(6.0 / (fan * (I + 4 * C)))), pdt)
        w_hh = base.uniform_init(k_hh, kernel + (C, 4 * C), float(np.sqrt(6.0 / (fan * (C + 4 * C)))), pdt)
        b = jnp.zeros((4, C), pdt).at[1].set(forget_bias).reshape(4 * C)
        return ConvLSTMParams(w_ih, w_hh, b)

    def input_size(params):
        return params.w_ih.shape[-2]

    def initial_carry(params, batch_shape=()):
        batch_shape = checks.check_batch_shape("batch_shape", batch_shape, where=w)
        if len(batch_shape) < spatial_dims:
            raise checks.InvalidArgumentValue(f"conv_lstm: initial_carry needs batch_shape=(*batch, *spatial) "
                             f"with {spatial_dims} spatial axes, got {batch_shape}")
        return base.zeros_carry(LSTMCarry, (C, C), batch_shape, params.w_hh.dtype)

    def carry_for_input(params, x_t):
        return initial_carry(params, jnp.shape(x_t)[:-1])

    split, finish_input = base.split_one_map, base.add_bias

    def update(pw, carry, px, mm, rec_mask=None):
        z = mm(0, base.apply_rec_mask(carry.h, rec_mask))
        z = z + px.astype(z.dtype)
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(zf) * carry.c.astype(z.dtype) + jax.nn.sigmoid(zi) * jnp.tanh(zg)
        h = jax.nn.sigmoid(zo) * jnp.tanh(c)
        return LSTMCarry(h.astype(carry.h.dtype), c.astype(carry.c.dtype))

    def output(carry):
        return carry.h

    return base.make_cell(init=init, initial_carry=initial_carry,
                          recurrence=base.Recurrence(split, finish_input, update, conv),
                          spatial_dims=spatial_dims, output=output, input_size=input_size,
                          hidden_size=C, output_size=C, name=name,
                          carry_for_input=carry_for_input,
                          options=dict(channels=C, kernel_size=kernel,
                                       spatial_dims=spatial_dims, forget_bias=forget_bias,
                                       dtype=dtype, param_dtype=pdt))
