"""Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), as Bai, Kolter & Koltun 2018.

A sequence of ``T + 20`` symbols from ``0..9`` (one-hot inputs):

    input:  s_1 .. s_10   0 x (T - 1)   9 x 11
    target: 0 x (T + 10)                s_1 .. s_10

with ``s_i`` uniform over ``1..8``, ``0`` the blank and ``9`` the delimiter (Bai et al.'s data
generator repeats it for the 10 recall steps as well). The loss is the cross-entropy averaged
over every step of the sequence. A memoryless model can predict the blanks perfectly and
nothing better than a uniform guess over the 8 symbols for the last 10 steps, so it scores
``10 ln 8 / (T + 20)``; ``evaluate`` computes that baseline on the same examples (``baseline``)
next to the model's ``loss`` and the accuracy on the 10 recalled symbols (``recall_accuracy``,
1/8 for the baseline).

Model and cells: as :mod:`experiments.adding` (``model.cell``: simple_rnn, lstm,
lstm_peephole, lstm_coupled, gru, mgu, min_gru, min_lstm), read out at every step into 10
classes.

Run: ``jaxrnn train configs/copy.yaml --workdir runs/copy --set data.seq_len=200``; the whole
sweep: ``python -m experiments.gates_report`` (see ``docs/gates.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.adding import DEV_SEED, TEST_SEED, Model, ModelConfig, batched_eval, \
    check_data_config
from jaxrnn.train.config import BaseConfig, ConfigError, DataError, PositiveInt
from jaxrnn.train.experiment import Task

NUM_SYMBOLS = 10      # 0 blank, 1..8 symbols, 9 delimiter
NUM_COPY = 10         # symbols to remember
BLANK, DELIMITER = 0, 9


@dataclass
class DataConfig:
    # T: the delay (blanks between the symbols and the delimiter, plus one); sequences have T + 20 steps
    seq_len: PositiveInt = 100
    dev_size: PositiveInt = 1000
    test_size: PositiveInt = 1000
    eval_batch: PositiveInt = 250


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden_size=64))


# --------------------------------------------------------------------------- data

def copy_data(rng: np.random.Generator, n: int, seq_len: int):
    """``n`` examples: input symbols ``[n, T + 20]`` and target symbols ``[n, T + 20]`` (int32)."""
    if seq_len < 1:
        raise ValueError(f"copy memory needs seq_len >= 1, got {seq_len}")
    seq = rng.integers(1, 9, size=(n, NUM_COPY)).astype(np.int32)
    x = np.concatenate([seq, np.zeros((n, seq_len - 1), np.int32),
                        np.full((n, NUM_COPY + 1), DELIMITER, np.int32)], axis=1)
    y = np.concatenate([np.zeros((n, seq_len + NUM_COPY), np.int32), seq], axis=1)
    return x, y


def memoryless_logits(y: np.ndarray) -> np.ndarray:
    """The best memoryless predictor's log-probabilities for targets ``y`` ``[n, T + 20]``:
    a certain blank for the first ``T + 10`` steps, uniform over 1..8 for the last 10."""
    n, L = y.shape
    logp = np.full((n, L, NUM_SYMBOLS), -np.inf)
    logp[:, :L - NUM_COPY, BLANK] = 0.0
    logp[:, L - NUM_COPY:, 1:9] = -np.log(8.0)
    return logp


def cross_entropy(logp: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of integer targets ``y`` under log-probabilities ``logp``."""
    picked = np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    return float(-np.mean(picked))


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t = cfg.data, cfg.train
    check_data_config(d)
    T = d.seq_len
    if T < 1:
        raise ConfigError(f"data.seq_len must be >= 1, got {T}")
    model = Model(cfg.model, input_size=NUM_SYMBOLS, output_size=NUM_SYMBOLS)
    splits = {"dev": copy_data(np.random.default_rng([DEV_SEED, T]), d.dev_size, T),
              "test": copy_data(np.random.default_rng([TEST_SEED, T]), d.test_size, T)}
    eye = jnp.eye(NUM_SYMBOLS, dtype=jnp.float32)

    def logits(params, x):  # [B, L] ids -> [B, L, 10]
        return jax.vmap(lambda ids: model.outputs(params, eye[ids]))(x)

    def loss(params, state, batch, key):
        nll = optax.softmax_cross_entropy_with_integer_labels(logits(params, batch["x"]),
                                                              batch["y"])
        return jnp.mean(nll), (state, {})

    def train_batch(step: int) -> dict:
        x, y = copy_data(np.random.default_rng([cfg.seed, int(step)]), t.batch_size, T)
        return {"x": x, "y": y}

    @jax.jit
    def eval_sums(params, x, y, w):
        lg = logits(params, x)
        nll = optax.softmax_cross_entropy_with_integer_labels(lg, y)
        hit = jnp.argmax(lg[:, -NUM_COPY:], axis=-1) == y[:, -NUM_COPY:]
        return {"nll": jnp.sum(w[:, None] * nll), "n_steps": jnp.sum(w) * y.shape[1],
                "hit": jnp.sum(w[:, None] * hit.astype(w.dtype)), "n_recall": jnp.sum(w) * NUM_COPY}

    baselines = {k: cross_entropy(memoryless_logits(y), y) for k, (x, y) in splits.items()}

    def evaluate(params, split="dev"):
        if split not in splits:
            raise DataError(f"copymem: unknown split {split!r} (dev or test)")
        x, y = splits[split]
        s = batched_eval(lambda *a: eval_sums(params, *a), (x, y), d.eval_batch, runtime)
        return {"loss": s["nll"] / s["n_steps"], "baseline": baselines[split],
                "recall_accuracy": s["hit"] / s["n_recall"]}

    return Task(init=model.init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                units=(t.batch_size * (T + 2 * NUM_COPY), "step"))
