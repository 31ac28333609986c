"""Character-level language model (Tiny Shakespeare by default): the runner's default experiment.

Data: the first ``data.train_fraction`` of the file trains, the rest is the dev split. The
vocabulary is the set of characters of the whole file (65 for Tiny Shakespeare).

Training is stateful truncated BPTT: the train text is cut into ``train.batch_size`` contiguous
streams; batch row ``b`` of step ``s`` reads the next ``data.seq_len`` characters of stream ``b``,
and the carry left by one batch is the initial carry of the next. At the end of a pass over the
streams (an epoch, the "document boundary") the carry is reset to zeros, and with
``data.shift_per_epoch`` every stream starts the new pass at a random offset in
``[0, seq_len)`` drawn from ``(seed, epoch)``. The batch of any step is computed from the step
alone, so a resumed run reads exactly what an uninterrupted one reads.

Model: embedding -> ``jr.stack`` of ``model.num_layers`` cells (``model.cell``) with dropout
between layers -> dropout -> linear decoder to the vocabulary. Dev loss is the mean negative
log-likelihood in nats per character over every character of the dev split but its first,
each dev row carrying its state across the whole row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr
from jaxrnn.train.config import DataError, PositiveInt, Range, Rate
from jaxrnn.cells import registry
from jaxrnn.train import (BaseConfig, CellName, ConfigError, Method, NewtonConfig, Task,
                          data_path, solver_options)

@dataclass
class DataConfig:
    path: str = data_path("tinyshakespeare/input.txt")
    train_fraction: Annotated[float, Range(0.0, 1.0, lo_open=True, hi_open=True)] = 0.9
    # TBPTT window: characters per batch row per step
    seq_len: PositiveInt = 128
    # start each pass over the streams at a random offset (drawn from seed and epoch)
    shift_per_epoch: bool = True
    # dev evaluation: rows read in parallel, each carrying its state; chunk = steps per call
    eval_rows: PositiveInt = 32
    eval_chunk: PositiveInt = 512


@dataclass
class ModelConfig:
    # any name of jaxrnn.cells.registry (lstm, gru, lstm_peephole, ...)
    cell: CellName = "lstm"
    hidden_size: PositiveInt = 512
    num_layers: PositiveInt = 2
    embed_size: PositiveInt = 64
    # dropout on the embeddings, between layers and before the decoder (training only)
    dropout: Rate = 0.0
    # extra keyword arguments of the cell factory, e.g. {layer_norm: true} for lstm
    cell_options: dict = field(default_factory=dict)
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

class Vocab:
    def __init__(self, chars: str):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        missing = sorted(set(text) - set(self.index))
        if missing:
            raise DataError(f"{what} has characters the model never saw: "
                             + ", ".join(repr(c) for c in missing[:20]))
        return np.fromiter((self.index[c] for c in text), np.int32, len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def read_text(path) -> str:
    """The file as text; a folder or a file that is not UTF-8 is an error naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); a binary file?") from None


def split_text(text: str, train_fraction: float) -> tuple[str, str]:
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


class Streams:
    """Stateful TBPTT batches: ``batch(step)`` is a pure function of ``step``."""

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int, seed: int, shift: bool):
        self.ids, self.B, self.T, self.seed, self.shift = ids, batch, seq_len, seed, shift
        self.L = len(ids) // batch
        usable = self.L - 1 - (seq_len if shift else 0)
        self.windows = usable // seq_len
        if self.windows < 1:
            raise ConfigError(
                f"train.batch_size={batch} streams of {self.L} characters are too short for "
                f"data.seq_len={seq_len}; lower one of them")
        self.starts = np.arange(batch, dtype=np.int64) * self.L

    def offset(self, epoch: int) -> int:
        if not self.shift:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(0, self.T))

    def batch(self, step: int) -> dict:
        epoch, w = divmod(int(step), self.windows)
        pos = self.starts + self.offset(epoch) + w * self.T
        idx = pos[:, None] + np.arange(self.T + 1)[None, :]
        chunk = self.ids[idx]
        return {"x": chunk[:, :-1], "y": chunk[:, 1:],
                "reset": np.full((self.B,), w == 0, dtype=bool)}


def eval_rows(ids: np.ndarray, rows: int, multiple: int):
    """Cuts ``ids`` into ``rows`` rows (padded to a multiple of ``multiple``) so that every
    character but the first is predicted exactly once; returns inputs, targets, mask."""
    n = len(ids) - 1
    L = -(-n // rows)
    R = -(-rows // multiple) * multiple
    x = np.zeros((R, L), np.int32)
    y = np.zeros((R, L), np.int32)
    m = np.zeros((R, L), bool)
    for r in range(rows):
        a, b = r * L, min((r + 1) * L, n)
        if a >= b:
            continue
        x[r, :b - a] = ids[a:b]
        y[r, :b - a] = ids[a + 1:b + 1]
        m[r, :b - a] = True
    return x, y, m


# --------------------------------------------------------------------------- model

class Model:
    """The network as pure functions; ``rnn`` (a ``jr.stack``) runs whole windows with ``apply``
    and generation one character at a time with ``step``; ``cells`` are its cells (analysis)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        if cfg.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {cfg.num_layers}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
        try:
            self.cells = [registry.make(cfg.cell, cfg.hidden_size, **cfg.cell_options)
                          for _ in range(cfg.num_layers)]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model.cell_options: {e}") from None
        solver = solver_options(cfg.method, cfg.newton)
        self.rnn = jr.stack([jr.layer(c, unroll=cfg.unroll, **solver) for c in self.cells],
                            dropout=cfg.dropout)
        self.cfg, self.V = cfg, vocab_size

    def init(self, key):
        k_e, k_r, k_h = jax.random.split(key, 3)
        E, H = self.cfg.embed_size, self.rnn.output_size
        return {
            "embed": jax.random.normal(k_e, (self.V, E), jnp.float32),
            "rnn": self.rnn.init(k_r, E),
            "head": {"w": jax.random.normal(k_h, (H, self.V), jnp.float32) / np.sqrt(H),
                     "b": jnp.zeros((self.V,), jnp.float32)},
        }

    def initial_carry(self, params, batch: int):
        return self.rnn.initial_carry(params["rnn"], (batch,))

    def logits(self, params, x, carry, key=None):
        """``x`` [B, T] ids, ``carry`` batched -> logits [B, T, V], carry."""
        p = self.cfg.dropout
        h = params["embed"][x]
        if key is not None:
            k_in, k_rnn, k_out = jax.random.split(key, 3)
            h = jr.dropout(k_in, h, p)
            keys = jax.random.split(k_rnn, x.shape[0])
            ys, carry = jax.vmap(lambda xs, c, k: self.rnn.apply(params["rnn"], xs, c, key=k))(
                h, carry, keys)
            ys = jr.dropout(k_out, ys, p)
        else:
            ys, carry = jax.vmap(lambda xs, c: self.rnn.apply(params["rnn"], xs, c))(h, carry)
        return ys @ params["head"]["w"] + params["head"]["b"][None, None, :], carry

    def step(self, params, carry, x_id):
        """One character through the stack's ``step`` (generation, so no key: deterministic,
        the same rules as ``logits`` at evaluation): -> logits [V], carry."""
        h, carry = self.rnn.step(params["rnn"], carry, params["embed"][x_id])
        return h @ params["head"]["w"] + params["head"]["b"], carry


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t = cfg.data, cfg.train
    text = read_text(d.path)
    vocab = Vocab("".join(sorted(set(text))))
    train_text, dev_text = split_text(text, d.train_fraction)
    streams = Streams(vocab.encode(train_text), t.batch_size, d.seq_len, cfg.seed,
                      d.shift_per_epoch)
    dev_ids = vocab.encode(dev_text)
    model = Model(cfg.model, len(vocab))
    V = len(vocab)

    def loss(params, carry, batch, key):
        reset = batch["reset"][:, None]
        carry = jax.tree.map(lambda c: jnp.where(reset, jnp.zeros_like(c), c), carry)
        logits, carry = model.logits(params, batch["x"], carry, key)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        return nll.mean(), (jax.lax.stop_gradient(carry), {})

    def init_state():
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
        abstract = jax.eval_shape(lambda p: model.initial_carry(p, t.batch_size), params)
        return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)

    @jax.jit
    def eval_chunk(params, carry, x, y, m):
        logits, carry = model.logits(params, x, carry)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return carry, jnp.sum(jnp.where(m, nll, 0.0), axis=1)  # per-row sums

    def score(params, ids) -> dict:
        x, y, m = eval_rows(ids, d.eval_rows, runtime.num_devices)
        carry = runtime.shard_batch(init_state_rows(x.shape[0]))
        total, count = 0.0, 0
        for a in range(0, x.shape[1], d.eval_chunk):
            sl = slice(a, a + d.eval_chunk)
            xs, ys, ms = runtime.shard_batch((x[:, sl], y[:, sl], m[:, sl]))
            carry, s = eval_chunk(params, carry, xs, ys, ms)
            total += float(np.sum(runtime.to_host(s), dtype=np.float64))
        count = int(m.sum())
        if count == 0:
            raise DataError(f"charlm: nothing to score: the text needs at least two characters "
                            f"(got {len(ids)})")
        nats = total / max(count, 1)
        return {"loss": nats, "bpc": nats / np.log(2.0), "perplexity": float(np.exp(nats))}

    def init_state_rows(rows):
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
        abstract = jax.eval_shape(lambda p: model.initial_carry(p, rows), params)
        return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)

    def evaluate(params, split="dev"):
        if split != "dev":
            raise DataError(f"charlm has a dev split only (the last "
                             f"{1 - d.train_fraction:.0%} of the file); use --data FILE")
        return score(params, dev_ids)

    def evaluate_file(params, path):
        return score(params, vocab.encode(read_text(path), what=str(path)))

    step_jit = jax.jit(model.step)

    @jax.jit
    def sample(logits, key, temperature):
        return jax.random.categorical(key, logits / temperature)

    def generate(params, *, prompt="\n", length=500, temperature=0.8, seed=0, emit=None):
        if temperature <= 0:
            raise DataError(f"temperature must be > 0, got {temperature}")
        if not prompt:
            prompt = "\n"
        ids = vocab.encode(prompt, what="the prompt")
        params = runtime.to_host(params)
        carry = model.rnn.initial_carry(params["rnn"])
        logits = None
        for i in ids:  # the prompt is read once, one character at a time
            logits, carry = step_jit(params, carry, jnp.int32(i))
        key = jax.random.PRNGKey(seed)
        out = []
        for _ in range(length):
            key, k = jax.random.split(key)
            nxt = int(sample(logits, k, jnp.float32(temperature)))
            ch = vocab.chars[nxt]
            out.append(ch)
            if emit is not None:
                emit(ch)
            logits, carry = step_jit(params, carry, jnp.int32(nxt))
        return "".join(out)

    return Task(init=model.init, loss=loss, train_batch=streams.batch, evaluate=evaluate,
                init_state=init_state, evaluate_file=evaluate_file, generate=generate,
                units=(t.batch_size * d.seq_len, "char"), metrics=("loss", "bpc", "perplexity"))
