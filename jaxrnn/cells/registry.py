"""The one registry of cell names: what a config's ``model.cell: lstm_peephole`` means.

    from jaxrnn.cells import registry
    cell = registry.make("lstm_peephole", 128, forget_bias=1.0)
    registry.names()            # every accepted name, aliases included

Configs, the Flax wrappers and the experiments all read cell names through here, so a name
means the same cell everywhere. An entry is a factory plus the options it fixes; an alias
(``lstm_peephole``) is the factory with options preset. Options given by the caller are the
factory's own keyword arguments; one that contradicts a preset (``lstm_peephole`` with
``peephole=False``) is an error rather than silently winning or losing.

Register a cell of your own with :func:`register`; nothing else needs to change for configs and
wrappers to accept its name.
"""

from __future__ import annotations

import difflib
import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from jaxrnn.cells.base import Cell
from jaxrnn.cells.conv import conv_lstm
from jaxrnn.cells.gru import gru
from jaxrnn.cells.lstm import lstm
from jaxrnn.cells.minimal import mgu, min_gru, min_lstm
from jaxrnn.cells.simple import simple_rnn

__all__ = ["Entry", "get", "make", "names", "register"]


class Entry(NamedTuple):
    """A registered name: the factory, the options it presets, and one line for listings."""
    factory: Callable[..., Cell]
    preset: Mapping[str, Any]
    doc: str


_ENTRIES: dict[str, Entry] = {}


def register(name: str, factory: Callable[..., Cell], doc: str = "", **preset) -> None:
    """Adds ``name`` (``factory`` with ``preset`` keyword options) to the registry.

    A name may be registered once: re-registering it would change what existing configs mean."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"registry.register: a cell name must be an identifier, got {name!r}")
    if name in _ENTRIES:
        raise ValueError(f"registry.register: cell name {name!r} is already registered")
    if not callable(factory):
        raise TypeError(f"registry.register: factory for {name!r} is not callable")
    _check_options(name, factory, preset)
    _ENTRIES[name] = Entry(factory, MappingProxyType(dict(preset)), doc)


def names() -> tuple[str, ...]:
    """Every registered name (aliases included), sorted."""
    return tuple(sorted(_ENTRIES))


def get(name: str) -> Entry:
    """The entry for ``name``; an unknown name is an error listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"cell name must be a string, got {type(name).__name__} {name!r}")
    try:
        return _ENTRIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_ENTRIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown cell {name!r}{hint}; choose one of "
                         f"{', '.join(names())}") from None


def make(name: str, hidden_size: int, **options) -> Cell:
    """The cell called ``name`` with ``hidden_size`` units (channels for ``conv_lstm``).

    ``options`` are the factory's keyword arguments; an unknown option, or one that contradicts
    the name's preset, is a ``ValueError`` naming it."""
    entry = get(name)
    _check_options(name, entry.factory, options)
    for k, v in options.items():
        if k in entry.preset and entry.preset[k] != v:
            raise ValueError(f"cell {name!r} sets {k}={entry.preset[k]!r}; got {k}={v!r} "
                             f"(use the base name instead)")
    return entry.factory(hidden_size, **{**entry.preset, **options})


def _check_options(name: str, factory, options: Mapping[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    # every keyword the factory takes except its first argument (the size)
    allowed = [k for k, p in list(params.items())[1:]
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for k in options:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"cell {name!r}: unknown option {k!r}{hint}; its options are "
                             f"{', '.join(allowed)}")


register("simple_rnn", simple_rnn, "Elman RNN, S_t = tanh(U x_t + W S_{t-1})")
register("simple_rnn_relu", simple_rnn, "Elman RNN with ReLU (Le et al. 2015's IRNN without "
         "the identity init)", nonlinearity="relu")
register("lstm", lstm, "LSTM (forget bias 1 by default)")
register("lstm_peephole", lstm, "LSTM whose gates read the cell state (Gers & Schmidhuber)",
         peephole=True)
register("lstm_coupled", lstm, "LSTM with coupled input and forget gates (CIFG)", coupled=True)
register("lstm_layer_norm", lstm, "LSTM with layer-normalized gates", layer_norm=True)
register("gru", gru, "GRU, reset-after (cuDNN / PyTorch form)")
register("gru_cho", gru, "GRU, reset before the recurrent matmul (Cho et al. 2014)",
         reset_after=False)
register("mgu", mgu, "minimal gated unit (one forget gate)")
register("min_gru", min_gru, "minGRU: gates read x only (parallel scan)")
register("min_lstm", min_lstm, "minLSTM: gates read x only (parallel scan)")
register("conv_lstm", conv_lstm, "convolutional LSTM (hidden_size = channels)")
