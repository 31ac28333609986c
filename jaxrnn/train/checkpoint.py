"""Checkpoints with orbax: atomic, the last k kept, the best kept apart.

Layout of a workdir::

    checkpoints/<step>/   the full train state (params, optimizer state, step, experiment state
                          such as a TBPTT carry, metric accumulators); the last ``keep`` are kept
    best/<step>/          params of the best dev evaluation so far, and its metrics

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a run killed
at any moment (SIGKILL included) leaves only whole checkpoints behind; unfinished ones are ignored.

``best/`` can only hold steps up to the newest full checkpoint plus the evaluations after it; on
resume the entries past the checkpoint being restored are dropped (the resumed run recomputes them
bit for bit), and at each full checkpoint the older best entries are pruned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpoints"]


def _abstract(tree):
    def leaf(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)


def _restore_into(mngr, step, abstract, item="state"):
    args = {item: ocp.args.StandardRestore(_abstract(abstract))}
    if "meta" in (mngr.item_metadata(step) or {}):
        args["meta"] = ocp.args.JsonRestore()
    out = mngr.restore(step, args=ocp.args.Composite(**args))
    # orbax returns nested NamedTuples (optax states) as plain tuples: rebuild the structure.
    tree = jax.tree.unflatten(jax.tree.structure(abstract), jax.tree.leaves(out[item]))
    meta = out["meta"] if "meta" in args else None
    return tree, meta


def _manager(path: Path, keep: Optional[int]):
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                        enable_async_checkpointing=False)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(path.resolve(), options=opts, item_handlers=handlers)


class Checkpoints:
    """The full-state checkpoints and the best-params checkpoints of one workdir."""

    def __init__(self, workdir, *, keep: int = 2, best_mode: str = "min"):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        self.workdir = Path(workdir)
        self.best_mode = best_mode
        self._latest = _manager(self.workdir / "checkpoints", keep)
        self._best = _manager(self.workdir / "best", None)

    # ------------------------------------------------------------------ full state
    def latest_step(self) -> Optional[int]:
        return self._latest.latest_step()

    def save(self, step: int, state: Any) -> None:
        self._latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                          force=True)
        self._latest.wait_until_finished()
        # best entries before the newest one can go now that this step is durable
        steps = sorted(self._best.all_steps())
        for s in steps[:-1]:
            self._best.delete(s)

    def restore(self, step: int, abstract_state: Any) -> Any:
        state, _ = _restore_into(self._latest, step, abstract_state)
        return state

    def rewind(self, step: int) -> None:
        """Drops best entries written after ``step`` (the run resumes from ``step``)."""
        for s in self._best.all_steps():
            if s > step:
                self._best.delete(s)

    # ------------------------------------------------------------------ best
    def best(self) -> Optional[tuple[int, dict]]:
        """``(step, metrics)`` of the best evaluation so far, or None."""
        steps = sorted(self._best.all_steps())
        if not steps:
            return None
        meta = self._best.restore(steps[-1], args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return steps[-1], dict(meta["meta"])

    def is_better(self, value: float, than: Optional[float]) -> bool:
        if than is None:
            return True
        return value < than if self.best_mode == "min" else value > than

    def save_best(self, step: int, params: Any, metrics: dict) -> None:
        self._best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(dict(metrics))),
            force=True)
        self._best.wait_until_finished()

    def restore_best(self, abstract_params: Any) -> tuple[Any, int, dict]:
        b = self.best()
        if b is None:
            raise FileNotFoundError(f"no best checkpoint in {self.workdir / 'best'}")
        params, meta = _restore_into(self._best, b[0], abstract_params)
        return params, b[0], meta

    def close(self) -> None:
        self._latest.close()
        self._best.close()
