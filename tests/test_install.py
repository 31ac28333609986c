"""The library works outside the repository: the wheel holds ``jaxrnn`` only; installed from it
(not editable), the README example runs in a folder of its own, a user's own experiment module
and config train through the CLI, and inside the repository the repository's configs still train
(``experiments`` is found from the working directory, not installed)."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from tests._paths import DATA, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of the sources, installed into a folder of its own."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "jaxrnn", src / "jaxrnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # experiments/ is copied too: the wheel must leave it out even when it sits beside jaxrnn/
    shutil.copytree(REPO / "experiments", src / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(src)], check=True,
                   capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("jaxrnn-*.whl")
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, text=True,
                   timeout=300)
    return wheel, target


def _run(args, cwd, target, **kw):
    env = dict(os.environ, PYTHONPATH=str(target), CI="true")
    env.pop("JAXRNN_DATA", None)
    # -P: the working directory is not put on sys.path (as for an installed console script),
    # so `import jaxrnn` can only find the installed copy
    return subprocess.run([sys.executable, "-P", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, **kw)


def test_wheel_holds_the_library_only(installed):
    wheel, _ = installed
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    info = [t for t in tops if t.endswith(".dist-info")]
    assert len(info) == 1 and tops - set(info) == {"jaxrnn"}, sorted(tops)


def test_readme_example_runs_outside_the_repository(installed, tmp_path):
    _, target = installed
    code = re.search(r"## Example\n\n```python\n(.*?)```", (REPO / "README.md").read_text(),
                     re.S).group(1)
    code = "import jaxrnn, sys; print(jaxrnn.__file__, file=sys.stderr)\n" + code
    r = _run(["-c", code], tmp_path, target)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0].startswith(str(target))       # the installed copy ran
    assert r.stdout.splitlines()[:2] == ["(32, 50, 64) (32, 64) (32, 64)", "(32, 50, 128)"]


USER_EXPERIMENT = '''
"""A user's own experiment: fit y = 2x with one weight, data from a file."""
from dataclasses import dataclass, field
import jax.numpy as jnp
import numpy as np
from jaxrnn.train import BaseConfig, Task, data_path


@dataclass
class DataConfig:
    path: str = data_path("points.txt")


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)


def build(cfg, runtime):
    x = np.loadtxt(cfg.data.path, dtype=np.float32)
    y = 2.0 * x

    def loss(params, state, batch, key):
        return jnp.mean((params["w"] * batch["x"] - batch["y"]) ** 2), (state, {})

    return Task(init=lambda key: {"w": jnp.zeros((), jnp.float32)}, loss=loss,
                train_batch=lambda step: {"x": x, "y": y},
                evaluate=lambda p, split="dev": {"loss": float(np.mean((float(p["w"]) * x - y) ** 2))})
'''


def test_a_users_experiment_trains_through_the_cli(installed, tmp_path):
    """Config and module in the user's folder; the data root is the config's own data_root
    (relative to the config file), so no repository path is involved."""
    _, target = installed
    (tmp_path / "mytask.py").write_text(USER_EXPERIMENT)
    (tmp_path / "data").mkdir()
    np_points = " ".join(str(v) for v in (0.5, 1.0, 1.5, 2.0))
    (tmp_path / "data" / "points.txt").write_text(np_points + "\n")
    (tmp_path / "my.yaml").write_text(textwrap.dedent("""
        experiment: mytask
        data_root: data
        optimizer: {name: sgd, learning_rate: 0.1}
        train: {steps: 30, batch_size: 1, eval_every: 30, checkpoint_every: 30, log_every: 10,
                tensorboard: false, plots: false, best_metric: loss}
    """))
    r = _run(["-m", "jaxrnn.cli", "train", "my.yaml", "--workdir", "run"], tmp_path, target)
    assert r.returncode == 0, r.stderr
    dev = json.loads(r.stdout.strip().splitlines()[-1])
    assert dev["loss"] < 1e-3                                         # it learned w = 2
    # the same module is found again to evaluate the run folder
    r = _run(["-m", "jaxrnn.cli", "evaluate", "--workdir", "run"], tmp_path, target)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["loss"] < 1e-3


def test_the_repositorys_configs_train_with_the_installed_library(installed, tmp_path):
    _, target = installed
    r = _run(["-c", "import jaxrnn; print(jaxrnn.__file__)"], REPO, target)
    assert r.stdout.strip().startswith(str(target))
    if not (DATA / "tinyshakespeare" / "input.txt").is_file():
        pytest.fail(f"the repository's data is missing: {DATA}")
    r = _run(["-m", "jaxrnn.cli", "train", "configs/charlm_tiny.yaml", "--workdir",
              str(tmp_path / "run"), "--set", "train.steps=4", "--set", "train.eval_every=4",
              "--set", "train.checkpoint_every=4", "--set", "train.log_every=2"], REPO, target)
    assert r.returncode == 0, r.stderr
    assert "loss" in json.loads(r.stdout.strip().splitlines()[-1])
