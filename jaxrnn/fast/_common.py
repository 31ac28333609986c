"""Shared plumbing of the fast paths: plans, dtypes, argument checks, masks.

A *plan* is the static choice of how a fast kernel runs on a backend: whether the
input projection is hoisted out of the loop,
the unroll factors of the forward and backward loops, and rematerialization.
The defaults per backend come from measurements (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


class Plan(NamedTuple):
    """How a fast kernel runs (all static).

    Attributes:
      hoist: compute the input projection of all steps before the loop (one large
        matmul) instead of one small matmul per step inside it.
      unroll: time steps per iteration of the forward loop.
      unroll_bwd: time steps per iteration of the backward loop.
      remat: save only the carries every step and recompute the gates in the backward
        pass (less memory: ``2H`` instead of ``G + 2H`` floats per step and example).
      chunk: when > 0, the backward pass computes the weight gradients every ``chunk``
        steps (one matmul over ``chunk * B`` rows) instead of once after the loop over all
        ``T * B`` rows, so the gate gradients of only ``chunk`` steps are alive at once.
        With ``remat`` this bounds the backward pass's memory for long sequences.
      split: the per-step matmuls of the forward loop (and of the recomputation under
        ``remat``) as this many matmuls over column blocks of the weights (e.g. one per
        gate), concatenated; must divide the number of gate columns. On XLA:CPU several
        narrow matmuls beat one wide one when the batch is small (see ``_measured_plan``).
    """

    hoist: bool = True
    unroll: int = 1
    unroll_bwd: int = 1
    remat: bool = False
    chunk: int = 0
    split: int = 1


_DEFAULT_PLANS = {}


def set_default_plan(platform: str, cell: str, plan: Plan) -> None:
    """Overrides the plan used for ``cell`` (``"lstm"``/``"gru"``) on ``platform``."""
    _DEFAULT_PLANS[(platform, cell)] = plan


def default_plan(cell: str, batch: int, hidden: int, steps: int) -> Plan:
    """The measured default plan for the current default backend."""
    platform = jax.default_backend()
    if (platform, cell) in _DEFAULT_PLANS:
        return _DEFAULT_PLANS[(platform, cell)]
    return _measured_plan(platform, cell, batch, hidden, steps)


# Bytes of gate gradients per backward chunk on CPU: small enough to stay in cache
# between the loop that writes them and the weight-gradient matmul that reads them.
_CPU_CHUNK_BYTES = 3 << 20
# Per-gate matmuls (Plan.split) on CPU pay when the whole recurrent weight is larger than
# this and one gate's block is not, for small batches (measured at H=256, B=4..24).
_CPU_SPLIT_BLOCK_BYTES = 256 << 10


def _measured_plan(platform: str, cell: str, batch: int, hidden: int, steps: int) -> Plan:
    """Defaults from measurements (docs/benchmarks.md, "Choosing the plan").

    CPU (XLA:CPU, YNNPACK matmuls): the input projection inside the loop beats the
    hoisted one at every benchmark size; the LSTM's loops unrolled by 2 are 3-12% faster
    forward+backward at all four benchmark sizes (the GRU's are not, so it stays at 1;
    4 and 8 never paid); the weight gradients
    are computed every ``chunk`` steps, with ``chunk`` picked so that a chunk's gate
    gradients (about 3 MiB) are still in cache when the matmul reads them (15-20% faster
    at (32, 100, 128, 256), 5% at (64, 200, 256, 512) than one matmul after the loop).
    With 2 <= B <= 24 and a recurrent weight over 256 KiB whose per-gate blocks fit in it
    (H = 256 in float32), the per-step matmuls run one per gate (``split``): fwd+bwd
    10% (LSTM) and 18% (GRU) faster at (16, 2000, 64, 256), 9-26% at B = 4, 8, 16, 24 and
    H = 256; no gain at H = 128 or 512, B = 1 or B >= 32, where one wide matmul wins.
    GPU: cuDNN's order, the projection as one large matmul before the loop, and the
    weight gradients as one matmul after it.
    """
    if platform == "cpu":
        per_step = batch * hidden * (4 if cell == "lstm" else 6) * 4   # bytes of dz per step
        chunk = max(4, _CPU_CHUNK_BYTES // max(per_step, 1))
        unroll = 2 if cell == "lstm" else 1
        gates = 4 if cell == "lstm" else 3
        block_bytes = hidden * hidden * 4
        narrow = 2 <= batch <= 24 and block_bytes <= _CPU_SPLIT_BLOCK_BYTES < gates * block_bytes
        return Plan(hoist=False, unroll=unroll, unroll_bwd=unroll,
                    chunk=0 if chunk >= steps else int(chunk), split=gates if narrow else 1)
    return Plan(hoist=True, unroll=1, unroll_bwd=1)


def resolve_plan(plan: Optional[Plan], cell: str, batch: int, hidden: int, steps: int) -> Plan:
    if plan is None:
        return default_plan(cell, batch, hidden, steps)
    if isinstance(plan.chunk, bool) or not isinstance(plan.chunk, (int, np.integer)) or plan.chunk < 0:
        raise ValueError(f"Plan.chunk must be a non-negative integer, got {plan.chunk!r}")
    for name in ("unroll", "unroll_bwd", "split"):
        v = getattr(plan, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"Plan.{name} must be a positive integer, got {v!r}")
    return plan


def compute_dtypes(dtype, *arrays):
    """(matmul operand dtype, accumulator dtype) as ``jaxrnn.cells.base.matmul`` picks them."""
    if dtype is not None:
        mm = jnp.dtype(dtype)
    else:
        mm = jnp.result_type(*arrays)
    return mm, jnp.promote_types(mm, jnp.float32)


def mm(a, b, mdt, acc):
    return jnp.matmul(a.astype(mdt), b.astype(mdt), preferred_element_type=acc)


def column_blocks(name: str, w, split: int) -> tuple:
    """``w [K, N]`` as ``split`` column blocks ``[K, N / split]`` (sliced once, before the
    time loop, so the loop body only reads them)."""
    n = w.shape[-1]
    if n % split:
        raise ValueError(f"{name}: Plan.split={split} does not divide the {n} gate columns")
    if split == 1:
        return (w,)
    width = n // split
    return tuple(w[:, k * width:(k + 1) * width] for k in range(split))


def mm_blocks_t(d, blocks: tuple, mdt, acc):
    """``d @ concatenate(blocks, -1).T`` as one matmul per block, summed."""
    if len(blocks) == 1:
        return mm(d, blocks[0].T, mdt, acc)
    width = blocks[0].shape[-1]
    out = mm(d[..., :width], blocks[0].T, mdt, acc)
    for k in range(1, len(blocks)):
        out = out + mm(d[..., k * width:(k + 1) * width], blocks[k].T, mdt, acc)
    return out


def mm_blocks(a, blocks: tuple, mdt, acc):
    """``a @ concatenate(blocks, -1)`` as one matmul per block."""
    if len(blocks) == 1:
        return mm(a, blocks[0], mdt, acc)
    return jnp.concatenate([mm(a, b, mdt, acc) for b in blocks], axis=-1)


def check_batch(name: str, xs, input_size: int):
    shape = jnp.shape(xs)
    if len(shape) != 3:
        raise ValueError(f"{name}: xs must be a batch of sequences [B, T, input], got shape "
                         f"{tuple(shape)}")
    if shape[1] == 0:
        raise ValueError(f"{name}: xs has no time steps (shape {tuple(shape)})")
    if shape[2] != input_size:
        raise ValueError(f"{name}: xs has {shape[2]} features on its last axis (shape "
                         f"{tuple(shape)}) but the params expect input_size={input_size}")


def check_lengths(name: str, seq_lengths, batch: int, steps: int):
    """The core's seq_lengths check (shape ``(batch,)``, integers in ``[0, steps]``)."""
    from jaxrnn.scan import check_seq_lengths
    try:
        return check_seq_lengths(seq_lengths, steps, batch_shape=(batch,))
    except (ValueError, TypeError) as e:
        raise type(e)(f"{name}: {e}") from None


def check_carry_leaf(name: str, what: str, leaf, batch: int, width: int):
    if tuple(jnp.shape(leaf)) != (batch, width):
        raise ValueError(f"{name}: carry.{what} must have shape ({batch}, {width}), got "
                         f"{tuple(jnp.shape(leaf))}")


def step_mask(lengths, steps: int):
    """``[T, B, 1]`` booleans: step t of example b is valid."""
    return (jnp.arange(steps)[:, None] < lengths[None, :])[:, :, None]


def shifted(seq, first, reverse: bool):
    """The value before each step: ``seq`` moved one step along the loop's direction,
    with ``first`` (the initial carry) at the loop's first step."""
    if reverse:
        return jnp.concatenate([seq[1:], first[None]], 0)
    return jnp.concatenate([first[None], seq[:-1]], 0)


def sigmoid_tanh_consts(n_sig_before: int, n_tanh: int, n_sig_after: int, width: int):
    """Per-column (scale, offset) so that ``scale * tanh(scale * z) + offset`` is
    ``sigmoid(z)`` on sigmoid columns (sigmoid(z) = 0.5 tanh(z / 2) + 0.5) and ``tanh(z)``
    on tanh columns: every gate activation in one elementwise pass."""
    half = np.full(width, 0.5, np.float32)
    one = np.ones(width, np.float32)
    zero = np.zeros(width, np.float32)
    scale = np.concatenate([half] * n_sig_before + [one] * n_tanh + [half] * n_sig_after)
    offset = np.concatenate([half] * n_sig_before + [zero] * n_tanh + [half] * n_sig_after)
    return scale, offset


def bptt(body, carry, seqs, chunk_grads, grads0, steps: int, chunk: int, loop_reverse: bool,
         unroll: int):
    """The backward loop, whole or in chunks of ``chunk`` steps.

    ``body(carry, s) -> (carry, outs)`` is one step of the reverse recursion over the
    time-major sequences ``seqs`` (a pytree; None leaves allowed).
    ``chunk_grads(seqs_chunk, outs_chunk) -> (grads, per_step)`` turns a run of steps'
    outputs into weight-gradient contributions (summed over chunks, starting at
    ``grads0``) and per-step results (concatenated back in time order).
    Returns ``(carry, grads, per_step)``.
    """
    tmap = jax.tree.map
    if chunk <= 0 or chunk >= steps:
        carry, outs = jax.lax.scan(body, carry, seqs, reverse=loop_reverse, unroll=unroll)
        grads, per_step = chunk_grads(seqs, outs)
        return carry, tmap(jnp.add, grads0, grads), per_step
    n, r = divmod(steps, chunk)
    # The loop runs from the end when loop_reverse: full chunks there, the rest at t < r.
    lo, hi = (r, steps) if loop_reverse else (0, n * chunk)
    full = tmap(lambda a: a[lo:hi].reshape((n, chunk) + a.shape[1:]), seqs)

    def outer(state, s):
        c, g = state
        c, outs = jax.lax.scan(body, c, s, reverse=loop_reverse, unroll=unroll)
        dg, per = chunk_grads(s, outs)
        return (c, tmap(jnp.add, g, dg)), per

    (carry, grads), per_full = jax.lax.scan(outer, (carry, grads0), full, reverse=loop_reverse)
    per_full = tmap(lambda a: a.reshape((n * chunk,) + a.shape[2:]), per_full)
    if not r:
        return carry, grads, per_full
    rest = tmap(lambda a: a[:r] if loop_reverse else a[n * chunk:], seqs)
    carry, outs = jax.lax.scan(body, carry, rest, reverse=loop_reverse, unroll=unroll)
    dg, per_rest = chunk_grads(rest, outs)
    grads = tmap(jnp.add, grads, dg)
    order = (lambda a, b: (b, a)) if loop_reverse else (lambda a, b: (a, b))
    per_step = tmap(lambda a, b: jnp.concatenate(order(a, b), 0), per_full, per_rest)
    return carry, grads, per_step
