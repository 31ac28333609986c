"""Optax optimizers from an :class:`~jaxrnn.train.config.OptimizerConfig`.

The chain is, in order: clip by global norm (if ``clip_norm``), the optimizer with its learning-rate
schedule (decoupled weight decay for ``adamw`` / ``lion`` / ``adafactor``, L2 added to the
gradient for the others), and gradient accumulation over ``accumulate_steps`` train steps
(``optax.MultiSteps``: the schedule then counts applied updates, not micro-steps).
The optional parameter average (``ema_decay``) lives in the train loop's state, not in the chain.
"""

from __future__ import annotations

import jax
import optax

from jaxrnn.train.config import ConfigError, OptimizerConfig

__all__ = ["make_schedule", "make_optimizer", "ema_decay_at", "check_ema", "standard_promotion"]


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule over ``total_steps`` optimizer updates."""
    lr = cfg.learning_rate
    end = lr * cfg.end_factor
    warmup = cfg.warmup_steps
    if cfg.schedule == "constant":
        if warmup > 0:
            return optax.join_schedules(
                [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
        return optax.constant_schedule(lr)
    decay = max(total_steps - warmup, 1)
    if cfg.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0 if warmup else lr, lr, warmup,
                                                  warmup + decay, end)
    if cfg.schedule == "warmup_linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.linear_schedule(lr, end, decay)],
            [warmup])
    raise ConfigError(f"optimizer.schedule: unknown schedule {cfg.schedule!r}")


def check_ema(cfg: OptimizerConfig) -> None:
    d = cfg.ema_decay
    if d is not None and not 0.0 < d < 1.0:
        raise ConfigError(f"optimizer.ema_decay must be in (0, 1) or null, got {d}")


def ema_decay_at(decay: float, step):
    """The averaging weight of the old average after ``step`` + 1 updates:
    ``min(decay, (1 + step) / (10 + step))``, so early averages are not dominated by the init
    (the schedule of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``)."""
    import jax.numpy as jnp
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


def make_optimizer(cfg: OptimizerConfig, train_steps: int) -> optax.GradientTransformation:
    """The full optax chain for ``train_steps`` train (micro-)steps."""
    if cfg.accumulate_steps < 1:
        raise ConfigError(f"optimizer.accumulate_steps must be >= 1, got {cfg.accumulate_steps}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.clip_norm is not None and cfg.clip_norm <= 0:
        raise ConfigError(f"optimizer.clip_norm must be > 0 or null, got {cfg.clip_norm}")
    check_ema(cfg)
    updates = max(train_steps // cfg.accumulate_steps, 1)
    sched = make_schedule(cfg, updates)
    wd = cfg.weight_decay
    name = cfg.name
    if name == "adam":
        opt = optax.adam(sched, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif name == "adamw":
        opt = optax.adamw(sched, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd)
    elif name == "sgd":
        opt = optax.sgd(sched, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    elif name == "rmsprop":
        opt = optax.rmsprop(sched, eps=cfg.eps, momentum=cfg.momentum or None,
                            nesterov=cfg.nesterov)
    elif name == "adagrad":
        opt = optax.adagrad(sched, eps=cfg.eps)
    elif name == "lion":
        opt = optax.lion(sched, b1=cfg.b1, b2=cfg.b2, weight_decay=wd)
    elif name == "adafactor":
        opt = optax.adafactor(sched, weight_decay_rate=wd or None)
    else:
        raise ConfigError(f"optimizer.name: unknown optimizer {name!r}")
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    if wd and name not in ("adamw", "lion", "adafactor"):
        parts.append(optax.add_decayed_weights(wd))
    parts.append(opt)
    tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
    if cfg.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate_steps).gradient_transformation()
    return standard_promotion(tx)


def standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` traced under JAX's standard dtype promotion. optax mixes its int32 step counts
    with float arrays (Adam's bias correction, MultiSteps' running mean), which a user's
    ``jax_numpy_dtype_promotion="strict"`` refuses; the rule only changes how the optimizer's
    own code is traced, the model and the loss stay under the user's setting."""
    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params)

    return optax.GradientTransformation(init, update)
