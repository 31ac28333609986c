import os
import sys

import jax
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
