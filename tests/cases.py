"""The table of cells under test, shared by the test modules.

Each case builds a cell, knows its float64 NumPy reference (tests/_reference.py), and
makes random parameters: every leaf of ``cell.init`` replaced by a random normal draw,
so nothing hides behind zero biases or a symmetric default init.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from tests import _reference as ref


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable          # (**dtype kwargs) -> Cell
    reference: Callable     # (np params dict, xs, carry tuple) -> (ys, carry tuple)
    input_size: int = 3
    spatial: tuple = ()     # spatial shape for conv cells

    def cell(self, **kw):
        return self.make(**kw)

    def xs_shape(self, T):
        return (T,) + self.spatial + (self.input_size,)


def _r(fn, **kw):
    return lambda p, xs, carry: fn(p, xs, *carry, **kw)


H = 4
CASES = [
    Case("simple_tanh", lambda **kw: jr.simple_rnn(H, **kw), _r(ref.simple_rnn)),
    Case("simple_relu", lambda **kw: jr.simple_rnn(H, nonlinearity="relu", **kw),
         _r(ref.simple_rnn, nonlinearity="relu")),
    Case("lstm", lambda **kw: jr.lstm(H, **kw), _r(ref.lstm)),
    Case("lstm_peephole", lambda **kw: jr.lstm(H, peephole=True, **kw), _r(ref.lstm, peephole=True)),
    Case("lstm_coupled", lambda **kw: jr.lstm(H, coupled=True, **kw), _r(ref.lstm, coupled=True)),
    Case("lstm_coupled_peephole", lambda **kw: jr.lstm(H, coupled=True, peephole=True, **kw),
         _r(ref.lstm, coupled=True, peephole=True)),
    Case("lstm_layer_norm", lambda **kw: jr.lstm(H, layer_norm=True, **kw), _r(ref.lstm, layer_norm_=True)),
    Case("lstm_proj", lambda **kw: jr.lstm(H, proj_size=2, **kw), _r(ref.lstm, proj=True)),
    Case("gru", lambda **kw: jr.gru(H, **kw), _r(ref.gru)),
    Case("gru_cho", lambda **kw: jr.gru(H, reset_after=False, **kw), _r(ref.gru, reset_after=False)),
    Case("mgu", lambda **kw: jr.mgu(H, **kw), _r(ref.mgu)),
    Case("min_gru", lambda **kw: jr.min_gru(H, **kw), _r(ref.min_gru)),
    Case("min_lstm", lambda **kw: jr.min_lstm(H, **kw), _r(ref.min_lstm)),
    Case("conv_lstm_1d", lambda **kw: jr.conv_lstm(2, 3, spatial_dims=1, **kw), _r(ref.conv_lstm),
         input_size=2, spatial=(5,)),
    Case("conv_lstm_2d", lambda **kw: jr.conv_lstm(2, (3, 2), spatial_dims=2, **kw), _r(ref.conv_lstm),
         input_size=2, spatial=(4, 3)),
]
IDS = [c.id for c in CASES]


def random_params(cell, input_size, seed=0, scale=0.5, dtype=jnp.float32):
    params = cell.init(jax.random.PRNGKey(seed), input_size)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed + 1)
    new = [jnp.asarray(rng.normal(size=np.shape(l)) * scale, dtype) for l in leaves]
    return jax.tree.unflatten(treedef, new)


def random_carry(cell, params, x_t, seed=0, scale=0.5):
    carry = cell.carry_for_input(params, x_t)
    rng = np.random.default_rng(seed + 7)
    return jax.tree.map(lambda l: jnp.asarray(rng.normal(size=l.shape) * scale, l.dtype), carry)


def to_numpy(params):
    return {k: np.asarray(v, np.float64) for k, v in params._asdict().items() if v is not None}


def weighted_loss(ys, carry):
    """Weighs every output and every carry leaf differently, so no gradient hides."""
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    out = jnp.sum(ys * w) + jnp.sum(jnp.tanh(ys) ** 2)
    for k, leaf in enumerate(jax.tree.leaves(carry)):
        out = out + jnp.sum(jnp.sin((k + 2.0) * leaf))
    return out
