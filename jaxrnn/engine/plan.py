"""Per-backend plans of the fused engine: static choices measured on each backend.

A plan says how the fused loop runs, never what it computes: every plan gives the same
numbers (tests/test_engine.py). The defaults are measurements, recorded with their commands
in docs/benchmarks.md ("Choosing the plan").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class Plan(NamedTuple):
    """How the fused loop runs (all static).

    Attributes:
      hoist: compute the input projection of every step before the loop (one large
        matmul) instead of one small matmul per step inside it.
      unroll: time steps per iteration of the forward loop.
      unroll_bwd: time steps per iteration of the backward loop.
      chunk: steps per chunk of an outer loop over time (0: one chunk; with ``remat``,
        about sqrt(T)), in which the weight gradients form chunk by chunk.
    """

    hoist: bool = True
    unroll: int = 1
    unroll_bwd: int = 1
    chunk: int = 0


def default_plan(platform: str = None) -> Plan:
    """The measured default plan of ``platform`` (the default backend when None).

    CPU (XLA:CPU): the input projection inside the loop (one small matmul per step) beats
    the hoisted one, whose ``[T, B, G]`` result has to be written and read back (and, under
    ``vmap``, transposed to time-major). GPU and TPU: the hoisted projection, one large
    matmul (cuDNN's order).
    """
    platform = platform or jax.default_backend()
    if platform == "cpu":
        return Plan(hoist=False, unroll=1, unroll_bwd=1)
    return Plan(hoist=True, unroll=1, unroll_bwd=1)


def check_plan(plan: Plan) -> Plan:
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a jaxrnn.engine.Plan, got {type(plan).__name__}")
    if not isinstance(plan.hoist, (bool, np.bool_)):
        raise TypeError(f"Plan.hoist must be a bool, got {plan.hoist!r}")
    for name, low in (("unroll", 1), ("unroll_bwd", 1), ("chunk", 0)):
        v = getattr(plan, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"Plan.{name} must be an integer >= {low}, got {v!r}")
    return plan
