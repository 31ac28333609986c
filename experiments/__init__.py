"""This repository's experiments: one module per task, named by module path in a config
(``experiment: experiments.charlm``).

Each module defines ``Config`` (a dataclass schema extending ``jaxrnn.train.BaseConfig``) and
``build(config, runtime) -> jaxrnn.train.Task``; see ``docs/training.md``. The package is not
installed with the library (the wheel holds ``jaxrnn`` only): ``jaxrnn train`` finds it from the
working directory, like ``python -m`` does, so run commands from the repository root.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path


def available() -> list[str]:
    """Module paths of the experiments in this package (those that define ``build``)."""
    here = Path(__file__).parent
    out = []
    for m in pkgutil.iter_modules([str(here)]):
        if m.name.startswith("_") or m.ispkg:
            continue
        if "\ndef build(" in (here / f"{m.name}.py").read_text(encoding="utf-8"):
            out.append(f"experiments.{m.name}")
    return sorted(out)
