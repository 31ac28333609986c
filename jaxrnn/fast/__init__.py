"""Fast paths: whole-batch LSTM and GRU layers with hand-derived backward passes.

    from jaxrnn import fast
    ys, carry = fast.lstm_layer(params, xs)        # xs: [B, T, I]; equals vmap(jr.scan)
    ys, carry = fast.gru_layer(params, xs, seq_lengths=n, reverse=True)

``fast.supports(cell)`` says whether a cell has a fast path; ``fast.layer(cell, ...)``
dispatches to it on a batch. ``fast.scan(cell, params, xs)`` has ``jr.scan``'s
one-sequence signature; under ``jax.vmap`` (shared params) it runs the whole batch
as one fast kernel, through ``jax.custom_batching.custom_vmap``. See
``docs/benchmarks.md`` for the measurements behind each choice.
"""

import functools

import jax
import jax.numpy as jnp
from jax import custom_batching

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


def scan(cell, params, xs, carry=None, *, seq_lengths=None, reverse: bool = False,
         plan=None):
    """``jr.scan``'s signature and numbers on the fast path: one sequence ``xs [T, I]``.

    Under ``jax.vmap`` over ``xs`` / ``carry`` / ``seq_lengths`` with shared ``params``
    (the way batches are made in jaxrnn), the batch runs as ONE whole-batch kernel
    (:func:`layer`), not as a vmapped per-sequence loop. When ``params`` are batched too
    (an ensemble, or a bidirectional layer's stacked directions) each parameter set runs
    the kernel on its own batch. Gradients flow through the kernels' custom VJPs.
    ``reverse`` must be a Python bool.
    """
    if not supports(cell):
        raise ValueError(f"jaxrnn.fast.scan: no fast path for cell {cell.name!r} with options "
                         f"{cell.options}")
    if not isinstance(reverse, bool):
        raise TypeError("jaxrnn.fast.scan: reverse must be a Python bool (got a traced value)")
    xs = jnp.asarray(xs)
    if carry is None:
        carry = cell.carry_for_input(params, xs[0])
    lengths = jnp.zeros((), jnp.int32) if seq_lengths is None else jnp.asarray(seq_lengths, jnp.int32)
    args = (params, xs, carry, lengths)
    if _innermost_is_vmap():
        # Directly under vmap: the custom batching rule turns the batch into one kernel
        # call (and grad of vmap differentiates that call through its custom VJP).
        fn = _one_sequence(cell, bool(reverse), seq_lengths is not None, plan)
    else:
        # Not (directly) batched, e.g. under grad inside vmap (per-example gradients):
        # the kernel on a batch of one, which an outer vmap batches like any custom_vjp.
        fn = _unbatched(cell, bool(reverse), seq_lengths is not None, plan)
    return fn(*args)


def _innermost_is_vmap() -> bool:
    """True when the innermost transformation tracing this call is vmap (as in
    ``grad(vmap(f))`` or ``jit(vmap(f))``), so a custom batching rule runs before any
    autodiff of it. Under ``vmap(grad(f))`` autodiff is innermost and the kernel runs
    unbatched (an outer vmap then batches it like any custom_vjp function)."""
    try:
        from jax._src import core
        trace = core.trace_ctx.trace
    except (ImportError, AttributeError):  # pragma: no cover - other jax internals
        return False
    return type(trace).__name__ == "BatchTrace"


def _batch_call(cell, reverse, has_lengths, plan, params, xs, carry, lengths):
    """The whole-batch kernel on batched xs [B, T, I], carry [B, H], lengths [B]."""
    return layer(cell, params, xs, carry, seq_lengths=lengths if has_lengths else None,
                 reverse=reverse, plan=plan)


def _unbatched(cell, reverse, has_lengths, plan):
    batch_call = functools.partial(_batch_call, cell, reverse, has_lengths, plan)

    def unbatched(params, xs, carry, lengths):
        ys, c = batch_call(params, xs[None], jax.tree.map(lambda a: a[None], carry),
                           lengths[None])
        return ys[0], jax.tree.map(lambda a: a[0], c)

    return unbatched


def _one_sequence(cell, reverse, has_lengths, plan):
    batch_call = functools.partial(_batch_call, cell, reverse, has_lengths, plan)
    unbatched = _unbatched(cell, reverse, has_lengths, plan)
    f = custom_batching.custom_vmap(unbatched)

    @f.def_vmap
    def rule(axis_size, in_batched, params, xs, carry, lengths):
        p_b, x_b, c_b, n_b = in_batched
        out_batched = (True, jax.tree.map(lambda _: True, carry))

        def bcast(a, batched):
            return a if batched else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a))

        xs = bcast(xs, x_b)
        carry = jax.tree.map(bcast, carry, c_b)
        lengths = bcast(lengths, n_b)
        if any(jax.tree.leaves(p_b)):
            # Batched params: each parameter set runs the kernel on its own (size-1) batch.
            p_axes = jax.tree.map(lambda b: 0 if b else None, p_b)
            return jax.vmap(unbatched, in_axes=(p_axes, 0, 0, 0))(params, xs, carry, lengths), \
                out_batched
        return batch_call(params, xs, carry, lengths), out_batched

    return f


__all__ = ["Plan", "gru_layer", "layer", "lstm_layer", "scan", "set_default_plan", "supports",
           "supports_gru", "supports_lstm"]
