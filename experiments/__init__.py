"""Experiments, one module per task, found by name (``experiment: charlm`` in a config).

Each module defines ``Config`` (a dataclass schema extending ``jaxrnn.train.config.BaseConfig``)
and ``build(config, runtime) -> jaxrnn.train.Task``. See ``docs/training.md``.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path


def available() -> list[str]:
    """Names of the experiment modules in this package."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and not m.ispkg)


def get(name: str):
    """The experiment module named ``name``."""
    from jaxrnn.train.experiment import load_experiment
    return load_experiment(name)
