"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` run here, number for number.

::

    net, params = jr.interop.from_torch(module)          # nn.RNN, nn.LSTM or nn.GRU
    ys, carry = net.apply(params, xs)                    # ONE sequence [T, input]
    out, h_n = jr.interop.apply_like_torch(net, params, x)   # or module(x) in PyTorch's layout
    h_n, c_n = jr.interop.carry_to_torch(carry)          # PyTorch's [L*D, B, H] layout
    module2 = jr.interop.to_torch(net, params)           # and back

``net`` is a :class:`TorchNet`: the ``jr.Layer`` that computes what the module computes
(``net.layer``) together with the module's constructor arguments (``net.config``, a
:class:`TorchConfig`). It has the layer's ``init``/``apply``/``step``/``initial_carry``/
``output_size``, so it is used like any layer, and it is what :func:`to_torch`,
:func:`to_state_dict`, :func:`carry_from_torch` and :func:`apply_like_torch` read the
configuration from: the net carries its config, nothing is remembered behind the user's back.
Each of them also takes the :class:`TorchConfig` alone.

The layer is the PyTorch-shaped ``jr.stack`` (:mod:`jaxrnn.interop._stack`, shared with the
Flax wrappers): ``num_layers`` layers, each ``jr.layer(cell)`` or, for ``bidirectional=True``,
``jr.bidirectional(cell)`` (both directions' params stacked on a leading axis of 2). Params
and carries are tuples with one entry per layer; a bidirectional layer's carry is
``(carry_fw, carry_bw)``. ``apply`` works on one sequence; batch with ``jax.vmap`` or use
:func:`apply_like_torch`. ``seq_lengths`` gives the numbers of ``pack_padded_sequence``
(outputs past a sequence's length are zero, the final carry is the one at its length, the
backward direction reads the real last token first).

Weight layout: jaxrnn computes ``x @ W``, so ``w_ih = weight_ih_l{k}.T``. Gate orders are
PyTorch's (LSTM i, f, g, o; GRU r, z, n), so no gate is reordered.

- LSTM and RNN: jaxrnn keeps one bias ``b = bias_ih + bias_hh`` (summed in float64, rounded
  once). Going back, :func:`to_state_dict` writes ``bias_ih = b`` and ``bias_hh = 0``: the
  module computes exactly the same function, though the split of the two is not recovered.
- GRU: ``b_ih`` and ``b_hh`` are kept apart (``b_hn`` sits inside the reset product).
- ``bias=False``: biases are zeros in jaxrnn; converting back to a ``bias=False`` module
  raises if they have become nonzero (e.g. after training them).
- ``proj_size``: ``w_proj = weight_hr_l{k}.T`` (``[H, P]``); ``w_hh`` is ``[P, 4H]``.
- Dtypes: params keep the module's dtype (float64 needs ``jax_enable_x64``, else float32).

torch is imported inside the functions that need it, so importing this module does not.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import layers as layers_lib
from jaxrnn.cells import checks
from jaxrnn.cells.gru import GRUCarry, GRUParams
from jaxrnn.cells.lstm import LSTMCarry, LSTMParams
from jaxrnn.cells.simple import SimpleRNNCarry, SimpleRNNParams
from jaxrnn.interop._stack import check_batch_lengths, torch_like_stack

__all__ = [
    "TorchConfig", "TorchNet", "apply_like_torch", "carry_from_torch", "carry_to_torch",
    "config_from_state_dict", "config_from_torch", "config_of", "from_state_dict",
    "from_torch", "to_state_dict", "to_torch", "torch_net",
]


class _Mode(NamedTuple):
    """What differs between PyTorch's four RNN modes, in one row each."""
    gates: int              # rows of weight_ih per hidden unit
    cell: str               # the jaxrnn cell (a registry name) computing the same step
    params: type            # its params type
    carry: type             # its carry type
    summed_bias: bool       # jaxrnn keeps bias_ih + bias_hh as one ``b``
    torch_class: str        # the torch.nn class
    torch_options: dict     # constructor arguments that pick the mode


_MODES = {
    "RNN_TANH": _Mode(1, "simple_rnn", SimpleRNNParams, SimpleRNNCarry, True, "RNN",
                      {"nonlinearity": "tanh"}),
    "RNN_RELU": _Mode(1, "simple_rnn_relu", SimpleRNNParams, SimpleRNNCarry, True, "RNN",
                      {"nonlinearity": "relu"}),
    "LSTM": _Mode(4, "lstm", LSTMParams, LSTMCarry, True, "LSTM", {}),
    # reset_after=True (the registry's "gru") is PyTorch's form: n = tanh(x W + r * (h U + b_hn))
    "GRU": _Mode(3, "gru", GRUParams, GRUCarry, False, "GRU", {}),
}


def _mode(mode: str) -> _Mode:
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {mode!r}; choose one of {tuple(_MODES)}") from None


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


class TorchNet(NamedTuple):
    """A PyTorch module's network in jaxrnn: the layer that computes it and its config.

    ``net.init``/``apply``/``step``/``initial_carry``/``output_size``/``name`` are the layer's,
    so a ``TorchNet`` runs wherever a ``jr.Layer``'s functions are called; pass ``net.layer``
    where a ``jr.Layer`` itself is required (``jr.stack([...])``). The config travels with the
    net, which is how :func:`to_torch` and friends know what module to build.
    """

    layer: layers_lib.Layer
    config: TorchConfig

    @property
    def init(self):
        return self.layer.init

    @property
    def apply(self):
        return self.layer.apply

    @property
    def step(self):
        return self.layer.step

    @property
    def initial_carry(self):
        return self.layer.initial_carry

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def check_params(self):
        return self.layer.check_params


def _check_config(config: TorchConfig) -> TorchConfig:
    _mode(config.mode)
    w = "TorchConfig"
    for name in ("input_size", "hidden_size", "num_layers"):
        checks.check_positive_int(name, getattr(config, name), where=w)
    for name in ("bias", "batch_first", "bidirectional"):
        checks.check_bool(name, getattr(config, name), where=w)
    checks.check_rate("dropout", config.dropout, where=w)
    checks.check_int("proj_size", config.proj_size, low=0, where=w)
    if config.proj_size and config.mode != "LSTM":
        raise checks.InvalidArgumentValue(
            f"proj_size is only supported by LSTM, got mode {config.mode!r}")
    return config


def config_of(net_or_config) -> TorchConfig:
    """The :class:`TorchConfig` of a :class:`TorchNet` (or the config itself)."""
    if isinstance(net_or_config, TorchNet):
        return _check_config(net_or_config.config)
    if isinstance(net_or_config, TorchConfig):
        return _check_config(net_or_config)
    if isinstance(net_or_config, layers_lib.Layer):
        raise TypeError(
            "a jr.Layer does not say which PyTorch module it is; pass the TorchNet that "
            "jr.interop.from_torch or jr.interop.torch_net returned, or a jr.interop.TorchConfig "
            "(jr.interop.config_from_state_dict infers one from a state dict)")
    raise TypeError(f"expected a jr.interop.TorchNet or TorchConfig, got "
                    f"{type(net_or_config).__name__}")


def torch_net(config: TorchConfig, *, dtype=None, param_dtype=jnp.float32) -> TorchNet:
    """The jaxrnn network computing what a PyTorch module with this ``config`` computes.

    ``config.dropout`` sits between layers, active only when ``apply`` gets a ``key``
    (PyTorch's is only in training mode). ``dtype`` is the cells' compute dtype (None: the
    params'), ``param_dtype`` the dtype ``init`` makes.
    """
    config = config_of(config)
    layer = torch_like_stack(_mode(config.mode).cell, config.hidden_size, config.num_layers,
                             config.bidirectional, config.dropout, config.proj_size or None,
                             dtype=dtype, param_dtype=param_dtype)
    return TorchNet(layer, config)


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
    G = _mode(mode).gates
    if "weight_ih_l0" not in state_dict:
        raise ValueError("not a PyTorch RNN state dict: it has no 'weight_ih_l0'")
    w_ih = _shape(state_dict["weight_ih_l0"])
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


# --------------------------------------------------------------------------- state dicts

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
    """Layer ``k``'s tensors (one direction), in PyTorch's order, with their shapes."""
    G, H, P = _mode(config.mode).gates, config.hidden_size, config.proj_size
    shapes = {"weight_ih": (G * H, config.layer_input_size(k)),
              "weight_hh": (G * H, P or H)}
    if config.bias:
        shapes["bias_ih"] = (G * H,)
        shapes["bias_hh"] = (G * H,)
    if P:
        shapes["weight_hr"] = (P, H)
    return shapes


def _suffixes(config: TorchConfig):
    return ("", "_reverse")[:config.num_directions]


def _state_dict_keys(config: TorchConfig):
    """The state dict keys of the module, in PyTorch's order."""
    return [f"{name}_l{k}{suffix}" for k in range(config.num_layers)
            for suffix in _suffixes(config) for name in _expected_shapes(config, k)]


def _layer_params(config: TorchConfig, t, dtype):
    """One direction of one layer: PyTorch tensors (NumPy) -> the cell's params."""
    mode = _mode(config.mode)
    cast = lambda a: jnp.asarray(a, dtype=dtype)
    zeros = np.zeros((mode.gates * config.hidden_size,), np.float64)
    b_ih, b_hh = t.get("bias_ih", zeros), t.get("bias_hh", zeros)
    fields = {"w_ih": cast(t["weight_ih"].T), "w_hh": cast(t["weight_hh"].T)}
    if mode.summed_bias:
        # Sum in float64, then round once: the cells keep a single bias.
        fields["b"] = cast(np.asarray(b_ih, np.float64) + np.asarray(b_hh, np.float64))
    else:
        fields["b_ih"], fields["b_hh"] = cast(b_ih), cast(b_hh)
    if config.proj_size:
        fields["w_proj"] = cast(t["weight_hr"].T)
    return mode.params(**fields)


def _torch_tensors(config: TorchConfig, k: int, suffix: str, q):
    """One direction of one layer: the cell's params (NumPy) -> PyTorch's tensors."""
    mode = _mode(config.mode)
    t = {"weight_ih": q.w_ih.T, "weight_hh": q.w_hh.T}
    if mode.summed_bias:
        t["bias_ih"], t["bias_hh"] = q.b, np.zeros_like(q.b)
    else:
        t["bias_ih"], t["bias_hh"] = q.b_ih, q.b_hh
    w_proj = getattr(q, "w_proj", None)
    if config.proj_size and w_proj is None:
        raise ValueError(f"layer {k}: proj_size={config.proj_size} but no w_proj")
    if w_proj is not None and not config.proj_size:
        raise ValueError(f"layer {k}: params have w_proj but proj_size=0")
    if w_proj is not None:
        t["weight_hr"] = w_proj.T
    if not config.bias:
        if np.any(t["bias_ih"] != 0) or np.any(t["bias_hh"] != 0):
            raise ValueError(f"layer {k}{suffix}: biases are nonzero but the config has "
                             f"bias=False; use config._replace(bias=True)")
        del t["bias_ih"], t["bias_hh"]
    return t


def from_state_dict(state_dict, config, *, param_dtype=None):
    """Converts a PyTorch RNN state dict to the params of :func:`torch_net` ``(config)``.

    Args:
      state_dict: ``module.state_dict()`` (torch tensors or arrays).
      config: a :class:`TorchConfig`, a :class:`TorchNet`, or a mode string (``"LSTM"``,
        ...), in which case the rest is inferred (:func:`config_from_state_dict`).
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
        for suffix in _suffixes(config):
            t = {}
            for name, shape in _expected_shapes(config, k).items():
                a = arrays[f"{name}_l{k}{suffix}"]
                if tuple(a.shape) != shape:
                    raise ValueError(f"{name}_l{k}{suffix} has shape {tuple(a.shape)}, expected "
                                     f"{shape} for {config}")
                t[name] = a
            dirs.append(_layer_params(config, t, dtype))
        params.append(jax.tree.map(lambda *d: jnp.stack(d), *dirs) if config.bidirectional
                      else dirs[0])
    return tuple(params)


def from_torch(module, *, dtype=None, param_dtype=None):
    """Loads a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` as a jaxrnn network.

    Args:
      module: the PyTorch module (any ``num_layers``, ``bidirectional``, ``bias``,
        ``proj_size``, ``nonlinearity``, ``batch_first``, ``dropout``).
      dtype: compute dtype of the cells' matmuls (None: that of the params).
      param_dtype: dtype of the params; default: the module's (as JAX stores it).

    Returns:
      ``(net, params)``: ``net`` is a :class:`TorchNet` whose ``apply(params, xs)`` on one
      sequence ``[T, input]`` returns ``(ys, carry)`` equal to the module's output for that
      sequence (``carry_to_torch(carry)`` is its ``h_n`` or ``(h_n, c_n)``).
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
      net_or_config: a :class:`TorchNet` or a :class:`TorchConfig`.
      params: the net's params.
      as_numpy: return NumPy arrays instead of torch tensors (then torch is not imported).

    Raises:
      ValueError: shapes that do not fit the config, or nonzero biases for ``bias=False``.
    """
    config = config_of(net_or_config)
    mode = _mode(config.mode)
    if not isinstance(params, tuple) or len(params) != config.num_layers:
        raise ValueError(f"expected a tuple of {config.num_layers} layer params, got "
                         f"{type(params).__name__}")
    out = {}
    for k, p in enumerate(params):
        if not isinstance(p, mode.params):
            raise ValueError(f"layer {k}: expected {mode.params.__name__}, got {type(p).__name__}")
        if isinstance(p, LSTMParams) and any(x is not None for x in
                                             (p.w_peep, p.ln_x, p.ln_h, p.ln_c)):
            raise ValueError(f"layer {k}: peephole and layer-norm LSTMs have no PyTorch equivalent")
        for d, suffix in enumerate(_suffixes(config)):
            q = jax.tree.map(lambda a: np.asarray(a[d]) if config.bidirectional
                             else np.asarray(a), p)
            t = _torch_tensors(config, k, suffix, q)
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

    return OrderedDict((key, tensor(a)) for key, a in ordered.items())


def to_torch(net_or_config, params):
    """A PyTorch ``nn.RNN``/``LSTM``/``GRU`` (in the params' dtype, on CPU) holding ``params``.

    ``to_torch(*from_torch(m))`` computes what ``m`` computes (see :func:`to_state_dict`).
    """
    import torch

    config = config_of(net_or_config)
    mode = _mode(config.mode)
    state = to_state_dict(config, params)
    kwargs = dict(input_size=config.input_size, hidden_size=config.hidden_size,
                  num_layers=config.num_layers, bias=config.bias,
                  batch_first=config.batch_first, dropout=config.dropout,
                  bidirectional=config.bidirectional, **mode.torch_options)
    if config.proj_size:
        kwargs["proj_size"] = config.proj_size
    module = getattr(torch.nn, mode.torch_class)(**kwargs)
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
    mode = _mode(config.mode)
    is_pair = isinstance(hx, (tuple, list))
    if mode.carry is LSTMCarry and not (is_pair and len(hx) == 2):
        raise ValueError("an LSTM's initial state is a pair (h_0, c_0)")
    if mode.carry is not LSTMCarry and is_pair:
        raise ValueError(f"a {config.mode} initial state is one tensor h_0, not a pair")
    parts = tuple(hx) if is_pair else (hx,)
    parts = [_to_numpy(a) if dtype is None else _to_numpy(a).astype(_jax_dtype(dtype))
             for a in parts]
    parts = [jnp.asarray(a) for a in parts]
    LD = config.num_layers * config.num_directions
    # PyTorch's h is the emitted state (proj_size wide for an LSTM); c is hidden_size wide.
    widths = (config.output_size, config.hidden_size)[:len(parts)]
    if any(a.shape[0] != LD or a.shape[-1] != w for a, w in zip(parts, widths)) or \
            any(a.shape[:-1] != parts[0].shape[:-1] for a in parts):
        raise ValueError(
            "initial state has shape " + " and ".join(str(tuple(a.shape)) for a in parts) +
            ", expected " + " and ".join(f"[{LD}, *batch, {w}]" for w in widths))
    cells = [mode.carry(*(a[i] for a in parts)) for i in range(LD)]
    if config.bidirectional:
        return tuple((cells[2 * k], cells[2 * k + 1]) for k in range(config.num_layers))
    return tuple(cells)


def apply_like_torch(net_or_config, params, x, hx=None, *, seq_lengths=None, key=None):
    """Runs the net on a batch in PyTorch's layout: ``module(x, hx)`` without torch.

    Args:
      net_or_config: a :class:`TorchNet` or its :class:`TorchConfig`.
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
    net = net_or_config if isinstance(net_or_config, TorchNet) else torch_net(config)
    x = jnp.asarray(x)
    carry = None if hx is None else carry_from_torch(
        config, hx, dtype=jax.tree.leaves(params)[0].dtype)
    if x.ndim == 2:
        ys, c = net.apply(params, x, carry, seq_lengths=seq_lengths, key=key)
        return ys, carry_to_torch(c)
    if x.ndim != 3:
        raise checks.InvalidArgumentValue(f"x must have shape [B, T, I] or [T, B, I] (or [T, I]), got {x.shape}")
    b_axis = 0 if config.batch_first else 1
    B, T = x.shape[b_axis], x.shape[1 - b_axis]
    if seq_lengths is not None:
        if jnp.ndim(seq_lengths) != 1:
            raise checks.InvalidArgumentValue(
                f"seq_lengths must have shape ({B},), got {tuple(jnp.shape(seq_lengths))}")
        # checked here, before vmap turns them into tracers
        seq_lengths = check_batch_lengths(seq_lengths, T, B)
    if net.layer.check_params is not None:
        net.layer.check_params(params)
    keys = None if key is None else jax.random.split(key, B)

    def one(xs, c, n, k):
        return net.apply(params, xs, c, seq_lengths=n, key=k)

    ys, c = jax.vmap(one, in_axes=(b_axis, None if carry is None else 0,
                                   None if seq_lengths is None else 0,
                                   None if keys is None else 0),
                     out_axes=(b_axis, 0))(x, carry, seq_lengths, keys)
    return ys, carry_to_torch(c)
