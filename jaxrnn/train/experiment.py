"""The task interface: what an experiment gives the runner, and how the runner finds it.

An experiment is any importable Python module (``experiments.charlm`` in this repository, or a
module of the user's, named by the config's ``experiment`` key) with

``Config``
    its schema: a dataclass extending :class:`~jaxrnn.train.config.BaseConfig` with ``data`` and
    ``model`` sections (fields marked :func:`~jaxrnn.train.config.data_path` are checked to exist).
``build(config, runtime) -> Task``
    reads the data and returns a :class:`Task`. ``runtime`` (a
    :class:`~jaxrnn.train.sharding.Runtime`) has the mesh and ``shard_batch`` for evaluation code.

The runner does the rest: optimizer, ``jit``, sharding, checkpoints, metrics, plots, CLI. It
never imports a task: everything task-specific reaches it through the config's module name.
A module may also define extra commands the CLI looks up by name (the way big_vision's trainer
finds evaluators): ``evaluate_ensemble(members, path=None)`` for ``jaxrnn evaluate --ensemble``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional

from jaxrnn.train.config import ConfigError

__all__ = ["Task", "load_experiment"]


@dataclass
class Task:
    """What an experiment provides: ``init``, ``loss``, ``train_batch`` and ``evaluate`` are the
    interface; the rest are optional hooks for the CLI's commands. Experiments may subclass it
    to carry more (the tagging experiments' ``TaggingTask`` adds what ensembles need).

    Attributes:
      init: ``key -> params``.
      loss: ``(params, state, batch, key) -> (loss, (new_state, metrics))``, traced under ``jit``
        on the global batch; ``key`` is None-free (a fresh key every step, for dropout);
        ``metrics`` is a dict of scalars (means over the batch) logged as ``train`` metrics.
      train_batch: ``step -> batch``, a pytree of NumPy arrays whose leading axis is the global
        batch. It must be a pure function of ``step`` (and the config): that is what makes
        resume exact and every process agree on the data.
      evaluate: ``(params, split) -> {metric: float}`` on held-out data; ``split`` is ``"dev"``
        or ``"test"``. ``evaluate_file(params, path)`` scores any file of the same format.
      init_state: ``() -> state``, per-example state carried from one batch to the next (a
        TBPTT carry), as NumPy arrays whose leading axis is the batch; ``None`` for none. It is
        checkpointed with the params.
      evaluate_file: ``(params, path) -> {metric: float}``, for ``jaxrnn evaluate --data FILE``.
      generate: ``(params, *, prompt, length, temperature, seed, emit) -> str``, for generative
        models (``emit`` is called with each new piece of output as it is produced).
      predict: ``(params, input_path, output_path) -> None``, writing predictions for a file
        (``jaxrnn predict``).
      units: ``(count_per_step, name)`` for the progress bar's throughput, e.g. ``(B*T, "char")``.
      metrics: the names ``evaluate`` reports (at least those a config may select with
        ``train.best_metric``), so a wrong name is refused before training rather than at the
        first evaluation; ``None``: checked then.
      write_files: ``workdir -> None``, files of the experiment's own to keep in the run folder
        (e.g. the data split it made), called once the workdir is locked; paths stay inside it.
    """
    init: Callable[[Any], Any]
    loss: Callable[..., Any]
    train_batch: Callable[[int], Any]
    evaluate: Callable[..., dict]
    init_state: Optional[Callable[[], Any]] = None
    evaluate_file: Optional[Callable[..., dict]] = None
    generate: Optional[Callable[..., str]] = None
    predict: Optional[Callable[..., None]] = None
    units: Optional[tuple] = None
    metrics: Optional[tuple] = None
    write_files: Optional[Callable[[Any], None]] = None


def load_experiment(name: str) -> ModuleType:
    """The experiment module named by a config's ``experiment`` key.

    ``name`` is an importable module path (``experiments.charlm``, ``mypkg.tasks.lm``). Like
    ``python -m``, the current working directory is searched too, so the repository's
    ``experiments`` package (which is not installed with the library) and a user's own module
    beside their config are found without installing them."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("experiment: the config must name its experiment module, e.g. "
                          "'experiment: experiments.charlm' (a module defining Config and build)")
    try:
        mod = _import(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            hint = ""
            if "." not in name:
                hint = (f"; this repository's experiments are named by module path, e.g. "
                        f"'experiments.{name}'")
            raise ConfigError(f"experiment: no module named {name!r} (searched the Python path "
                              f"and the working directory {os.getcwd()}: run from the folder "
                              f"that holds it, e.g. the repository root for experiments.*, or "
                              f"add that folder to PYTHONPATH){hint}") from None
        raise
    for attr in ("Config", "build"):
        if not hasattr(mod, attr):
            raise ConfigError(f"experiment {name!r} ({getattr(mod, '__file__', '?')}) defines no "
                              f"{attr}: an experiment module needs Config and build")
    return mod


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # only retry when it is ``name`` itself (or a parent package) that is missing, not a
        # module it imports
        ours = e.name is not None and (name == e.name or name.startswith(e.name + "."))
        cwd = os.getcwd()
        if not ours or cwd in sys.path:
            raise
    # not on the path: search the working directory, as ``python -m`` does (kept on the path
    # afterwards, since the module's own later imports need it too)
    sys.path.append(cwd)
    importlib.invalidate_caches()
    return importlib.import_module(name)
