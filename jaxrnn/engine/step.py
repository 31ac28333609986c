"""One time step of a layer, shared by the reference loop and the fused engine.

The cell's :class:`~jaxrnn.cells.base.Recurrence` gives the step; what a layer adds to it
(zoneout, and freezing the carry past a sequence's length) is written here once, so the two
loops differ only in who runs the matmuls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.engine import taps


def advance(update, pw, carry, px_t, mm, *, ok=None, rec_mask=None, zoneout_rate=0.0,
            zoneout_mask=None):
    """The carry after one step.

    Args:
      update: the cell's ``Recurrence.update``.
      pw, carry, px_t, mm, rec_mask: its arguments.
      ok: None, or a boolean scalar: False past the sequence's length, where the carry
        stays as it is.
      zoneout_rate: with no ``zoneout_mask``, each unit takes the expectation
        ``p * previous + (1 - p) * new`` (zoneout at evaluation).
      zoneout_mask: a carry-shaped pytree of booleans, True where a unit keeps its previous
        value (zoneout in training).
    """
    new = update(pw, carry, px_t, mm, rec_mask)
    if zoneout_mask is not None:
        new = jax.tree.map(lambda m, o, n: jnp.where(m, o, n), zoneout_mask, carry, new)
    elif zoneout_rate:
        p = zoneout_rate
        new = jax.tree.map(lambda o, n: (p * o + (1 - p) * n).astype(n.dtype), carry, new)
    if ok is not None:
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, carry)
    return new


def time_permutation(num_steps: int, lengths, reverse):
    """Indices that read the valid part of a padded sequence backwards (an involution).

    ``reverse`` may be a Python bool or a traced boolean (bidirectional layers vmap over it).
    Returns None when no permutation is needed.
    """
    if isinstance(reverse, bool) and not reverse:
        return None
    t = jnp.arange(num_steps, dtype=jnp.int32)   # the dtype of checked lengths
    n = num_steps if lengths is None else jnp.asarray(lengths, jnp.int32)
    rev_idx = jnp.where(t < n, n - 1 - t, t)
    if isinstance(reverse, bool):
        return rev_idx
    return jnp.where(reverse, rev_idx, t)


def like_inputs(carry, *inputs):
    """``carry`` unchanged in value, typed like a function of ``inputs``.

    Under ``shard_map`` a loop's carry must vary over the same mesh axes as what the loop
    computes from (a zero initial carry made from the parameters alone would not, while the
    carry after one step does, and ``lax.scan`` rejects the mismatch), so a zero typed like
    the inputs is added to it (no cost, no gradient)."""
    return jax.tree.map(lambda leaf: leaf + taps.zeros_varying_with((), leaf.dtype, *inputs),
                        carry)
