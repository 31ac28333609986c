"""The experiment interface: what a task gives the runner, and how the runner finds it.

An experiment is a Python module (``experiments/<name>.py``, or any importable dotted path) with

``Config``
    its schema: a dataclass extending :class:`~jaxrnn.train.config.BaseConfig` with ``data`` and
    ``model`` sections (fields marked :func:`~jaxrnn.train.config.data_path` are checked to exist).
``build(config, runtime) -> Task``
    reads the data and returns a :class:`Task`. ``runtime`` (a
    :class:`~jaxrnn.train.sharding.Runtime`) has the mesh and ``shard_batch`` for evaluation code.

The runner does the rest: optimizer, ``jit``, sharding, checkpoints, metrics, plots, CLI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional

from jaxrnn.train.config import ConfigError

__all__ = ["Task", "load_experiment"]


@dataclass
class Task:
    """What an experiment provides (every function is pure except ``train_batch`` and the
    host-side ``evaluate`` / ``generate`` / ``predict``).

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
      scores: ``(params, token_seqs) -> (per-sequence score arrays, shared output params,
        labels)`` for ensembles (the tagging tasks: emissions ``[n, K]``, the CRF, tag names).
      evaluate_ensemble: ``(members, path=None) -> {metric: float}``: scores dev (or a file)
        with several trained models combined, ``members`` a list of ``(task, params)`` whose
        tasks have ``scores`` (``jaxrnn evaluate --ensemble DIR ...``).
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
    scores: Optional[Callable[..., Any]] = None
    evaluate_ensemble: Optional[Callable[..., dict]] = None


def load_experiment(name: str) -> ModuleType:
    """The experiment module for ``name``: ``experiments.<name>`` or a dotted module path."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"experiment: expected a name, got {name!r}")
    candidates = [name] if "." in name else [f"experiments.{name}"]
    for mod_name in candidates:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
                continue
            raise
        for attr in ("Config", "build"):
            if not hasattr(mod, attr):
                raise ConfigError(f"experiment {name!r} ({mod.__file__}) has no {attr}")
        return mod
    try:
        from experiments import available
        known = ", ".join(available())
    except Exception:  # noqa: BLE001 - only for the message
        known = "?"
    raise ConfigError(f"experiment: unknown experiment {name!r} (known: {known})")
