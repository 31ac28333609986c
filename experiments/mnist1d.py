"""MNIST-1D (Greydanus 2020): classify 40-step one-dimensional signals into 10 digit classes.

Data: ``../shared/data/mnist1d/mnist1d.npz`` (``x`` [4000, 40], ``y``, ``x_test`` [1000, 40],
``y_test``; the frozen data of greydanus/mnist1d). The last ``data.dev_size`` examples of a fixed
permutation of the 4000 training examples are the dev split (model selection); the rest train.
``test`` is the paper's 1000-example test set, used only for the final number. Inputs are
standardized with the training split's mean and standard deviation (one scalar each).

Augmentation (training only, off by default, each a pure function of the step): a random
shift of the whole signal by up to ``data.augment_shift`` steps either way (the vacated end
repeats the edge value) and Gaussian noise of standard deviation ``data.augment_noise`` (in
standardized units).

Model: ``model.num_layers`` recurrent layers (``model.bidirectional``: both directions,
concatenated) with dropout ``model.dropout`` between layers and before the head -> a linear
classifier on a read-out of the outputs: ``last`` (the forward direction's last output, and
the backward direction's output at t = 0, its last step), ``mean`` or ``max`` over time.

Reference (Greydanus 2020, test accuracy): logistic regression 32%, MLP 68%, CNN 94%, GRU 91%,
human 96%. Run: ``jaxrnn train configs/mnist1d.yaml --workdir runs/mnist1d``; every model and
seed of the table: ``python -m experiments.gates_report --only mnist1d`` (``docs/gates.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr
from experiments.adding import make_cell
from jaxrnn.train.config import (BaseConfig, ConfigError, DataError, NonNegativeFloat,
                                 NonNegativeInt, PositiveInt, Rate, data_path)
from jaxrnn.train import CellName
from jaxrnn.train.experiment import Task

NUM_CLASSES = 10
SPLIT_SEED = 40_004


@dataclass
class DataConfig:
    path: str = data_path("mnist1d/mnist1d.npz")
    # examples held out of the 4000 training examples for model selection
    dev_size: PositiveInt = 400
    standardize: bool = True
    # training-time augmentation: random shift by up to this many steps, Gaussian noise
    augment_shift: NonNegativeInt = 0
    augment_noise: NonNegativeFloat = 0.0
    eval_batch: PositiveInt = 500


@dataclass
class ModelConfig:
    cell: CellName = "gru"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 1
    bidirectional: bool = False
    readout: Literal["last", "mean", "max"] = "last"
    dropout: Rate = 0.0
    cell_options: dict = field(default_factory=dict)
    # time steps per loop iteration (None: the backend's measured plan)
    unroll: Optional[PositiveInt] = None


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


# --------------------------------------------------------------------------- data

def load_splits(path, dev_size: int, standardize: bool = True) -> dict:
    """``{"train", "dev", "test"}`` -> ``(x [n, 40] float32, y [n] int32)``."""
    with np.load(path) as z:
        x, y = z["x"].astype(np.float32), z["y"].astype(np.int32)
        x_test, y_test = z["x_test"].astype(np.float32), z["y_test"].astype(np.int32)
    if not 1 <= dev_size < len(x):
        raise ConfigError(f"data.dev_size must be in [1, {len(x)}), got {dev_size}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    tr, dv = perm[:len(x) - dev_size], perm[len(x) - dev_size:]
    splits = {"train": (x[tr], y[tr]), "dev": (x[dv], y[dv]), "test": (x_test, y_test)}
    if standardize:
        mu, sd = float(x[tr].mean()), float(x[tr].std())
        splits = {k: ((a - mu) / sd, b) for k, (a, b) in splits.items()}
    return splits


def shift(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shifts each row of ``x`` [n, T] right by ``offsets[i]`` steps (left if negative),
    repeating the edge value into the vacated steps."""
    n, T = x.shape
    idx = np.clip(np.arange(T)[None, :] - offsets[:, None], 0, T - 1)
    return np.take_along_axis(x, idx, axis=1)


class Batches:
    """Shuffled epochs; ``batch(step)`` is a pure function of the step."""

    def __init__(self, x, y, batch: int, seed: int, max_shift: int, noise: float):
        if batch > len(x):
            raise ConfigError(f"train.batch_size={batch} exceeds the {len(x)} training examples")
        self.x, self.y, self.B, self.seed = x, y, batch, seed
        self.max_shift, self.noise = max_shift, noise
        self.per_epoch = len(x) // batch

    def batch(self, step: int) -> dict:
        epoch, b = divmod(int(step), self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
        idx = perm[b * self.B:(b + 1) * self.B]
        x, y = self.x[idx], self.y[idx]
        if self.max_shift or self.noise:
            rng = np.random.default_rng([self.seed, epoch, b, 1])
            if self.max_shift:
                x = shift(x, rng.integers(-self.max_shift, self.max_shift + 1, len(x)))
            if self.noise:
                x = x + self.noise * rng.standard_normal(x.shape).astype(np.float32)
        return {"x": x.astype(np.float32), "y": y}


# --------------------------------------------------------------------------- model

class Model:
    def __init__(self, cfg: ModelConfig):
        if cfg.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {cfg.num_layers}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
        cell = make_cell(cfg.cell, cfg.hidden_size, cfg.cell_options)
        if cfg.bidirectional:
            layers = [jr.bidirectional(cell, unroll=cfg.unroll) for _ in range(cfg.num_layers)]
        else:
            layers = [jr.layer(cell, unroll=cfg.unroll) for _ in range(cfg.num_layers)]
        self.rnn = jr.stack(layers, dropout=cfg.dropout)
        self.cfg, self.H = cfg, cell.output_size

    def init(self, key):
        k_r, k_h = jax.random.split(key)
        D = self.rnn.output_size
        return {"rnn": self.rnn.init(k_r, 1),
                "head": {"w": jax.random.normal(k_h, (D, NUM_CLASSES), jnp.float32) / np.sqrt(D),
                         "b": jnp.zeros((NUM_CLASSES,), jnp.float32)}}

    def logits(self, params, x, key=None):
        """``x`` [40] -> logits [10] (one example)."""
        ys, _ = self.rnn.apply(params["rnn"], x[:, None], key=key)
        r = self.cfg.readout
        if r == "mean":
            feat = ys.mean(axis=0)
        elif r == "max":
            feat = ys.max(axis=0)
        elif self.cfg.bidirectional:
            feat = jnp.concatenate([ys[-1, :self.H], ys[0, self.H:]])
        else:
            feat = ys[-1]
        if key is not None:
            feat = jr.dropout(jax.random.fold_in(key, 1), feat, self.cfg.dropout)
        out = feat @ params["head"]["w"]
        return out + jnp.broadcast_to(params["head"]["b"], out.shape)


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t = cfg.data, cfg.train
    if d.augment_shift < 0 or d.augment_noise < 0:
        raise ConfigError("data.augment_shift and data.augment_noise must be >= 0")
    if d.eval_batch < 1:
        raise ConfigError(f"data.eval_batch must be >= 1, got {d.eval_batch}")
    splits = load_splits(d.path, d.dev_size, d.standardize)
    model = Model(cfg.model)
    batches = Batches(*splits["train"], t.batch_size, cfg.seed, d.augment_shift, d.augment_noise)

    def loss(params, state, batch, key):
        keys = jax.random.split(key, batch["x"].shape[0])
        lg = jax.vmap(lambda x, k: model.logits(params, x, k))(batch["x"], keys)
        nll = optax.softmax_cross_entropy_with_integer_labels(lg, batch["y"])
        acc = jnp.mean((jnp.argmax(lg, -1) == batch["y"]).astype(jnp.float32))
        return jnp.mean(nll), (state, {"accuracy": acc})

    @jax.jit
    def eval_sums(params, x, y, w):
        lg = jax.vmap(lambda xi: model.logits(params, xi))(x)
        nll = optax.softmax_cross_entropy_with_integer_labels(lg, y)
        hit = (jnp.argmax(lg, -1) == y).astype(w.dtype)
        return {"nll": jnp.sum(w * nll), "hit": jnp.sum(w * hit),
                "n": jnp.sum(w)}

    from experiments.adding import batched_eval

    def evaluate(params, split="dev"):
        if split not in ("dev", "test", "train"):
            raise DataError(f"mnist1d: unknown split {split!r} (dev, test or train)")
        x, y = splits[split]
        s = batched_eval(lambda *a: eval_sums(params, *a), (x, y), d.eval_batch, runtime)
        return {"loss": s["nll"] / s["n"], "accuracy": s["hit"] / s["n"]}

    return Task(init=model.init, loss=loss, train_batch=batches.batch, evaluate=evaluate,
                units=(t.batch_size, "example"))
