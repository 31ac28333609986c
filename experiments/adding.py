"""The adding problem (Hochreiter & Schmidhuber 1997), in the form of Bai, Kolter & Koltun 2018.

Each input step is ``[value, marker]``: ``value ~ U(0, 1)``, and ``marker`` is 1 at exactly two
positions drawn uniformly without replacement from the ``T`` steps, 0 elsewhere. The target is
the sum of the two marked values; the loss is the mean squared error of a linear read-out of the
last output. Predicting the constant 1 (the target's mean) scores ``Var(u1 + u2) = 1/6 = 0.167``:
``evaluate`` reports that baseline computed on the same examples (``baseline``), next to the
model's ``loss``.

Data: the training batch of step ``s`` is drawn from ``(seed, s)``, so it is a pure function of
the step; the dev and test sets are fixed (drawn from their own seeds, the same for every run
of a length ``T``).

Model (shared with :mod:`experiments.copymem`): ``model.num_layers`` recurrent layers of
``model.cell`` -> linear read-out. ``model.cell`` names a cell or a variant:

=================  ===========================================================
``simple_rnn``     ``jr.simple_rnn(H)`` (tanh)
``lstm``           ``jr.lstm(H)`` (forget bias 1)
``lstm_peephole``  ``jr.lstm(H, peephole=True)`` (Gers & Schmidhuber 2000)
``lstm_coupled``   ``jr.lstm(H, coupled=True)`` (CIFG: i = 1 - f)
``gru``            ``jr.gru(H)``
``mgu``            ``jr.mgu(H)``
``min_gru``        ``jr.min_gru(H)``, trained with the parallel scan by default
``min_lstm``       ``jr.min_lstm(H)``, trained with the parallel scan by default
=================  ===========================================================

Run: ``jaxrnn train configs/adding.yaml --workdir runs/adding --set data.seq_len=200``; the
whole sweep and its table: ``python -m experiments.gates_report`` (see ``docs/gates.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn.train.config import DataError, PositiveInt
from jaxrnn.cells import registry
from jaxrnn.train import (BaseConfig, CellName, ConfigError, Method, NewtonConfig, Task,
                          solver_options)

# fixed seeds of the held-out sets (the same for every training seed)
DEV_SEED, TEST_SEED, MEAN_SEED = 10_001, 20_002, 30_003


def make_cell(name: str, hidden_size: int, options: Optional[dict] = None):
    """The cell for a ``model.cell`` name of :mod:`jaxrnn.cells.registry`; the plain RNN is
    tanh unless ``cell_options`` say otherwise."""
    try:
        return registry.make(name, hidden_size, **dict(options or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.cell_options: {e}") from None


# --------------------------------------------------------------------------- config

@dataclass
class DataConfig:
    # T: the number of time steps
    seq_len: PositiveInt = 200
    dev_size: PositiveInt = 1000
    test_size: PositiveInt = 1000
    # examples per evaluation call
    eval_batch: PositiveInt = 500


@dataclass
class ModelConfig:
    cell: CellName = "lstm"
    hidden_size: PositiveInt = 64
    num_layers: PositiveInt = 1
    # extra keyword arguments of the cell factory, e.g. {chrono_t_max: 600} for lstm
    cell_options: dict = field(default_factory=dict)
    # min_gru / min_lstm: train with the associative (parallel) scan over time
    parallel: bool = True
    # time steps per loop iteration (None: the backend's measured plan)
    unroll: Optional[PositiveInt] = None
    # the solver over time: fused (sequential, the default), reference (autodiff of lax.scan)
    # or newton (every step at once by Newton iterations: jr.scan's method="newton")
    method: Method = "fused"
    # with method: newton, fields of jr.NewtonOptions, e.g. {jacobian: diagonal, max_iters: 100}
    newton: NewtonConfig = field(default_factory=dict)


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


# --------------------------------------------------------------------------- data

def adding_data(rng: np.random.Generator, n: int, seq_len: int):
    """``n`` examples: inputs ``[n, T, 2]`` (value, marker) float32 and targets ``[n]``."""
    if seq_len < 2:
        raise ValueError(f"the adding problem needs seq_len >= 2, got {seq_len}")
    values = rng.uniform(0.0, 1.0, size=(n, seq_len)).astype(np.float32)
    # two distinct positions per example: the first two of a random permutation of the steps
    pos = np.argsort(rng.random((n, seq_len)), axis=1)[:, :2]
    marker = np.zeros((n, seq_len), np.float32)
    np.put_along_axis(marker, pos, 1.0, axis=1)
    x = np.stack([values, marker], axis=-1)
    y = np.sum(values * marker, axis=1, dtype=np.float32)
    return x, y


def baseline_mse(y_train_mean: float, y: np.ndarray) -> float:
    """The MSE of the memoryless predictor that always answers ``y_train_mean``."""
    return float(np.mean((np.asarray(y, np.float64) - y_train_mean) ** 2))


# --------------------------------------------------------------------------- model

class Model:
    """``num_layers`` recurrent layers of one cell kind -> linear read-out, on one sequence."""

    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int):
        if cfg.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {cfg.num_layers}")
        if cfg.hidden_size < 1:
            raise ConfigError(f"model.hidden_size must be >= 1, got {cfg.hidden_size}")
        self.cells = [make_cell(cfg.cell, cfg.hidden_size, cfg.cell_options)
                      for _ in range(cfg.num_layers)]
        solver = solver_options(cfg.method, cfg.newton)
        parallel = (cfg.parallel and cfg.cell in ("min_gru", "min_lstm")
                    and cfg.method != "newton")
        self.rnn = jr.stack([jr.layer(c, parallel=parallel, unroll=cfg.unroll, **solver)
                             for c in self.cells])
        self.cfg, self.I, self.O = cfg, input_size, output_size

    def init(self, key):
        k_r, k_h = jax.random.split(key)
        H = self.rnn.output_size
        return {"rnn": self.rnn.init(k_r, self.I),
                "head": {"w": jax.random.normal(k_h, (H, self.O), jnp.float32) / np.sqrt(H),
                         "b": jnp.zeros((self.O,), jnp.float32)}}

    def head(self, params, ys):
        out = ys @ params["head"]["w"]
        return out + jnp.broadcast_to(params["head"]["b"], out.shape)

    def outputs(self, params, xs):
        """One sequence ``[T, input]`` -> read-out at every step ``[T, output]``."""
        ys, _ = self.rnn.apply(params["rnn"], xs)
        return self.head(params, ys)

    def num_params(self, params=None) -> int:
        if params is None:
            params = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params)))

    def recurrent_params(self, params=None) -> int:
        if params is None:
            params = jax.eval_shape(self.init, jax.random.PRNGKey(0))
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params["rnn"])))


def check_data_config(d) -> None:
    for name in ("dev_size", "test_size", "eval_batch"):
        if getattr(d, name) < 1:
            raise ConfigError(f"data.{name} must be >= 1, got {getattr(d, name)}")


def batched_eval(fn, arrays, eval_batch: int, runtime):
    """Sums of ``fn(*chunk)`` (a dict of per-example sums) over chunks of the arrays."""
    n = len(arrays[0])
    totals = {}
    for a in range(0, n, eval_batch):
        chunk = [x[a:a + eval_batch] for x in arrays]
        m = len(chunk[0])
        pad = (-m) % runtime.num_devices
        if pad:
            chunk = [np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in chunk]
        w = np.concatenate([np.ones(m, np.float32), np.zeros(pad, np.float32)])
        out = runtime.to_host(fn(*runtime.shard_batch((*chunk, w))))
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t = cfg.data, cfg.train
    check_data_config(d)
    T = d.seq_len
    if T < 2:
        raise ConfigError(f"data.seq_len must be >= 2, got {T}")
    model = Model(cfg.model, input_size=2, output_size=1)
    splits = {"dev": adding_data(np.random.default_rng([DEV_SEED, T]), d.dev_size, T),
              "test": adding_data(np.random.default_rng([TEST_SEED, T]), d.test_size, T)}
    # the memoryless baseline predicts the training targets' mean (1 in expectation; here
    # estimated from a large sample of training draws, not assumed)
    y_mean = float(np.mean(adding_data(np.random.default_rng([MEAN_SEED, T]), 10_000, T)[1]))

    def predict(params, x):  # [B, T, 2] -> [B]
        return jax.vmap(lambda xs: model.outputs(params, xs)[-1, 0])(x)

    def loss(params, state, batch, key):
        err = predict(params, batch["x"]) - batch["y"]
        return jnp.mean(err ** 2), (state, {})

    def train_batch(step: int) -> dict:
        x, y = adding_data(np.random.default_rng([cfg.seed, int(step)]), t.batch_size, T)
        return {"x": x, "y": y}

    @jax.jit
    def eval_sums(params, x, y, w):
        err = predict(params, x) - y
        return {"se": jnp.sum(w * err ** 2),
                "solved": jnp.sum(w * (jnp.abs(err) < 0.04).astype(w.dtype)),
                "n": jnp.sum(w)}

    def evaluate(params, split="dev"):
        if split not in splits:
            raise DataError(f"adding: unknown split {split!r} (dev or test)")
        x, y = splits[split]
        s = batched_eval(lambda *a: eval_sums(params, *a), (x, y), d.eval_batch, runtime)
        return {"loss": s["se"] / s["n"], "baseline": baseline_mse(y_mean, y),
                # fraction of examples answered within 0.04 (Le et al. 2015's threshold)
                "accuracy": s["solved"] / s["n"]}

    return Task(init=model.init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                units=(t.batch_size * T, "step"))
