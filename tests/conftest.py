import os
import sys
from pathlib import Path

# One persistent XLA compilation cache for the whole run, shared by the xdist workers and by
# the subprocesses the runner tests start (they inherit the environment): the same tiny
# models are compiled by many tests (train, resume, evaluate, predict). Set before JAX loads.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402
import numpy as np
import pytest

# Make `tests._reference` importable wherever pytest is started from.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def x64():
    """Runs the test with 64-bit types enabled (float64 references)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
