"""Checkpoints with orbax: atomic, checksummed, verified on restore, the last k kept, the best
kept apart.

Layout of a workdir::

    checkpoints/<step>/   the full train state (params, optimizer state, step, experiment state
                          such as a TBPTT carry, metric accumulators); the last ``keep`` are kept
    best/<step>/          params of the best dev evaluation so far, and its metrics

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a run killed
at any moment (SIGKILL included) leaves only whole checkpoints behind; unfinished ones are ignored.

**Integrity.** Every checkpoint carries two checks:

- ``integrity/`` (an orbax JSON item saved in the same atomic write as the arrays): the SHA-256
  of every saved array's dtype, shape and bytes in tree order, computed from the host values
  before saving (:func:`array_checksum`), and the number of arrays. It does not depend on how
  orbax lays out its files; a restore recomputes it from the restored values and compares.
- ``jaxrnn_files.json`` (written by the main process once orbax has finalized the folder): the
  size and SHA-256 of every file in the step folder. It is checked before orbax reads anything,
  so a truncated, deleted or overwritten file is named as such instead of surfacing as a
  TensorStore traceback. A folder without it (a kill between the two writes) is still accepted
  when its arrays match ``integrity/``.

A step that fails any check (empty folder, a missing, truncated or changed file, a missing
checksum, an orbax read error, an array checksum mismatch, a state holding another step) is
*damaged*. :meth:`Checkpoints.restore_latest` falls back to the newest intact step with one
warning line per skipped step and (when asked, as the trainer does) moves the damaged folders
to ``<step>.corrupt`` so that they are not retried and a resumed run can write that step again;
with no intact step left it raises :class:`CheckpointError` and changes nothing.

``best/`` can only hold steps up to the newest full checkpoint plus the evaluations after it; on
resume the entries past the checkpoint being restored are dropped (the resumed run recomputes them
bit for bit), and at each full checkpoint the older best entries are pruned. The best value so far
is also stored in each full checkpoint's ``integrity/`` item, so a damaged ``best/`` does not
change what a resumed run computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointError", "Checkpoints", "array_checksum", "host_values"]

MANIFEST = "jaxrnn_files.json"
INTEGRITY = "integrity"
FORMAT = "jaxrnn-checkpoint-1"


class CheckpointError(RuntimeError):
    """No intact checkpoint to restore (every step is damaged), or the step asked for is."""


class Damaged(Exception):
    """One checkpoint step failed verification (internal; the reason is the message)."""


class Restored(NamedTuple):
    step: int
    tree: Any
    info: dict          # the integrity item: checksum, arrays, and what the saver added
    meta: Optional[dict]


def host_values(tree: Any) -> Any:
    """Any arrays (replicated or sharded, one process or many) -> numpy, on every process
    (a collective when an array is not fully addressable: call it on every process)."""
    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(get, tree)


def array_checksum(leaves) -> str:
    """SHA-256 over ``index:dtype:shape`` and the C-order bytes of every array, in order."""
    h = hashlib.sha256(FORMAT.encode() + b"\n")
    for i, x in enumerate(leaves):
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{i}:{a.dtype.name}:{tuple(a.shape)}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_manifest(folder: Path) -> None:
    entries = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size,
                                                 "sha256": _file_sha256(p)}
               for p in _files(folder)}
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, "files": entries}, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)


def _check_files(folder: Path) -> None:
    """Raises :class:`Damaged` naming the first file that differs from the manifest."""
    if not folder.is_dir():
        raise Damaged("missing step folder")
    if not any(folder.iterdir()):
        raise Damaged("empty step folder")
    path = folder / MANIFEST
    if not path.exists():
        return  # killed between orbax's write and ours: the array checksum decides
    try:
        files = {str(rel): (int(e["size"]), str(e["sha256"]))
                 for rel, e in json.loads(path.read_text())["files"].items()}
    except Exception:  # noqa: BLE001 - any damage to the manifest
        raise Damaged(f"file manifest {MANIFEST} unreadable") from None
    for rel, (want_size, want_sha) in sorted(files.items()):
        p = folder / rel
        if not p.is_file():
            raise Damaged(f"missing file {rel}")
        size = p.stat().st_size
        if size != want_size:
            what = "truncated" if size < want_size else "changed"
            raise Damaged(f"file {rel} {what} ({size} bytes, expected {want_size})")
        if _file_sha256(p) != want_sha:
            raise Damaged(f"checksum mismatch in file {rel}")


def _abstract(tree):
    def leaf(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)


def _manager(path: Path, keep: Optional[int]):
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                        enable_async_checkpointing=False)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
                INTEGRITY: ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(path.resolve(), options=opts, item_handlers=handlers)


def _all_processes(ok: bool) -> bool:
    """True when ``ok`` holds on every process (the processes then take the same branch)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _warn(msg: str) -> None:
    if jax.process_index() == 0:
        print(f"jaxrnn: warning: {msg}", file=sys.stderr, flush=True)


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    text = f"{type(e).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def step_folders(root) -> list[int]:
    """The steps of the all-digit folders under ``root`` (``<workdir>/checkpoints``), newest
    first; a cheap look that opens nothing (none of them is verified)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()),
                  reverse=True)


class Checkpoints:
    """The full-state checkpoints and the best-params checkpoints of one workdir.

    Args:
      workdir: the run folder.
      keep: full checkpoints kept (``train.keep_checkpoints``).
      best_mode: ``"min"`` or ``"max"`` (``train.best_mode``).
      warn: where the one-line warnings about damaged steps go (default: stderr, main process).
    """

    def __init__(self, workdir, *, keep: int = 2, best_mode: str = "min",
                 warn: Optional[Callable[[str], None]] = None):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        self.workdir = Path(workdir)
        self.best_mode = best_mode
        self.warn = warn or _warn
        self._latest = _manager(self.workdir / "checkpoints", keep)
        self._best = _manager(self.workdir / "best", None)

    # ------------------------------------------------------------------ common
    @staticmethod
    def _steps(mngr) -> list[int]:
        """Every step folder, newest first: orbax's list and any other all-digit folder (an
        empty or damaged folder orbax may not list, but that must be reported)."""
        return sorted(set(mngr.all_steps()) | set(step_folders(mngr.directory)), reverse=True)

    @staticmethod
    def _save(mngr, step: int, tree: Any, info: dict, meta: Optional[dict] = None) -> None:
        host = host_values(tree)
        leaves = jax.tree.leaves(host)
        info = dict(info, format=FORMAT, sha256=array_checksum(leaves), arrays=len(leaves),
                    step=int(step))
        items = {"state": ocp.args.StandardSave(tree), INTEGRITY: ocp.args.JsonSave(info)}
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(dict(meta))
        mngr.save(step, args=ocp.args.Composite(**items), force=True)
        mngr.wait_until_finished()
        if jax.process_index() == 0:
            _write_manifest(Path(mngr.directory) / str(step))

    @staticmethod
    def _verified(mngr, step: int, abstract: Any, *, check_step: bool = False) -> Restored:
        """Restores ``step`` and checks it; raises :class:`Damaged` with the reason."""
        folder = Path(mngr.directory) / str(step)
        reason = None
        try:
            _check_files(folder)
            if not (folder / INTEGRITY).is_dir():
                raise Damaged(f"missing metadata: no array checksum ({INTEGRITY}/; checkpoints "
                              f"of jaxrnn before checksums have none)")
            if not (folder / "state").is_dir():
                raise Damaged("missing folder state/")
        except Damaged as e:
            reason = str(e)
        if not _all_processes(reason is None):
            raise Damaged(reason or "damaged on another process")
        out = None
        try:
            args = {"state": ocp.args.StandardRestore(_abstract(abstract)),
                    INTEGRITY: ocp.args.JsonRestore()}
            if (folder / "meta").is_dir():
                args["meta"] = ocp.args.JsonRestore()
            out = mngr.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:  # noqa: BLE001 - orbax / TensorStore read errors of any kind
            reason = f"unreadable ({_first_line(e)})"
        if not _all_processes(reason is None):
            raise Damaged(reason or "unreadable on another process")
        info = out[INTEGRITY]
        try:
            want, n, saved_step = info["sha256"], int(info["arrays"]), int(info["step"])
        except Exception:  # noqa: BLE001
            raise Damaged(f"missing metadata: {INTEGRITY}/ holds no checksum") from None
        if saved_step != step:
            raise Damaged(f"its checksum record is of step {saved_step}")
        # orbax returns nested NamedTuples (optax states) as plain tuples: rebuild the structure.
        leaves = jax.tree.leaves(out["state"])
        if len(leaves) != n or len(leaves) != len(jax.tree.leaves(abstract)):
            raise Damaged(f"holds {len(leaves)} arrays, its checksum covers {n}, this run's "
                          f"state has {len(jax.tree.leaves(abstract))}")
        tree = jax.tree.unflatten(jax.tree.structure(abstract), leaves)
        host = host_values(tree)
        got = array_checksum(jax.tree.leaves(host))
        if got != want:
            raise Damaged(f"array checksum mismatch (stored {want[:12]}..., restored values "
                          f"give {got[:12]}...)")
        if check_step:
            held = int(np.asarray(host.step))
            if held != step:
                raise Damaged(f"holds train step {held}")
        meta = dict(out["meta"]) if out.get("meta") is not None else None
        return Restored(step, tree, dict(info), meta)

    def _quarantine(self, mngr, steps) -> list[str]:
        """Moves damaged step folders to ``<step>.corrupt`` (main process); returns the names."""
        root = Path(mngr.directory)
        names = []
        for s in steps:
            src = root / str(s)
            dst = root / f"{s}.corrupt"
            k = 0
            while dst.exists():
                k += 1
                dst = root / f"{s}.corrupt.{k}"
            names.append(dst.name)
            if jax.process_index() == 0 and src.exists():
                os.rename(src, dst)
        _barrier(f"jaxrnn-quarantine-{root.name}")
        mngr.reload()
        return names

    def _scan(self, mngr, abstract, *, check_step):
        """Newest intact step of ``mngr``: ``(Restored or None, [(step, reason)])``."""
        bad = []
        for s in self._steps(mngr):
            try:
                return self._verified(mngr, s, abstract, check_step=check_step), bad
            except Damaged as e:
                bad.append((s, str(e)))
        return None, bad

    def _report(self, mngr, bad, quarantine: bool) -> None:
        root = Path(mngr.directory)
        moved = self._quarantine(mngr, [s for s, _ in bad]) if quarantine else [None] * len(bad)
        for (s, reason), name in zip(bad, moved):
            where = f"{root.name}/{s}"
            action = f"; moved it to {root.name}/{name}" if name else ""
            self.warn(f"skipping checkpoint {where} in {root.parent}: {reason}{action}")

    # ------------------------------------------------------------------ full state
    def latest_step(self) -> Optional[int]:
        """The newest step folder (not verified; :meth:`restore_latest` verifies)."""
        steps = self._steps(self._latest)
        return steps[0] if steps else None

    def steps(self) -> list[int]:
        return sorted(self._steps(self._latest))

    def save(self, step: int, state: Any, extra: Optional[dict] = None) -> None:
        """Saves the full state with its checksum; ``extra`` (JSON) is stored beside it."""
        self._save(self._latest, step, state, dict(extra or {}))
        # best entries before the newest one can go now that this step is durable
        steps = sorted(self._best.all_steps())
        for s in steps[:-1]:
            self._best.delete(s)

    def restore(self, step: int, abstract_state: Any) -> Any:
        """The state of ``step``, verified; :class:`CheckpointError` if it is damaged."""
        return self.restore_step(step, abstract_state).tree

    def restore_step(self, step: int, abstract_state: Any) -> Restored:
        step = int(step)
        if step not in self._steps(self._latest):
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self.workdir / 'checkpoints'} (it holds "
                f"steps {self.steps() or 'none'})")
        try:
            return self._verified(self._latest, step, abstract_state, check_step=True)
        except Damaged as e:
            raise CheckpointError(f"checkpoint {self.workdir / 'checkpoints' / str(step)} is "
                                  f"damaged: {e}") from None

    def restore_latest(self, abstract_state: Any, *, quarantine: bool = False
                       ) -> Optional[Restored]:
        """The newest intact full checkpoint, or None when there is none at all.

        Damaged newer steps are skipped with one warning line each and, with ``quarantine``,
        moved to ``checkpoints/<step>.corrupt`` (only once an intact step was found). With
        step folders but none intact: :class:`CheckpointError`, and nothing is changed."""
        found, bad = self._scan(self._latest, abstract_state, check_step=True)
        if found is None and bad:
            root = self.workdir / "checkpoints"
            raise CheckpointError(
                f"no intact checkpoint in {root}: "
                + "; ".join(f"step {s}: {r}" for s, r in bad)
                + ". Nothing in the workdir was changed. Restore the files from a backup, or "
                  f"move {root} aside (and best/, metrics.jsonl) to start the run again from "
                  "step 0, or use a new --workdir.")
        if bad:
            self._report(self._latest, bad, quarantine)
        return found

    def newest_intact_step(self, abstract_state: Any) -> Optional[int]:
        """The newest step that restores and matches its checksum (no warnings, no changes)."""
        found, _ = self._scan(self._latest, abstract_state, check_step=True)
        return None if found is None else found.step

    def rewind(self, step: int) -> None:
        """Drops best entries written after ``step`` (the run resumes from ``step``)."""
        for s in self._best.all_steps():
            if s > step:
                self._best.delete(s)

    # ------------------------------------------------------------------ best
    def best_steps(self) -> list[int]:
        return sorted(self._steps(self._best))

    def best(self) -> Optional[tuple[int, dict]]:
        """``(step, metrics)`` of the newest ``best/`` entry whose files check out, or None
        (the arrays are verified by :meth:`restore_best`)."""
        for s in self._steps(self._best):
            folder = Path(self._best.directory) / str(s)
            try:
                _check_files(folder)
                meta = self._best.restore(s, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore()))
                return s, dict(meta["meta"])
            except Exception:  # noqa: BLE001 - damaged: not the best any more
                continue
        return None

    def is_better(self, value: float, than: Optional[float], loss: Optional[float] = None,
                  than_loss: Optional[float] = None) -> bool:
        """Whether a dev evaluation scoring ``value`` beats the best so far (``than``). A tie
        (a small dev set's accuracy or F1 moves in steps of one example) goes to the lower dev
        ``loss`` when both are given, so a later checkpoint that fits dev better is not passed
        over for an equal count of hits. NaN never wins."""
        if than is None:
            return value == value
        if value == than and loss is not None and than_loss is not None:
            return loss < than_loss
        return value < than if self.best_mode == "min" else value > than

    def save_best(self, step: int, params: Any, metrics: dict) -> None:
        self._save(self._best, step, params, {}, meta=dict(metrics))

    def restore_best(self, abstract_params: Any) -> tuple[Any, int, dict]:
        """Params, step and metrics of the newest intact ``best/`` entry; damaged ones are
        skipped with a warning. :class:`FileNotFoundError` when none is left."""
        found, bad = self._scan(self._best, abstract_params, check_step=False)
        if bad:
            self._report(self._best, bad, False)
        if found is None:
            raise FileNotFoundError(f"no intact best checkpoint in {self.workdir / 'best'}")
        return found.tree, found.step, found.meta or {}

    def check_best(self, abstract_params: Any, *, quarantine: bool = True) -> list[int]:
        """Verifies every ``best/`` entry; damaged ones are reported (and moved to
        ``best/<step>.corrupt``). Returns the intact steps."""
        good, bad = [], []
        for s in self._steps(self._best):
            try:
                self._verified(self._best, s, abstract_params)
                good.append(s)
            except Damaged as e:
                bad.append((s, str(e)))
        if bad:
            self._report(self._best, bad, quarantine)
        return sorted(good)

    def close(self) -> None:
        self._latest.close()
        self._best.close()
