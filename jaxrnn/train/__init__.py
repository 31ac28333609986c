"""Config-driven training: schema, loop, checkpoints, metrics, plots, data parallelism.

    from jaxrnn.train import load_config, train_and_evaluate
    cfg = load_config("configs/charlm_tiny.yaml", ["train.steps=60"])   # names its experiment
    train_and_evaluate(cfg, "runs/tiny")

See ``docs/training.md`` for the experiment interface.
"""

from jaxrnn.train.checkpoint import CheckpointError, Checkpoints
from jaxrnn.train.config import (BaseConfig, CellName, ConfigError, DataError, Decay,
                                 DistributedConfig,
                                 Fraction, Method, NewtonConfig, NonNegativeFloat, NonNegativeInt,
                                 OptimizerConfig, PositiveFloat, PositiveInt, Range, Rate,
                                 TrainConfig, data_path, data_root, solver_options)
from jaxrnn.train.experiment import Task, load_experiment
from jaxrnn.train.lock import WorkdirLock, WorkdirLockedError
from jaxrnn.train.loop import (NonFiniteLossError, TrainState, eval_params, load_config,
                               load_params, prepare, train_and_evaluate)
from jaxrnn.train.metrics import MetricsWriter, read_metrics
from jaxrnn.train.optim import make_optimizer, make_schedule
from jaxrnn.train.plots import plot_metrics
from jaxrnn.train.sharding import Runtime, make_runtime

__all__ = [
    "BaseConfig", "CellName", "Checkpoints", "Decay", "Fraction", "NonNegativeFloat",
    "Method", "NewtonConfig", "NonNegativeInt", "PositiveFloat", "PositiveInt", "Range", "Rate",
    "ConfigError", "DataError", "DistributedConfig", "MetricsWriter",
    "NonFiniteLossError", "OptimizerConfig", "Runtime", "Task", "TrainConfig", "TrainState",
    "data_path", "data_root", "eval_params", "load_config", "load_experiment", "load_params",
    "make_optimizer", "make_runtime", "make_schedule", "plot_metrics", "prepare", "read_metrics",
    "solver_options", "train_and_evaluate", "CheckpointError", "WorkdirLock", "WorkdirLockedError",
]
