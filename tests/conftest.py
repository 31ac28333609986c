import os
from pathlib import Path

# One persistent XLA compilation cache for the whole run, shared by the xdist workers and by
# the subprocesses the runner tests start (they inherit the environment): the same tiny
# models are compiled by many tests (train, resume, evaluate, predict). Set before JAX loads.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
# Strict dtype promotion and rank promotion errors for the whole suite (as equinox's conftest
# does): an implicit float32 + float64 or a silent [n] + [n, 1] broadcast fails every test that
# reaches it, not one dedicated test. Through the environment so that the subprocesses the
# CLI tests start run under the same rules.
os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Runs the test with 64-bit types enabled (float64 references)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
