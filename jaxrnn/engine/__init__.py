"""The fused engine: one generic time loop with a hand-derived backward pass, for every cell.

It reads only the cell's :class:`~jaxrnn.cells.base.Recurrence` (no per-cell code), so a new
cell is fast as soon as it states its step. ``jr.scan`` and the layers use it by default;
``method="reference"`` runs the plain autodiff loop instead, and :mod:`jaxrnn.engine.newton`
solves for every step at once (``method="newton"``).
"""

from jaxrnn.engine.fused import run
from jaxrnn.engine.plan import Plan, check_plan, default_plan
from jaxrnn.engine.step import advance, like_inputs, time_permutation

__all__ = ["Plan", "advance", "check_plan", "default_plan", "like_inputs", "run",
           "time_permutation"]
