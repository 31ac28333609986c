"""Fast paths: whole-batch LSTM and GRU layers with hand-derived backward passes.

    from jaxrnn import fast
    ys, carry = fast.lstm_layer(params, xs)        # xs: [B, T, I]; equals vmap(jr.scan)
    ys, carry = fast.gru_layer(params, xs, seq_lengths=n, reverse=True)

``fast.supports(cell)`` says whether a cell has a fast path; ``fast.layer(cell, ...)``
dispatches to it. See ``docs/benchmarks.md`` for the measurements behind each choice.
"""

from jaxrnn.fast._common import Plan, set_default_plan
from jaxrnn.fast.gru import gru_layer, supports_gru
from jaxrnn.fast.lstm import lstm_layer, supports_lstm


def supports(cell) -> bool:
    """True if ``cell`` (a :class:`jaxrnn.Cell`) has a fast whole-batch path."""
    return supports_lstm(cell) or supports_gru(cell)


def layer(cell, params, xs, carry=None, *, seq_lengths=None, reverse=False, plan=None):
    """Runs ``cell`` over a batch ``xs [B, T, I]`` on its fast path.

    Equals ``jax.vmap(jr.scan)`` of the cell (outputs, final carry, gradients).
    Raises ``ValueError`` for a cell without a fast path (see :func:`supports`).
    """
    dtype = cell.options.get("dtype")
    if supports_lstm(cell):
        return lstm_layer(params, xs, carry, seq_lengths=seq_lengths, reverse=reverse,
                          dtype=dtype, plan=plan)
    if supports_gru(cell):
        return gru_layer(params, xs, carry, seq_lengths=seq_lengths, reverse=reverse,
                         dtype=dtype, plan=plan)
    raise ValueError(f"jaxrnn.fast: no fast path for cell {cell.name!r} with options "
                     f"{cell.options} (plain LSTM and GRU with reset_after=True have one)")


__all__ = ["Plan", "gru_layer", "layer", "lstm_layer", "set_default_plan", "supports",
           "supports_gru", "supports_lstm"]
