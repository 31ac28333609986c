"""Spoken digits (FSDD): isolated-digit classification with a deep bidirectional GRU/LSTM.

Data: ``../shared/data/fsdd/recordings/`` (Free Spoken Digit Dataset: 3,000 WAVs
``{digit}_{speaker}_{index}.wav``, 8 kHz mono 16-bit, 6 speakers x 10 digits x 50 takes).
Features: 40 log-mel filterbank energies every 10 ms (25 ms Hann frames, pre-emphasis 0.97),
normalized per utterance (mean 0, variance 1 per channel), every ``data.stack`` consecutive
frames concatenated (a ``stack``-times shorter sequence). Computed once per process with
:mod:`jaxrnn.audio` (in JAX) and kept in memory.

Splits (``data.split``):

- ``official``: test = takes 0-4 of every speaker and digit (300), dev = takes 5 to
  ``4 + data.dev_takes`` (model selection), train = the rest of takes 5-49.
- ``speaker``: train on five speakers, test on all 500 recordings of ``data.test_speaker``;
  dev = takes 0-4 of the five training speakers (so model selection never sees the test voice),
  train = their takes 5-49. ``python -m experiments.digits rotations`` runs all six.

Model: ``model.num_layers`` bidirectional layers of ``model.cell`` (gru or lstm) with dropout
between them -> masked mean (or max) over time -> dropout -> linear, 10 classes; the batch is
a ``vmap`` of the stack (the fused engine runs it as one whole-batch loop). Optional
SpecAugment masking of the training features (``data.spec_augment``) inside the jitted step,
with the step's key.

Test accuracy, overall and per speaker: ``jaxrnn evaluate --workdir DIR --split test``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr
from jaxrnn.train.config import (BaseConfig, CellName, ConfigError, DataError, Fraction,
                                 NonNegativeInt, PositiveFloat, PositiveInt, Rate, data_path)
from jaxrnn import audio
from jaxrnn.cells import registry
from jaxrnn.train.experiment import Task

NUM_CLASSES = 10
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


# --------------------------------------------------------------------------- config

@dataclass
class FeatureConfig:
    num_mels: PositiveInt = 40
    frame_ms: PositiveFloat = 25.0
    hop_ms: PositiveFloat = 10.0
    # concatenate this many consecutive frames into one RNN step
    stack: PositiveInt = 2


@dataclass
class AugmentConfig:
    enabled: bool = False
    freq_masks: NonNegativeInt = 2
    freq_width: NonNegativeInt = 6
    time_masks: NonNegativeInt = 2
    time_width: NonNegativeInt = 4            # in RNN steps (after stacking)
    max_time_fraction: Fraction = 0.15


@dataclass
class DataConfig:
    path: str = data_path("fsdd/recordings")
    split: Literal["official", "speaker"] = "official"
    test_speaker: str = "george"
    dev_takes: PositiveInt = 5
    # use only takes < max_take (smaller, faster runs for smoke tests); 50 = all
    max_take: PositiveInt = 50
    features: FeatureConfig = field(default_factory=FeatureConfig)
    spec_augment: AugmentConfig = field(default_factory=AugmentConfig)
    # batches are padded to a multiple of this many steps (few compiled shapes)
    bucket: PositiveInt = 16
    # longer utterances are cropped to their centre (after stacking); 0 = never
    max_steps: PositiveInt = 80
    eval_batch: PositiveInt = 100


@dataclass
class ModelConfig:
    # any name of jaxrnn.cells.registry
    cell: CellName = "gru"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    dropout: Rate = 0.1
    readout: Literal["mean", "max"] = "mean"


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Recording:
    path: str
    digit: int
    speaker: str
    take: int


def list_recordings(folder) -> list[Recording]:
    """Every ``{digit}_{speaker}_{take}.wav`` in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"data.path: not a folder: {folder}")
    out = []
    for p in sorted(folder.glob("*.wav")):
        m = _NAME.match(p.name)
        if not m:
            raise DataError(f"{p}: expected a name {{digit}}_{{speaker}}_{{take}}.wav")
        out.append(Recording(str(p), int(m.group(1)), m.group(2), int(m.group(3))))
    if not out:
        raise ConfigError(f"data.path: no .wav files in {folder}")
    return out


_CACHE: dict = {}


def features_of(paths, fc: FeatureConfig) -> list:
    """Normalized, stacked log-mel features of WAV files (memoized per process)."""
    key = (tuple(paths), fc.num_mels, fc.frame_ms, fc.hop_ms, fc.stack)
    if key not in _CACHE:
        sigs, rate = [], None
        for p in paths:
            x, sr = audio.read_wav(p)
            if rate is not None and sr != rate:
                raise DataError(f"{p}: sample rate {sr}, others {rate}")
            rate = sr
            sigs.append(x)
        _CACHE[key] = signals_features(sigs, rate, fc)
    return _CACHE[key]


def signals_features(signals, rate: int, fc: FeatureConfig) -> list:
    feats = audio.log_mel_many(signals, rate, num_mels=fc.num_mels, frame_ms=fc.frame_ms,
                               hop_ms=fc.hop_ms)
    return [audio.stack_frames(f, fc.stack) for f in feats]


def crop(f: np.ndarray, max_steps: int) -> np.ndarray:
    if max_steps and len(f) > max_steps:
        a = (len(f) - max_steps) // 2
        return f[a:a + max_steps]
    return f


def pad_batch(feats, bucket: int):
    """``[B, T, F]`` zero-padded to a multiple of ``bucket`` steps, and lengths ``[B]``."""
    lengths = np.array([len(f) for f in feats], np.int32)
    T = max(-(-int(lengths.max()) // bucket) * bucket, bucket)
    x = np.zeros((len(feats), T, feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        x[i, :len(f)] = f
    return x, lengths


def split_official(recs, dev_takes: int):
    if not 1 <= dev_takes <= 40:
        raise ConfigError(f"data.dev_takes must be in [1, 40], got {dev_takes}")
    test = [i for i, r in enumerate(recs) if r.take < 5]
    dev = [i for i, r in enumerate(recs) if 5 <= r.take < 5 + dev_takes]
    train = [i for i, r in enumerate(recs) if r.take >= 5 + dev_takes]
    return {"train": train, "dev": dev, "test": test}


def split_speaker(recs, speaker: str):
    known = sorted({r.speaker for r in recs})
    if speaker not in known:
        raise ConfigError(f"data.test_speaker: {speaker!r} is not one of {known}")
    test = [i for i, r in enumerate(recs) if r.speaker == speaker]
    dev = [i for i, r in enumerate(recs) if r.speaker != speaker and r.take < 5]
    train = [i for i, r in enumerate(recs) if r.speaker != speaker and r.take >= 5]
    return {"train": train, "dev": dev, "test": test}


class Batches:
    """Shuffled epochs of padded batches; ``batch(step)`` is a pure function of the step."""

    def __init__(self, feats, labels, batch: int, seed: int, bucket: int):
        if batch > len(feats):
            raise ConfigError(f"train.batch_size={batch} exceeds the {len(feats)} training examples")
        self.feats, self.labels, self.B, self.seed, self.bucket = feats, labels, batch, seed, bucket
        self.per_epoch = len(feats) // batch

    def indices(self, step: int) -> np.ndarray:
        epoch, b = divmod(int(step), self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.feats))
        return perm[b * self.B:(b + 1) * self.B]


# --------------------------------------------------------------------------- model

class Encoder:
    """A deep bidirectional RNN over padded batches ``[B, T, F]``: a ``vmap`` of ``jr.stack``
    of ``jr.bidirectional`` layers."""

    def __init__(self, cell: str, hidden: int, num_layers: int, dropout: float):
        if num_layers < 1 or hidden < 1:
            raise ConfigError("model.num_layers and model.hidden_size must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        try:
            self.cell = registry.make(cell, hidden)
        except ValueError as e:
            raise ConfigError(f"model.cell: {e}") from None
        self.net = jr.stack([jr.bidirectional(self.cell) for _ in range(num_layers)],
                            dropout=dropout)
        self.output_size = self.net.output_size

    def init(self, key, input_size: int):
        return self.net.init(key, input_size)

    def __call__(self, params, x, lengths, key=None):
        if key is None:
            return jax.vmap(lambda xi, n: self.net.apply(params, xi, seq_lengths=n)[0])(x, lengths)
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda xi, n, k: self.net.apply(params, xi, seq_lengths=n, key=k)[0])(
            x, lengths, keys)


def linear_init(key, d_in: int, d_out: int):
    return {"w": jax.random.normal(key, (d_in, d_out), jnp.float32) / np.sqrt(d_in),
            "b": jnp.zeros((d_out,), jnp.float32)}


def augment(cfg: AugmentConfig, key, x, lengths):
    if not cfg.enabled:
        return x
    keys = jax.random.split(key, x.shape[0])
    fn = lambda k, f, n: audio.spec_augment(
        k, f, n, freq_masks=cfg.freq_masks, freq_width=cfg.freq_width, time_masks=cfg.time_masks,
        time_width=cfg.time_width, max_time_fraction=cfg.max_time_fraction)
    return jax.vmap(fn)(keys, x, lengths)


class Classifier:
    def __init__(self, cfg: ModelConfig, input_size: int):
        self.enc = Encoder(cfg.cell, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        self.cfg, self.input_size = cfg, input_size

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return {"rnn": self.enc.init(k1, self.input_size),
                "head": linear_init(k2, self.enc.output_size, NUM_CLASSES)}

    def logits(self, params, x, lengths, key=None):
        ys = self.enc(params["rnn"], x, lengths, None if key is None else jax.random.fold_in(key, 0))
        lengths = jnp.asarray(lengths, jnp.int32)
        valid = (jnp.arange(x.shape[1], dtype=jnp.int32)[None, :] < lengths[:, None])[..., None]
        if self.cfg.readout == "mean":
            feat = (jnp.sum(jnp.where(valid, ys, 0.0), 1)
                    / jnp.maximum(lengths, 1)[:, None].astype(ys.dtype))
        else:
            feat = jnp.max(jnp.where(valid, ys, -jnp.inf), 1)
        if key is not None:
            feat = jr.dropout(jax.random.fold_in(key, 1), feat, self.cfg.dropout)
        out = feat @ params["head"]["w"]
        return out + jnp.broadcast_to(params["head"]["b"], out.shape)


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t = cfg.data, cfg.train
    if d.bucket < 1 or d.eval_batch < 1 or d.features.stack < 1:
        raise ConfigError("data.bucket, data.eval_batch and data.features.stack must be >= 1")
    recs = [r for r in list_recordings(d.path) if r.take < d.max_take]
    feats = [crop(f, d.max_steps) for f in features_of([r.path for r in recs], d.features)]
    labels = np.array([r.digit for r in recs], np.int32)
    idx = split_official(recs, d.dev_takes) if d.split == "official" else split_speaker(recs, d.test_speaker)
    for k, v in idx.items():
        if not v:
            raise ConfigError(f"digits: the {k} split is empty (data.max_take={d.max_take}?)")
    model = Classifier(cfg.model, feats[0].shape[1])
    tr = idx["train"]
    batches = Batches([feats[i] for i in tr], labels[tr], t.batch_size, cfg.seed, d.bucket)

    def train_batch(step):
        sel = batches.indices(step)
        x, n = pad_batch([batches.feats[i] for i in sel], d.bucket)
        return {"x": x, "n": n, "y": batches.labels[sel]}

    def loss(params, state, batch, key):
        x = augment(d.spec_augment, jax.random.fold_in(key, 7), batch["x"], batch["n"])
        lg = model.logits(params, x, batch["n"], key)
        nll = optax.softmax_cross_entropy_with_integer_labels(lg, batch["y"])
        return jnp.mean(nll), (state, {"accuracy": jnp.mean(
            (jnp.argmax(lg, -1) == batch["y"]).astype(jnp.float32))})

    @jax.jit
    def eval_logits(params, x, n):
        return model.logits(params, x, n)

    def predict_split(params, ids):
        """Logits of the recordings ``ids`` (length-sorted batches, padded for the mesh)."""
        order = sorted(ids, key=lambda i: len(feats[i]))
        out = {}
        for a in range(0, len(order), d.eval_batch):
            chunk = order[a:a + d.eval_batch]
            pad = (-len(chunk)) % runtime.num_devices
            x, n = pad_batch([feats[i] for i in chunk + chunk[-1:] * pad], d.bucket)
            lg = np.asarray(runtime.to_host(eval_logits(params, *runtime.shard_batch((x, n)))))
            out.update(zip(chunk, lg[:len(chunk)]))
        return np.stack([out[i] for i in ids])

    def evaluate(params, split="dev"):
        if split not in idx:
            raise DataError(f"digits: unknown split {split!r} (train, dev or test)")
        ids = idx[split]
        lg = predict_split(params, ids)
        y = labels[ids]
        nll = np.asarray(optax.softmax_cross_entropy_with_integer_labels(lg, y))
        hit = np.argmax(lg, -1) == y
        out = {"loss": float(nll.mean()), "accuracy": float(hit.mean())}
        if split == "test":
            spk = np.array([recs[i].speaker for i in ids])
            for s in sorted(set(spk)):
                out[f"accuracy_{s}"] = float(hit[spk == s].mean())
            out["errors"] = int((~hit).sum())
            out["n"] = len(ids)
        return out

    return Task(init=model.init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                units=(t.batch_size, "utt"))


# --------------------------------------------------------------------------- rotations

def rotations(config: str, workdir: str, overrides=(), speakers=SPEAKERS) -> dict:
    """Speaker-held-out: trains one model per held-out speaker (``workdir/<speaker>``) with the
    runner, then scores its best dev checkpoint on that speaker. Returns ``{speaker: acc}``."""
    import json
    import time

    from jaxrnn.train import load_config, load_params, prepare, train_and_evaluate

    results = {}
    for s in speakers:
        wd = Path(workdir) / s
        cfg = load_config(config, [*overrides, "data.split=speaker", f"data.test_speaker={s}"], wd)
        t0 = time.perf_counter()
        train_and_evaluate(cfg, wd)
        run = prepare(cfg)
        params, step = load_params(run, wd)
        res = run.task.evaluate(params, "test")
        res.update(step=step, seconds=round(time.perf_counter() - t0, 1))
        (wd / "test.json").write_text(json.dumps(res) + "\n")
        print(json.dumps({"test_speaker": s, **res}), flush=True)
        results[s] = res["accuracy"]
    accs = list(results.values())
    print(json.dumps({"mean_accuracy": float(np.mean(accs)), "per_speaker": results}), flush=True)
    return results


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="FSDD speaker-held-out rotations (train 5, test 1)")
    ap.add_argument("command", choices=["rotations"])
    ap.add_argument("--config", default="configs/digits_speaker.yaml")
    ap.add_argument("--workdir", default="runs/digits_speaker")
    ap.add_argument("--speakers", default=",".join(SPEAKERS))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    rotations(a.config, a.workdir, a.overrides, a.speakers.split(","))
