"""jaxrnn: recurrent networks for JAX as pure functions.

    import jaxrnn as jr
    cell = jr.lstm(hidden_size=256)
    params = cell.init(key, input_size=128)
    ys, carry = jr.scan(cell, params, xs)          # xs: [T, 128]
"""

from jaxrnn.cells import (Cell, ConvLSTMParams, GRUCarry, GRUParams, LSTMCarry, LSTMParams,
                          MGUParams, MinGRUParams, MinimalCarry, MinLSTMParams, SimpleRNNCarry,
                          SimpleRNNParams, conv_lstm, gru, lstm, mgu, min_gru, min_lstm,
                          simple_rnn)
from jaxrnn.cells.checks import (InvalidArgumentType, InvalidArgumentValue, check_finite,
                                 check_params, check_seq_lengths, checked, debug_checks)
from jaxrnn.layers import Layer, bidirectional, dropout, layer, stack
from jaxrnn.engine.newton import NewtonConvergenceWarning
from jaxrnn.scan import NewtonInfo, NewtonOptions, newton_scan, scan

__version__ = "0.1.0"


def __getattr__(name):
    # Submodules that pull in optional or heavier dependencies load on first use.
    if name in ("interop", "nnx", "linen", "heads", "models", "text", "engine", "train", "audio",
                "analysis"):
        import importlib
        return importlib.import_module(f"jaxrnn.{name}")
    raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")


__all__ = [
    "Cell", "Layer", "bidirectional", "check_finite", "check_params", "check_seq_lengths",
    "checked", "conv_lstm", "debug_checks", "dropout", "gru",
    "layer", "lstm", "mgu", "min_gru", "min_lstm", "newton_scan", "scan", "simple_rnn", "stack",
    "NewtonConvergenceWarning", "NewtonInfo", "NewtonOptions",
    "ConvLSTMParams", "GRUCarry", "GRUParams", "LSTMCarry", "LSTMParams", "MGUParams",
    "MinGRUParams", "MinimalCarry", "MinLSTMParams", "SimpleRNNCarry", "SimpleRNNParams",
    "InvalidArgumentType", "InvalidArgumentValue",
]
