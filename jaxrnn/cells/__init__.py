"""Cell families: pure functions only, one file per family."""

from jaxrnn.cells.base import Cell
from jaxrnn.cells.conv import ConvLSTMParams, conv_lstm
from jaxrnn.cells.gru import GRUCarry, GRUParams, gru
from jaxrnn.cells.lstm import LSTMCarry, LSTMParams, lstm
from jaxrnn.cells.minimal import (MGUParams, MinGRUParams, MinimalCarry, MinLSTMParams,
                                  mgu, min_gru, min_lstm)
from jaxrnn.cells.simple import SimpleRNNCarry, SimpleRNNParams, simple_rnn

__all__ = [
    "Cell", "conv_lstm", "ConvLSTMParams", "gru", "GRUCarry", "GRUParams", "lstm",
    "LSTMCarry", "LSTMParams", "mgu", "MGUParams", "min_gru", "MinGRUParams", "min_lstm",
    "MinimalCarry", "MinLSTMParams", "simple_rnn", "SimpleRNNCarry", "SimpleRNNParams",
]
