"""Interop: run PyTorch ``nn.RNN/LSTM/GRU`` and Flax linen cells here, number for number.

PyTorch
-------
::

    net, params = jr.interop.from_torch(module)          # nn.RNN, nn.LSTM or nn.GRU
    ys, carry = net.apply(params, xs)                    # ONE sequence [T, input]
    ys, carry = jax.vmap(net.apply)(params_b, xs_b)      # or vmap over a batch (see below)
    h_n, c_n = jr.interop.carry_to_torch(carry)          # PyTorch's [L*D, B, H] layout
    module2 = jr.interop.to_torch(net, params)           # and back

``net`` is always ``jr.stack`` of ``num_layers`` layers, each ``jr.layer(cell)`` or, for
``bidirectional=True``, ``jr.bidirectional(cell)`` (both directions' parameters stacked on
a leading axis of 2). Params and carries are tuples with one entry per layer; a
bidirectional layer's carry is ``(carry_fw, carry_bw)``. The net's ``apply`` works on one
sequence; for a batch use ``jax.vmap(net.apply, in_axes=(None, 0, 0), ...)`` or
:func:`apply_like_torch`, which takes and returns tensors in PyTorch's layout (``batch_first``
included). Variable lengths: ``seq_lengths`` gives the same numbers as
``pack_padded_sequence`` (outputs past a sequence's length are zero, the final carry is
the one at its length, the backward direction reads the real last token first).

Weight layout: jaxrnn computes ``x @ W``, so ``w_ih = weight_ih_l{k}.T``. Gate orders
are PyTorch's (LSTM i, f, g, o; GRU r, z, n), so no gate is reordered.

- LSTM and RNN: jaxrnn keeps one bias ``b = bias_ih + bias_hh``. Going back,
  :func:`to_state_dict` writes ``bias_ih = b`` and ``bias_hh = 0``: the module computes
  exactly the same function, though the split of the two biases is not recovered.
- GRU: ``b_ih`` and ``b_hh`` are kept apart (``b_hn`` sits inside the reset product).
- ``bias=False``: biases are zeros in jaxrnn; converting back to a ``bias=False``
  module raises if they have become nonzero (e.g. after training them).
- ``proj_size``: ``w_proj = weight_hr_l{k}.T`` (``[H, P]``); ``w_hh`` is ``[P, 4H]``.
- Dtypes: params keep the module's dtype (float64 needs ``jax_enable_x64``, else float32).

A :class:`TorchConfig` (the module's constructor arguments) describes the network.
Nets made by :func:`from_torch` or :func:`torch_net` remember theirs, so :func:`to_torch`
and friends accept either the net or the config.

Flax linen
----------
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
``jr.simple_rnn``. Cells with other ``gate_fn``/``activation_fn`` are refused.

torch and flax are imported lazily, inside the functions that need them:
``import jaxrnn`` never imports either.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import layers as layers_lib
from jaxrnn.cells.base import Cell
from jaxrnn.cells.gru import GRUCarry, GRUParams, gru
from jaxrnn.cells.lstm import LSTMCarry, LSTMParams, lstm
from jaxrnn.cells.simple import SimpleRNNCarry, SimpleRNNParams, simple_rnn

__all__ = [
    "TorchConfig", "apply_like_torch", "carry_from_flax", "carry_from_torch", "carry_to_flax",
    "carry_to_torch", "config_from_state_dict", "config_from_torch", "config_of",
    "from_flax_linen", "from_state_dict", "from_torch", "to_flax_linen", "to_state_dict",
    "to_torch", "torch_net",
]

_MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# =========================================================================== PyTorch

class TorchConfig(NamedTuple):
    """The constructor arguments of a PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU``.

    ``mode`` is PyTorch's own ``module.mode``: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"``
    or ``"GRU"`` (an ``nn.RNN``'s ``nonlinearity`` is part of its mode).
    """

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Width of the layer outputs (``proj_size or hidden_size``) of ONE direction."""
        return self.proj_size or self.hidden_size

    def layer_input_size(self, k: int) -> int:
        return self.input_size if k == 0 else self.output_size * self.num_directions


def _check_config(config: TorchConfig) -> TorchConfig:
    if not isinstance(config, TorchConfig):
        raise TypeError(f"expected a TorchConfig, got {type(config).__name__}")
    if config.mode not in _MODES:
        raise ValueError(f"unknown mode {config.mode!r}; choose one of {_MODES}")
    if config.proj_size and config.mode != "LSTM":
        raise ValueError(f"proj_size is only supported by LSTM, got mode {config.mode!r}")
    if config.num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {config.num_layers}")
    return config


# Nets made here remember their config (a Layer is a NamedTuple, so the net's ``apply``
# function is the key; it lives as long as the net does).
_CONFIGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def config_of(net_or_config) -> TorchConfig:
    """The :class:`TorchConfig` of a net made by :func:`from_torch`/:func:`torch_net`
    (or the config itself)."""
    if isinstance(net_or_config, TorchConfig):
        return _check_config(net_or_config)
    if isinstance(net_or_config, layers_lib.Layer):
        config = _CONFIGS.get(net_or_config.apply)
        if config is not None:
            return config
        raise ValueError(
            "this net was not made by jr.interop.from_torch or jr.interop.torch_net, so its "
            "PyTorch configuration is unknown; pass a jr.interop.TorchConfig instead")
    raise TypeError(f"expected a net made by jr.interop or a TorchConfig, got "
                    f"{type(net_or_config).__name__}")


def torch_net(config: TorchConfig, *, dtype=None, param_dtype=jnp.float32) -> layers_lib.Layer:
    """The jaxrnn network computing what a PyTorch module with this ``config`` computes.

    Returns ``jr.stack`` of ``config.num_layers`` layers (``jr.layer`` or
    ``jr.bidirectional``), with ``config.dropout`` between layers (active only when
    ``apply`` gets a ``key``, as PyTorch's is only in training mode).
    """
    config = _check_config(config)
    H = config.hidden_size
    if config.mode == "LSTM":
        cell = lstm(H, proj_size=config.proj_size or None, dtype=dtype, param_dtype=param_dtype)
    elif config.mode == "GRU":
        cell = gru(H, reset_after=True, dtype=dtype, param_dtype=param_dtype)
    else:
        nonlin = "tanh" if config.mode == "RNN_TANH" else "relu"
        cell = simple_rnn(H, nonlinearity=nonlin, dtype=dtype, param_dtype=param_dtype)
    make = layers_lib.bidirectional if config.bidirectional else layers_lib.layer
    net = layers_lib.stack([make(cell) for _ in range(config.num_layers)],
                           dropout=config.dropout)
    _CONFIGS[net.apply] = config
    return net


def config_from_torch(module) -> TorchConfig:
    """The :class:`TorchConfig` of a ``torch.nn.RNN``, ``LSTM`` or ``GRU``."""
    import torch

    if not isinstance(module, torch.nn.RNNBase) or getattr(module, "mode", None) not in _MODES:
        raise TypeError(f"from_torch takes a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    return TorchConfig(mode=module.mode, input_size=int(module.input_size),
                       hidden_size=int(module.hidden_size), num_layers=int(module.num_layers),
                       bias=bool(module.bias), batch_first=bool(module.batch_first),
                       dropout=float(module.dropout), bidirectional=bool(module.bidirectional),
                       proj_size=int(getattr(module, "proj_size", 0) or 0))


def config_from_state_dict(state_dict, mode: str, *, batch_first: bool = False,
                           dropout: float = 0.0) -> TorchConfig:
    """Infers a :class:`TorchConfig` from a PyTorch RNN state dict and its ``mode``.

    The sizes, ``num_layers``, ``bidirectional``, ``bias`` and ``proj_size`` are read
    from the tensor names and shapes; ``mode`` (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``,
    ``"RNN_RELU"``) cannot be, nor ``batch_first`` and ``dropout``.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {_MODES}")
    if "weight_ih_l0" not in state_dict:
        raise ValueError("not a PyTorch RNN state dict: it has no 'weight_ih_l0'")
    w_ih = _shape(state_dict["weight_ih_l0"])
    G = _GATES[mode]
    if w_ih[0] % G:
        raise ValueError(f"weight_ih_l0 has {w_ih[0]} rows, not a multiple of {G} ({mode})")
    num_layers = 0
    while f"weight_ih_l{num_layers}" in state_dict:
        num_layers += 1
    proj = _shape(state_dict["weight_hr_l0"])[0] if "weight_hr_l0" in state_dict else 0
    return TorchConfig(mode=mode, input_size=int(w_ih[1]), hidden_size=int(w_ih[0] // G),
                       num_layers=num_layers, bias="bias_ih_l0" in state_dict,
                       batch_first=batch_first, dropout=dropout,
                       bidirectional="weight_ih_l0_reverse" in state_dict, proj_size=int(proj))


def _shape(t):
    return tuple(int(s) for s in t.shape)


def _to_numpy(t) -> np.ndarray:
    """A torch tensor (any device, bfloat16 included) or an array as a NumPy array."""
    if hasattr(t, "detach"):  # a torch tensor
        import torch

        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.float().numpy().astype(jnp.bfloat16)
        return t.numpy()
    return np.asarray(t)


def _jax_dtype(dtype):
    """``dtype`` as JAX will store it (float64 -> float32 without x64)."""
    return jax.dtypes.canonicalize_dtype(np.dtype(dtype))


def _expected_shapes(config: TorchConfig, k: int):
    G, H, P = _GATES[config.mode], config.hidden_size, config.proj_size
    shapes = {"weight_ih": (G * H, config.layer_input_size(k)),
              "weight_hh": (G * H, P or H)}
    if config.bias:
        shapes["bias_ih"] = (G * H,)
        shapes["bias_hh"] = (G * H,)
    if P:
        shapes["weight_hr"] = (P, H)
    return shapes


def _state_dict_keys(config: TorchConfig):
    """The state dict keys of the module, in PyTorch's order."""
    keys = []
    for k in range(config.num_layers):
        for suffix in ("", "_reverse")[:config.num_directions]:
            for name in _expected_shapes(config, k):
                keys.append(f"{name}_l{k}{suffix}")
    return keys


def from_state_dict(state_dict, config, *, param_dtype=None):
    """Converts a PyTorch RNN state dict to the params of :func:`torch_net` ``(config)``.

    Args:
      state_dict: ``module.state_dict()`` (torch tensors or arrays).
      config: a :class:`TorchConfig`, a net from :func:`torch_net`, or a mode string
        (``"LSTM"``, ...), in which case the rest is inferred (:func:`config_from_state_dict`).
      param_dtype: dtype of the params; default: that of the tensors (as JAX stores it).

    Returns:
      A tuple with one entry per layer: the cell's params (``LSTMParams``, ``GRUParams``
      or ``SimpleRNNParams``), stacked on a leading axis of 2 (forward, backward) for a
      bidirectional network.
    """
    config = (config_from_state_dict(state_dict, config) if isinstance(config, str)
              else config_of(config))
    expected = _state_dict_keys(config)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise ValueError(f"state dict does not match {config}: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    arrays = {k: _to_numpy(state_dict[k]) for k in expected}
    dtype = _jax_dtype(param_dtype if param_dtype is not None else arrays[expected[0]].dtype)

    params = []
    for k in range(config.num_layers):
        dirs = []
        for suffix in ("", "_reverse")[:config.num_directions]:
            t = {}
            for name, shape in _expected_shapes(config, k).items():
                a = arrays[f"{name}_l{k}{suffix}"]
                if tuple(a.shape) != shape:
                    raise ValueError(f"{name}_l{k}{suffix} has shape {tuple(a.shape)}, expected "
                                     f"{shape} for {config}")
                t[name] = a
            dirs.append(_layer_params(config, t, dtype))
        if config.bidirectional:
            params.append(jax.tree.map(lambda a, b: jnp.stack([a, b]), dirs[0], dirs[1]))
        else:
            params.append(dirs[0])
    return tuple(params)


def _layer_params(config: TorchConfig, t, dtype):
    G, H = _GATES[config.mode], config.hidden_size
    cast = lambda a: jnp.asarray(a, dtype=dtype)
    zeros = np.zeros((G * H,), np.float64)
    b_ih = t.get("bias_ih", zeros)
    b_hh = t.get("bias_hh", zeros)
    w_ih, w_hh = cast(t["weight_ih"].T), cast(t["weight_hh"].T)
    if config.mode == "GRU":
        return GRUParams(w_ih, w_hh, cast(b_ih), cast(b_hh))
    # Sum the two biases in float64 (then round once), as the cells keep a single bias.
    b = cast(np.asarray(b_ih, np.float64) + np.asarray(b_hh, np.float64))
    if config.mode == "LSTM":
        w_proj = cast(t["weight_hr"].T) if config.proj_size else None
        return LSTMParams(w_ih, w_hh, b, w_proj=w_proj)
    return SimpleRNNParams(w_ih, w_hh, b)


def from_torch(module, *, dtype=None, param_dtype=None):
    """Loads a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` as a jaxrnn network.

    Args:
      module: the PyTorch module (any ``num_layers``, ``bidirectional``, ``bias``,
        ``proj_size``, ``nonlinearity``, ``batch_first``, ``dropout``).
      dtype: compute dtype of the cells' matmuls (None: that of the params).
      param_dtype: dtype of the params; default: the module's (as JAX stores it).

    Returns:
      ``(net, params)``: ``net`` is a :class:`jaxrnn.Layer` (see :func:`torch_net`) whose
      ``apply(params, xs)`` on one sequence ``[T, input]`` returns ``(ys, carry)`` equal
      to the module's output for that sequence (``carry_to_torch(carry)`` is its
      ``h_n`` or ``(h_n, c_n)``).
    """
    config = config_from_torch(module)
    state = module.state_dict()
    pdt = _jax_dtype(param_dtype if param_dtype is not None
                     else _to_numpy(state["weight_ih_l0"].flatten()[:1]).dtype)
    net = torch_net(config, dtype=dtype, param_dtype=pdt)
    return net, from_state_dict(state, config, param_dtype=pdt)


def to_state_dict(net_or_config, params, *, as_numpy: bool = False):
    """Converts :func:`torch_net` params to a PyTorch RNN state dict.

    The result loads with ``load_state_dict(..., strict=True)`` into a module built from
    the same config (:func:`to_torch` does both). LSTM and RNN biases are written as
    ``bias_ih = b``, ``bias_hh = 0`` (same function; see the module docstring).

    Args:
      net_or_config: a net from :func:`from_torch`/:func:`torch_net`, or a :class:`TorchConfig`.
      params: the net's params.
      as_numpy: return NumPy arrays instead of torch tensors (then torch is not imported).

    Raises:
      ValueError: shapes that do not fit the config, or nonzero biases for ``bias=False``.
    """
    config = config_of(net_or_config)
    if not isinstance(params, tuple) or len(params) != config.num_layers:
        raise ValueError(f"expected a tuple of {config.num_layers} layer params, got "
                         f"{type(params).__name__}")
    G, H = _GATES[config.mode], config.hidden_size
    out = {}
    for k, p in enumerate(params):
        want = {"LSTM": LSTMParams, "GRU": GRUParams}.get(config.mode, SimpleRNNParams)
        if not isinstance(p, want):
            raise ValueError(f"layer {k}: expected {want.__name__}, got {type(p).__name__}")
        if config.mode == "LSTM" and any(x is not None for x in
                                         (p.w_peep, p.ln_x, p.ln_h, p.ln_c)):
            raise ValueError(f"layer {k}: peephole and layer-norm LSTMs have no PyTorch equivalent")
        for d, suffix in enumerate(("", "_reverse")[:config.num_directions]):
            q = jax.tree.map(lambda a: np.asarray(a[d]), p) if config.bidirectional else \
                jax.tree.map(np.asarray, p)
            if config.mode == "GRU":
                t = {"weight_ih": q.w_ih.T, "weight_hh": q.w_hh.T,
                     "bias_ih": q.b_ih, "bias_hh": q.b_hh}
            else:
                t = {"weight_ih": q.w_ih.T, "weight_hh": q.w_hh.T,
                     "bias_ih": q.b, "bias_hh": np.zeros_like(q.b)}
                if config.mode == "LSTM" and config.proj_size:
                    if q.w_proj is None:
                        raise ValueError(f"layer {k}: proj_size={config.proj_size} but no w_proj")
                    t["weight_hr"] = q.w_proj.T
                elif config.mode == "LSTM" and q.w_proj is not None:
                    raise ValueError(f"layer {k}: params have w_proj but proj_size=0")
            if not config.bias:
                if np.any(t["bias_ih"] != 0) or np.any(t["bias_hh"] != 0):
                    raise ValueError(
                        f"layer {k}{suffix}: biases are nonzero but the config has bias=False; "
                        f"use config._replace(bias=True)")
                del t["bias_ih"], t["bias_hh"]
            for name, shape in _expected_shapes(config, k).items():
                if tuple(t[name].shape) != shape:
                    raise ValueError(f"{name}_l{k}{suffix} would have shape "
                                     f"{tuple(t[name].shape)}, expected {shape} for {config}")
                out[f"{name}_l{k}{suffix}"] = np.ascontiguousarray(t[name])
    ordered = {key: out[key] for key in _state_dict_keys(config)}
    if as_numpy:
        return ordered
    import torch

    def tensor(a):
        if a.dtype == jnp.bfloat16:
            return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(np.array(a))

    from collections import OrderedDict
    return OrderedDict((key, tensor(a)) for key, a in ordered.items())


def to_torch(net_or_config, params):
    """A PyTorch ``nn.RNN``/``LSTM``/``GRU`` (in the params' dtype, on CPU) holding ``params``.

    ``to_torch(*from_torch(m))`` computes what ``m`` computes (see :func:`to_state_dict`).
    """
    import torch

    config = config_of(net_or_config)
    state = to_state_dict(config, params)
    kwargs = dict(input_size=config.input_size, hidden_size=config.hidden_size,
                  num_layers=config.num_layers, bias=config.bias,
                  batch_first=config.batch_first, dropout=config.dropout,
                  bidirectional=config.bidirectional)
    if config.mode == "LSTM":
        module = torch.nn.LSTM(proj_size=config.proj_size, **kwargs)
    elif config.mode == "GRU":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity="tanh" if config.mode == "RNN_TANH" else "relu",
                              **kwargs)
    module = module.to(next(iter(state.values())).dtype)
    module.load_state_dict(state, strict=True)
    return module


# --------------------------------------------------------------------------- carries

def _layer_carries(carry):
    """Flattens a stack carry to PyTorch's order: layer 0 fw, layer 0 bw, layer 1 fw, ..."""
    if not isinstance(carry, tuple) or hasattr(carry, "_fields"):
        raise ValueError("expected the carry of a jr.interop net: a tuple with one entry per layer")
    flat = []
    for c in carry:
        if isinstance(c, tuple) and not hasattr(c, "_fields"):
            flat.extend(c)          # bidirectional: (fw, bw)
        else:
            flat.append(c)
    return flat


def carry_to_torch(carry):
    """A net's final carry in PyTorch's layout.

    Returns ``h_n`` for RNN and GRU, ``(h_n, c_n)`` for LSTM, with shape
    ``[num_layers * num_directions, *batch, H]`` (``*batch`` the carry's leading axes,
    e.g. ``[B]`` after ``jax.vmap``; none for one sequence, like PyTorch's unbatched mode).
    """
    flat = _layer_carries(carry)
    h_n = jnp.stack([c.h for c in flat])
    if isinstance(flat[0], LSTMCarry):
        return h_n, jnp.stack([c.c for c in flat])
    return h_n


def carry_from_torch(net_or_config, hx, *, dtype=None):
    """PyTorch's initial state ``h_0`` (or ``(h_0, c_0)`` for LSTM) as a net's carry.

    ``hx`` has shape ``[num_layers * num_directions, *batch, H]`` (torch tensors or
    arrays); the carry's leaves have shape ``[*batch, H]``, ready for
    ``jax.vmap(net.apply)(params, xs, carry)`` with ``in_axes`` 0 on the carry.
    ``dtype``: cast the carry (it must match the params' dtype); default: keep hx's.
    """
    config = config_of(net_or_config)
    if dtype is not None:
        dtype = _jax_dtype(dtype)
        hx = (tuple(_to_numpy(a).astype(dtype) for a in hx) if isinstance(hx, (tuple, list))
              else _to_numpy(hx).astype(dtype))
    LD = config.num_layers * config.num_directions
    if config.mode == "LSTM":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError("an LSTM's initial state is a pair (h_0, c_0)")
        h, c = (jnp.asarray(_to_numpy(a)) for a in hx)
        hc = [(h[i], c[i]) for i in range(LD)]
        want_h, want_c = config.output_size, config.hidden_size
    else:
        if isinstance(hx, (tuple, list)):
            raise ValueError(f"a {config.mode} initial state is one tensor h_0, not a pair")
        h = jnp.asarray(_to_numpy(hx))
        hc = [(h[i],) for i in range(LD)]
        want_h, want_c = config.hidden_size, None
    if h.shape[0] != LD or h.shape[-1] != want_h or (want_c and c.shape[-1] != want_c) or \
            (want_c and c.shape[:-1] != h.shape[:-1]):
        raise ValueError(
            f"initial state has shape {tuple(h.shape)}" +
            (f" and {tuple(c.shape)}" if want_c else "") +
            f", expected [{LD}, *batch, {want_h}]" + (f" and [{LD}, *batch, {want_c}]" if want_c else ""))
    kind = {"LSTM": LSTMCarry, "GRU": GRUCarry}.get(config.mode, SimpleRNNCarry)
    cells = [kind(*x) for x in hc]
    D = config.num_directions
    if D == 2:
        return tuple((cells[2 * k], cells[2 * k + 1]) for k in range(config.num_layers))
    return tuple(cells)


def apply_like_torch(net_or_config, params, x, hx=None, *, seq_lengths=None, key=None):
    """Runs the net on a batch in PyTorch's layout: ``module(x, hx)`` without torch.

    Args:
      net_or_config: a net from :func:`from_torch`/:func:`torch_net`, or its config.
      params: the net's params.
      x: ``[B, T, I]`` if ``batch_first`` else ``[T, B, I]``; or one sequence ``[T, I]``.
      hx: ``h_0`` or ``(h_0, c_0)`` as PyTorch takes it (None: zeros).
      seq_lengths: ``[B]`` valid lengths (what ``pack_padded_sequence`` would get).
      key: a PRNG key to turn dropout between layers on (PyTorch's training mode).

    Returns:
      ``(output, h_n)`` or ``(output, (h_n, c_n))`` like the module, ``output`` padded
      with zeros past each sequence's length.
    """
    config = config_of(net_or_config)
    net = net_or_config if isinstance(net_or_config, layers_lib.Layer) else torch_net(config)
    x = jnp.asarray(x)
    carry = None if hx is None else carry_from_torch(
        config, hx, dtype=jax.tree.leaves(params)[0].dtype)
    if x.ndim == 2:
        ys, c = net.apply(params, x, carry, seq_lengths=seq_lengths, key=key)
        return ys, carry_to_torch(c)
    if x.ndim != 3:
        raise ValueError(f"x must have shape [B, T, I] or [T, B, I] (or [T, I]), got {x.shape}")
    b_axis = 0 if config.batch_first else 1
    B = x.shape[b_axis]
    if seq_lengths is not None:
        seq_lengths = jnp.asarray(seq_lengths)
        if seq_lengths.shape != (B,):
            raise ValueError(f"seq_lengths must have shape ({B},), got {seq_lengths.shape}")
    keys = None if key is None else jax.random.split(key, B)

    def one(xs, c, n, k):
        return net.apply(params, xs, c, seq_lengths=n, key=k)

    ys, c = jax.vmap(one, in_axes=(b_axis, None if carry is None else 0,
                                   None if seq_lengths is None else 0,
                                   None if keys is None else 0),
                     out_axes=(b_axis, 0))(x, carry, seq_lengths, keys)
    return ys, carry_to_torch(c)


# =========================================================================== Flax linen

def _flax_kind(flax_cell) -> str:
    import flax.linen as nn

    # OptimizedLSTMCell is not a subclass of LSTMCell; test the exact classes.
    for cls, kind in ((nn.OptimizedLSTMCell, "lstm"), (nn.LSTMCell, "lstm"),
                      (nn.GRUCell, "gru"), (nn.SimpleCell, "simple")):
        if isinstance(flax_cell, cls):
            return kind
    raise TypeError(f"from_flax_linen supports flax.linen LSTMCell, OptimizedLSTMCell, GRUCell "
                    f"and SimpleCell, got {type(flax_cell).__name__}")


def _check_fns(flax_cell, kind):
    import flax.linen as nn

    if kind in ("lstm", "gru") and flax_cell.gate_fn is not nn.sigmoid:
        raise ValueError(f"{type(flax_cell).__name__}: only gate_fn=sigmoid is supported")
    act = getattr(flax_cell, "activation_fn", nn.tanh)
    if act is nn.tanh:
        return "tanh"
    if kind == "simple" and act is nn.relu:
        return "relu"
    raise ValueError(f"{type(flax_cell).__name__}: activation_fn {act} is not supported "
                     f"(tanh{', or relu for SimpleCell' if kind == 'simple' else ''})")


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

    Mapping (flax kernels are ``[in, out]``, like jaxrnn's, so nothing is transposed):

    - LSTMCell / OptimizedLSTMCell: ``w_ih = [ii|if|ig|io].kernel``,
      ``w_hh = [hi|hf|hg|ho].kernel``, ``b = [hi|hf|hg|ho].bias``.
    - GRUCell: ``w_ih = [ir|iz|in].kernel``, ``b_ih = [ir|iz|in].bias``,
      ``w_hh = [hr|hz|hn].kernel``, ``b_hh = [0|0|hn.bias]`` (reset-after form).
    - SimpleCell: ``w_ih = i.kernel``, ``b = i.bias``, ``w_hh = h.kernel`` (+ identity
      if ``residual``).
    """
    kind = _flax_kind(flax_cell)
    nonlin = _check_fns(flax_cell, kind)
    p = _unwrap_flax_params(variables)
    get = lambda name, leaf: jnp.asarray(p[name][leaf])
    try:
        if kind == "lstm":
            w_ih = jnp.concatenate([get(f"i{g}", "kernel") for g in "ifgo"], axis=-1)
            w_hh = jnp.concatenate([get(f"h{g}", "kernel") for g in "ifgo"], axis=-1)
            b = jnp.concatenate([get(f"h{g}", "bias") for g in "ifgo"], axis=-1)
            params = LSTMParams(w_ih, w_hh, b)
        elif kind == "gru":
            w_ih = jnp.concatenate([get(f"i{g}", "kernel") for g in "rzn"], axis=-1)
            b_ih = jnp.concatenate([get(f"i{g}", "bias") for g in "rzn"], axis=-1)
            w_hh = jnp.concatenate([get(f"h{g}", "kernel") for g in "rzn"], axis=-1)
            b_hn = get("hn", "bias")
            b_hh = jnp.concatenate([jnp.zeros((2 * b_hn.shape[-1],), b_hn.dtype), b_hn])
            params = GRUParams(w_ih, w_hh, b_ih, b_hh)
        else:
            w_hh = get("h", "kernel")
            if flax_cell.residual:
                w_hh = w_hh + jnp.eye(w_hh.shape[0], dtype=w_hh.dtype)
            params = SimpleRNNParams(get("i", "kernel"), w_hh, get("i", "bias"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"variables do not look like {type(flax_cell).__name__} params "
                         f"(missing {e}); got keys {sorted(p) if hasattr(p, 'keys') else p}")
    H = params.w_hh.shape[0]
    if H != flax_cell.features:
        raise ValueError(f"params have hidden size {H}, but the cell has features={flax_cell.features}")
    pdt = jnp.dtype(param_dtype) if param_dtype is not None else params.w_ih.dtype
    params = jax.tree.map(lambda a: a.astype(pdt), params)
    dtype = flax_cell.dtype if dtype is None else dtype
    if kind == "lstm":
        cell = lstm(H, dtype=dtype, param_dtype=pdt)
    elif kind == "gru":
        cell = gru(H, reset_after=True, dtype=dtype, param_dtype=pdt)
    else:
        cell = simple_rnn(H, nonlinearity=nonlin, dtype=dtype, param_dtype=pdt)
    return cell, params


def to_flax_linen(flax_cell, params):
    """jaxrnn cell params as the variables ``{'params': {...}}`` of ``flax_cell``.

    The inverse of :func:`from_flax_linen`. A GRU's recurrent r and z biases (which
    flax does not have) are folded into the input biases, which is exact; an LSTM must
    be plain (no peephole, layer norm or projection). Wrap the result as
    ``{'params': {'cell': ...}}`` for an ``nn.RNN``.
    """
    kind = _flax_kind(flax_cell)
    _check_fns(flax_cell, kind)
    if kind == "lstm":
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
    elif kind == "gru":
        if not isinstance(params, GRUParams):
            raise ValueError(f"a flax GRUCell needs GRUParams, got {type(params).__name__}")
        wi, wh, bi, bh = (jnp.split(a, 3, axis=-1)
                          for a in (params.w_ih, params.w_hh, params.b_ih, params.b_hh))
        out = {"ir": {"kernel": wi[0], "bias": bi[0] + bh[0]},
               "iz": {"kernel": wi[1], "bias": bi[1] + bh[1]},
               "in": {"kernel": wi[2], "bias": bi[2]},
               "hr": {"kernel": wh[0]}, "hz": {"kernel": wh[1]},
               "hn": {"kernel": wh[2], "bias": bh[2]}}
    else:
        if not isinstance(params, SimpleRNNParams):
            raise ValueError(f"a flax SimpleCell needs SimpleRNNParams, got {type(params).__name__}")
        w_hh = params.w_hh
        if flax_cell.residual:
            w_hh = w_hh - jnp.eye(w_hh.shape[0], dtype=w_hh.dtype)
        out = {"i": {"kernel": params.w_ih, "bias": params.b}, "h": {"kernel": w_hh}}
    return {"params": out}


def carry_from_flax(cell: Cell, flax_carry):
    """A flax cell's carry as the jaxrnn cell's: LSTM ``(c, h)`` -> ``LSTMCarry(h, c)``;
    GRU and SimpleCell ``h`` -> ``GRUCarry(h)`` / ``SimpleRNNCarry(h)``.

    The layout follows from the structure of the cell's own carry (its fields), not from the
    cell's name."""
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
