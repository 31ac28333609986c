"""Cell families: pure functions only, one file per family, and the one registry of their
names (:mod:`jaxrnn.cells.registry`)."""

from jaxrnn.cells.base import Cell
from jaxrnn.cells.conv import ConvLSTMParams, conv_lstm
from jaxrnn.cells.gru import GRUCarry, GRUParams, gru
from jaxrnn.cells.lstm import LSTMCarry, LSTMParams, lstm
from jaxrnn.cells.minimal import (MGUParams, MinGRUParams, MinimalCarry, MinLSTMParams,
                                  mgu, min_gru, min_lstm)
from jaxrnn.cells.simple import SimpleRNNCarry, SimpleRNNParams, simple_rnn
from jaxrnn.cells import registry  # noqa: E402  (after the families it registers)

__all__ = [
    "Cell", "registry", "conv_lstm", "ConvLSTMParams", "gru", "GRUCarry", "GRUParams", "lstm",
    "LSTMCarry", "LSTMParams", "mgu", "MGUParams", "min_gru", "MinGRUParams", "min_lstm",
    "MinimalCarry", "MinLSTMParams", "simple_rnn", "SimpleRNNCarry", "SimpleRNNParams",
]
