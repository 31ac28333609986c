"""Flax linen RNN cells run here, number for number.

::

    cell, params = jr.interop.from_flax_linen(flax_cell, variables)
    carry = jr.interop.carry_from_flax(cell, flax_carry)    # LSTM: flax (c, h) -> LSTMCarry(h, c)
    ys, carry = jr.scan(cell, params, xs)                   # == nn.RNN(flax_cell)
    variables = jr.interop.to_flax_linen(flax_cell, params) # and back

Supported: ``LSTMCell`` and ``OptimizedLSTMCell`` (same parameter tree; gates i, f, g, o,
one bias per gate on the recurrent Dense ``h*``) -> ``jr.lstm``; ``GRUCell`` (gates r, z, n;
biases on the input Dense ``i*`` plus ``hn``'s bias inside the reset product, i.e. the
reset-after form) -> ``jr.gru(reset_after=True)`` with ``b_hh = [0, 0, b_hn]``;
``SimpleCell`` (tanh or relu; ``residual=True`` folds the identity into ``w_hh``) ->
``jr.simple_rnn``. Cells with other ``gate_fn``/``activation_fn`` are refused rather than
approximated. Flax kernels are ``[in, out]`` like jaxrnn's, so nothing is transposed.

flax is imported inside the functions that need it, so importing this module does not.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells import registry
from jaxrnn.cells.base import Cell
from jaxrnn.cells.gru import GRUCarry, GRUParams
from jaxrnn.cells.lstm import LSTMCarry, LSTMParams
from jaxrnn.cells.simple import SimpleRNNCarry, SimpleRNNParams

__all__ = ["carry_from_flax", "carry_to_flax", "from_flax_linen", "to_flax_linen"]


# --------------------------------------------------------------------------- one kind each
# ``p`` is a flax cell's params dict: {"ii": {"kernel": ...}, "hi": {"kernel", "bias"}, ...}.

def _lstm_from_flax(p, flax_cell) -> LSTMParams:
    cat = lambda prefix, leaf: jnp.concatenate([jnp.asarray(p[f"{prefix}{g}"][leaf])
                                                for g in "ifgo"], axis=-1)
    return LSTMParams(cat("i", "kernel"), cat("h", "kernel"), cat("h", "bias"))


def _lstm_to_flax(params, flax_cell):
    if not isinstance(params, LSTMParams) or any(
            x is not None for x in (params.w_peep, params.ln_x, params.ln_h, params.ln_c,
                                    params.w_proj)):
        raise ValueError("a flax LSTM cell needs plain LSTMParams (no peephole, layer "
                         "norm or projection)")
    if params.w_ih.shape[-1] != 4 * params.w_hh.shape[0]:
        raise ValueError("a flax LSTM cell needs a 4-gate LSTM (not coupled)")
    wi, wh, b = (jnp.split(a, 4, axis=-1) for a in (params.w_ih, params.w_hh, params.b))
    out = {}
    for j, g in enumerate("ifgo"):
        out[f"i{g}"] = {"kernel": wi[j]}
        out[f"h{g}"] = {"kernel": wh[j], "bias": b[j]}
    return out


def _gru_from_flax(p, flax_cell) -> GRUParams:
    cat = lambda prefix, leaf: jnp.concatenate([jnp.asarray(p[f"{prefix}{g}"][leaf])
                                                for g in "rzn"], axis=-1)
    b_hn = jnp.asarray(p["hn"]["bias"])
    # flax has no recurrent r and z biases: they are zeros of the reset-after GRU
    b_hh = jnp.concatenate([jnp.zeros((2 * b_hn.shape[-1],), b_hn.dtype), b_hn])
    return GRUParams(cat("i", "kernel"), cat("h", "kernel"), cat("i", "bias"), b_hh)


def _gru_to_flax(params, flax_cell):
    if not isinstance(params, GRUParams):
        raise ValueError(f"a flax GRUCell needs GRUParams, got {type(params).__name__}")
    wi, wh, bi, bh = (jnp.split(a, 3, axis=-1)
                      for a in (params.w_ih, params.w_hh, params.b_ih, params.b_hh))
    # b_hr and b_hz add to x W_r and x W_z outside the reset product: fold them in (exact).
    return {"ir": {"kernel": wi[0], "bias": bi[0] + bh[0]},
            "iz": {"kernel": wi[1], "bias": bi[1] + bh[1]},
            "in": {"kernel": wi[2], "bias": bi[2]},
            "hr": {"kernel": wh[0]}, "hz": {"kernel": wh[1]},
            "hn": {"kernel": wh[2], "bias": bh[2]}}


def _simple_from_flax(p, flax_cell) -> SimpleRNNParams:
    w_hh = jnp.asarray(p["h"]["kernel"])
    if flax_cell.residual:   # flax adds h inside the activation: f(x W + h U + h + b)
        w_hh = w_hh + jnp.eye(w_hh.shape[0], dtype=w_hh.dtype)
    return SimpleRNNParams(jnp.asarray(p["i"]["kernel"]), w_hh, jnp.asarray(p["i"]["bias"]))


def _simple_to_flax(params, flax_cell):
    if not isinstance(params, SimpleRNNParams):
        raise ValueError(f"a flax SimpleCell needs SimpleRNNParams, got {type(params).__name__}")
    w_hh = params.w_hh
    if flax_cell.residual:
        w_hh = w_hh - jnp.eye(w_hh.shape[0], dtype=w_hh.dtype)
    return {"i": {"kernel": params.w_ih, "bias": params.b}, "h": {"kernel": w_hh}}


class _Kind(NamedTuple):
    load: Callable      # (flax params dict, flax cell) -> jaxrnn params
    save: Callable      # (jaxrnn params, flax cell) -> flax params dict
    gated: bool         # has a gate_fn that must be sigmoid
    cells: dict         # activation ("tanh"/"relu") -> registry name of the jaxrnn cell


_KINDS = {
    "lstm": _Kind(_lstm_from_flax, _lstm_to_flax, True, {"tanh": "lstm"}),
    # the registry's "gru" is the reset-after form, which is flax's GRUCell
    "gru": _Kind(_gru_from_flax, _gru_to_flax, True, {"tanh": "gru"}),
    "simple": _Kind(_simple_from_flax, _simple_to_flax, False,
                    {"tanh": "simple_rnn", "relu": "simple_rnn_relu"}),
}


def _kind_of(flax_cell) -> tuple[_Kind, str]:
    """The cell's kind and the registry name of the jaxrnn cell; refuses what differs."""
    import flax.linen as nn

    # OptimizedLSTMCell is not a subclass of LSTMCell; test the exact classes.
    classes = ((nn.OptimizedLSTMCell, "lstm"), (nn.LSTMCell, "lstm"), (nn.GRUCell, "gru"),
               (nn.SimpleCell, "simple"))
    name = next((k for cls, k in classes if isinstance(flax_cell, cls)), None)
    if name is None:
        raise TypeError(f"from_flax_linen supports flax.linen LSTMCell, OptimizedLSTMCell, "
                        f"GRUCell and SimpleCell, got {type(flax_cell).__name__}")
    kind = _KINDS[name]
    if kind.gated and flax_cell.gate_fn is not nn.sigmoid:
        raise ValueError(f"{type(flax_cell).__name__}: only gate_fn=sigmoid is supported")
    acts = {"tanh": nn.tanh, "relu": nn.relu}
    act = getattr(flax_cell, "activation_fn", nn.tanh)
    cell = next((kind.cells[a] for a in kind.cells if acts[a] is act), None)
    if cell is None:
        raise ValueError(f"{type(flax_cell).__name__}: activation_fn {act} is not supported "
                         f"({' or '.join(kind.cells)})")
    return kind, cell


def _unwrap_flax_params(variables):
    """Accepts ``{'params': {...}}``, the inner dict, or an ``nn.RNN``'s ``{'cell': {...}}``."""
    p = variables
    if hasattr(p, "unfreeze"):
        p = p.unfreeze()
    if "params" in p:
        p = p["params"]
    if set(p) == {"cell"}:
        p = p["cell"]
    return p


def from_flax_linen(flax_cell, variables, *, dtype=None, param_dtype=None):
    """Loads the params of a Flax linen RNN cell into the equivalent jaxrnn cell.

    Args:
      flax_cell: the (unbound) cell module, e.g. ``nn.LSTMCell(features=64)``; it gives
        the kind and checks ``gate_fn``/``activation_fn``.
      variables: its variables ``{'params': {...}}`` (or the inner dict, or the
        variables of ``nn.RNN(flax_cell)``, whose cell params sit under ``'cell'``).
      dtype, param_dtype: the jaxrnn cell's; default the flax cell's ``dtype`` and the
        params' dtype.

    Returns:
      ``(cell, params)`` such that ``jr.scan(cell, params, xs, carry_from_flax(cell, c0))``
      equals ``nn.RNN(flax_cell)`` (ys, and the final carry via :func:`carry_from_flax`).

    Mapping:

    - LSTMCell / OptimizedLSTMCell: ``w_ih = [ii|if|ig|io].kernel``,
      ``w_hh = [hi|hf|hg|ho].kernel``, ``b = [hi|hf|hg|ho].bias``.
    - GRUCell: ``w_ih = [ir|iz|in].kernel``, ``b_ih = [ir|iz|in].bias``,
      ``w_hh = [hr|hz|hn].kernel``, ``b_hh = [0|0|hn.bias]`` (reset-after form).
    - SimpleCell: ``w_ih = i.kernel``, ``b = i.bias``, ``w_hh = h.kernel`` (+ identity
      if ``residual``).
    """
    kind, name = _kind_of(flax_cell)
    p = _unwrap_flax_params(variables)
    try:
        params = kind.load(p, flax_cell)
    except (KeyError, TypeError) as e:
        raise ValueError(f"variables do not look like {type(flax_cell).__name__} params "
                         f"(missing {e}); got keys {sorted(p) if hasattr(p, 'keys') else p}")
    H = params.w_hh.shape[0]
    if H != flax_cell.features:
        raise ValueError(f"params have hidden size {H}, but the cell has features={flax_cell.features}")
    pdt = jnp.dtype(param_dtype) if param_dtype is not None else params.w_ih.dtype
    params = jax.tree.map(lambda a: a.astype(pdt), params)
    dtype = flax_cell.dtype if dtype is None else dtype
    return registry.make(name, H, dtype=dtype, param_dtype=pdt), params


def to_flax_linen(flax_cell, params):
    """jaxrnn cell params as the variables ``{'params': {...}}`` of ``flax_cell``.

    The inverse of :func:`from_flax_linen`. A GRU's recurrent r and z biases (which
    flax does not have) are folded into the input biases, which is exact; an LSTM must
    be plain (no peephole, layer norm or projection). Wrap the result as
    ``{'params': {'cell': ...}}`` for an ``nn.RNN``.
    """
    kind, _ = _kind_of(flax_cell)
    return {"params": kind.save(params, flax_cell)}


def carry_from_flax(cell: Cell, flax_carry):
    """A flax cell's carry as the jaxrnn cell's: LSTM ``(c, h)`` -> ``LSTMCarry(h, c)``;
    GRU and SimpleCell ``h`` -> ``GRUCarry(h)`` / ``SimpleRNNCarry(h)``.

    The layout follows from the structure of the cell's own carry (its fields), not from the
    cell's name, so any cell with an ``(h, c)`` or ``(h,)`` carry converts."""
    try:
        params = jax.eval_shape(lambda: cell.init(jax.random.PRNGKey(0), 1))
        template = jax.eval_shape(cell.initial_carry, params)
    except ValueError as e:
        raise ValueError(f"no flax carry layout for a {cell.name!r} cell ({e})") from None
    kind = type(template)
    fields = getattr(template, "_fields", None)
    if fields == ("h", "c"):
        if not isinstance(flax_carry, (tuple, list)) or len(flax_carry) != 2:
            raise ValueError("a flax LSTM carry is a pair (c, h)")
        c, h = flax_carry
        return kind(h=jnp.asarray(h), c=jnp.asarray(c))
    if fields == ("h",):
        return kind(jnp.asarray(flax_carry))
    raise ValueError(f"no flax carry layout for a {cell.name!r} cell (carry fields {fields})")


def carry_to_flax(carry):
    """A jaxrnn carry in flax's layout: ``LSTMCarry(h, c)`` -> ``(c, h)``; else ``h``."""
    if isinstance(carry, LSTMCarry):
        return (carry.c, carry.h)
    if isinstance(carry, (GRUCarry, SimpleRNNCarry)):
        return carry.h
    raise ValueError(f"no flax carry layout for {type(carry).__name__}")
