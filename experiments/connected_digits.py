"""Connected spoken digits (FSDD): utterances of 2 to 7 recordings joined by short silences,
recognized with a deep bidirectional GRU/LSTM and CTC.

Utterances are made at the waveform level: ``k`` (uniform in ``[data.min_digits,
data.max_digits]``) recordings drawn at random from the split's pool, each preceded by a
silence of ``[silence_ms_min, silence_ms_max]`` ms (plus one at the end), the silences filled
with faint Gaussian noise (``data.noise``, about -60 dBFS; a real recording's floor).
Each split's utterances are fixed by ``data.seed`` and the split; train utterances use takes
``>= 5 + data.dev_takes``, dev utterances takes 5 to ``4 + dev_takes``, test utterances only the
official test recordings (takes 0-4). Features as in :mod:`experiments.digits` (40 log-mel,
per-utterance normalized, ``stack`` frames per step), computed once in JAX and kept in memory.

Model: ``model.num_layers`` bidirectional layers -> linear to 11 outputs (blank = 0, digit d =
d + 1) -> ``jaxrnn.heads.ctc.ctc_loss``. Metrics: CTC loss, digit error rate (edit distance /
reference digits) with greedy decoding, CTC loss in nats per reference digit, utterance accuracy; on ``test`` also the digit error
rate with prefix beam search (``data.beam_width``).

Run: ``jaxrnn train configs/connected.yaml --workdir runs/connected``;
``jaxrnn evaluate --workdir runs/connected --split test``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from experiments.digits import (AugmentConfig, Encoder, FeatureConfig, augment,
                                 linear_init, list_recordings, pad_batch, signals_features)
from jaxrnn.train.config import (BaseConfig, CellName, ConfigError, DataError, NonNegativeFloat,
                                 PositiveInt, Rate, data_path)
from jaxrnn import audio
from jaxrnn.heads import ctc
from jaxrnn.train.experiment import Task

BLANK, NUM_OUTPUTS = 0, 11
_SPLIT_IDS = {"train": 1, "dev": 2, "test": 3}


@dataclass
class DataConfig:
    path: str = data_path("fsdd/recordings")
    seed: int = 1234
    num_train: PositiveInt = 3000
    num_dev: PositiveInt = 200
    num_test: PositiveInt = 500
    min_digits: PositiveInt = 2
    max_digits: PositiveInt = 7
    silence_ms_min: NonNegativeFloat = 50.0
    silence_ms_max: NonNegativeFloat = 300.0
    noise: NonNegativeFloat = 1e-3
    dev_takes: PositiveInt = 5
    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(stack=3))
    spec_augment: AugmentConfig = field(default_factory=AugmentConfig)
    bucket: PositiveInt = 25
    eval_batch: PositiveInt = 100
    beam_width: PositiveInt = 8


@dataclass
class ModelConfig:
    # any name of jaxrnn.cells.registry
    cell: CellName = "gru"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    dropout: Rate = 0.1


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


# --------------------------------------------------------------------------- data

def make_utterances(signals, digits, n: int, rng, *, rate: int, min_digits: int, max_digits: int,
                    silence_ms: tuple, noise: float):
    """``n`` utterances from a pool of recordings: ``(waveforms, digit sequences)``."""
    if not 1 <= min_digits <= max_digits:
        raise ConfigError(f"data.min_digits/max_digits: need 1 <= min <= max, got "
                          f"{min_digits}, {max_digits}")
    if not 0 <= silence_ms[0] <= silence_ms[1]:
        raise ConfigError(f"data.silence_ms_min/max: need 0 <= min <= max, got {silence_ms}")
    waves, labels = [], []
    for _ in range(n):
        k = int(rng.integers(min_digits, max_digits + 1))
        pick = rng.integers(0, len(signals), k)
        gaps = rng.uniform(*silence_ms, k + 1) * rate / 1000
        parts = []
        for j in range(k + 1):
            g = int(gaps[j])
            parts.append((noise * rng.standard_normal(g)).astype(np.float32))
            if j < k:
                parts.append(signals[pick[j]])
        waves.append(np.concatenate(parts))
        labels.append([int(digits[p]) for p in pick])
    return waves, labels


def pad_labels(labels, width: int):
    y = np.zeros((len(labels), width), np.int32)
    for i, l in enumerate(labels):
        y[i, :len(l)] = np.asarray(l) + 1
    return y, np.array([len(l) for l in labels], np.int32)


_CACHE: dict = {}


def build_splits(d: DataConfig) -> dict:
    """``{split: (features list, digit lists)}``, memoized per process."""
    key = (d.path, d.seed, d.num_train, d.num_dev, d.num_test, d.min_digits, d.max_digits,
           d.silence_ms_min, d.silence_ms_max, d.noise, d.dev_takes, d.features.num_mels,
           d.features.frame_ms, d.features.hop_ms, d.features.stack)
    if key in _CACHE:
        return _CACHE[key]
    recs = list_recordings(d.path)
    sigs, rate = [], None
    for r in recs:
        x, rate = audio.read_wav(r.path)
        sigs.append(x)
    pools = {"test": [i for i, r in enumerate(recs) if r.take < 5],
             "dev": [i for i, r in enumerate(recs) if 5 <= r.take < 5 + d.dev_takes],
             "train": [i for i, r in enumerate(recs) if r.take >= 5 + d.dev_takes]}
    counts = {"train": d.num_train, "dev": d.num_dev, "test": d.num_test}
    out = {}
    for split, pool in pools.items():
        if not pool or counts[split] < 1:
            raise ConfigError(f"connected_digits: empty {split} split")
        rng = np.random.default_rng([d.seed, _SPLIT_IDS[split]])
        waves, labels = make_utterances(
            [sigs[i] for i in pool], [recs[i].digit for i in pool], counts[split], rng,
            rate=rate, min_digits=d.min_digits, max_digits=d.max_digits,
            silence_ms=(d.silence_ms_min, d.silence_ms_max), noise=d.noise)
        out[split] = (signals_features(waves, rate, d.features), labels)
    _CACHE[key] = out
    return out


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, t, m = cfg.data, cfg.train, cfg.model
    splits = build_splits(d)
    F = splits["train"][0][0].shape[1]
    enc = Encoder(m.cell, m.hidden_size, m.num_layers, m.dropout)
    L = d.max_digits
    train_feats, train_labels = splits["train"]
    if t.batch_size > len(train_feats):
        raise ConfigError(f"train.batch_size={t.batch_size} exceeds data.num_train={len(train_feats)}")
    per_epoch = len(train_feats) // t.batch_size

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"rnn": enc.init(k1, F), "head": linear_init(k2, enc.output_size, NUM_OUTPUTS)}

    def logits_fn(params, x, n, key=None):
        ys = enc(params["rnn"], x, n, key)
        out = ys @ params["head"]["w"]
        return out + jnp.broadcast_to(params["head"]["b"], out.shape)

    def train_batch(step):
        epoch, b = divmod(int(step), per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_feats))
        sel = perm[b * t.batch_size:(b + 1) * t.batch_size]
        x, n = pad_batch([train_feats[i] for i in sel], d.bucket)
        y, ny = pad_labels([train_labels[i] for i in sel], L)
        return {"x": x, "n": n, "y": y, "ny": ny}

    def loss(params, state, batch, key):
        x = augment(d.spec_augment, jax.random.fold_in(key, 7), batch["x"], batch["n"])
        lg = logits_fn(params, x, batch["n"], key)
        per = ctc.ctc_loss(lg, batch["n"], batch["y"], batch["ny"], blank=BLANK)
        per_label = per / jnp.maximum(batch["ny"], 1).astype(per.dtype)   # a count, as a float
        return jnp.mean(per_label), (state, {"ctc": jnp.mean(per)})

    @jax.jit
    def eval_fn(params, x, n, y, ny):
        lg = logits_fn(params, x, n)
        return jax.nn.log_softmax(lg, -1), ctc.ctc_loss(lg, n, y, ny, blank=BLANK)

    def evaluate(params, split="dev"):
        if split not in splits:
            raise DataError(f"connected_digits: unknown split {split!r} (train, dev or test)")
        feats, labels = splits[split]
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
        refs, greedy, beam, nll = [], [], [], 0.0
        for a in range(0, len(order), d.eval_batch):
            chunk = order[a:a + d.eval_batch]
            chunk = chunk + chunk[-1:] * ((-len(chunk)) % runtime.num_devices)
            x, n = pad_batch([feats[i] for i in chunk], d.bucket)
            y, ny = pad_labels([labels[i] for i in chunk], L)
            lp, per = runtime.to_host(eval_fn(params, *runtime.shard_batch((x, n, y, ny))))
            lp, per = np.asarray(lp), np.asarray(per)
            seen = set()
            for j, i in enumerate(chunk):
                if i in seen:
                    continue
                seen.add(i)
                nll += float(per[j])
                refs.append(labels[i])
                greedy.append([s - 1 for s in ctc.greedy_decode(lp[j], n[j], blank=BLANK)])
                if split == "test" and d.beam_width > 1:
                    best, _ = ctc.prefix_beam_search(lp[j], n[j], beam_width=d.beam_width,
                                                     blank=BLANK, prune=np.log(1e-4))
                    beam.append([s - 1 for s in best])
        out = {"loss": nll / sum(len(r) for r in refs),
               "der": ctc.error_rate(refs, greedy),
               "utt_accuracy": float(np.mean([r == h for r, h in zip(refs, greedy)]))}
        if beam:
            out["der_beam"] = ctc.error_rate(refs, beam)
            out["utt_accuracy_beam"] = float(np.mean([r == h for r, h in zip(refs, beam)]))
        return out

    return Task(init=init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                units=(t.batch_size, "utt"))
