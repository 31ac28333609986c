"""Typed run configs: one dataclass schema per experiment, YAML in, errors that name the key.

Every experiment's schema is a dataclass that extends :class:`BaseConfig` (the shared skeleton:
``experiment``, ``seed``, ``optimizer.*``, ``train.*``, ``distributed.*``) with its own ``data``
and ``model`` sections. Defaults live in the schema only; the trainer never calls
``config.get(key, default)``.

Validation happens before anything is compiled:

- an unknown key is an error naming the full key (``train.stpes``) and the closest valid one;
- a value of the wrong type is an error naming the key, the expected type and the value;
- a field marked with :func:`data_path` must name an existing file once resolved against the data
  root (see :func:`data_root`); the error names the key and the path;
- ``model.cell`` fields typed :data:`CellName` must name a cell of :mod:`jaxrnn.cells.registry`.

``--set key=value`` overrides are parsed as YAML scalars and type checked against the schema
the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml

__all__ = [
    "CellName", "NewtonConfig", "Method", "Range", "PositiveInt", "NonNegativeInt", "PositiveFloat",
    "NonNegativeFloat", "solver_options",
    "Rate", "Fraction", "Decay", "ConfigError", "DataError", "BaseConfig", "OptimizerConfig", "TrainConfig", "DistributedConfig",
    "DATA_ENV", "data_path", "data_root", "output_path", "check_output_paths", "from_dict", "to_dict", "load_yaml", "apply_overrides",
    "resolve_paths", "relativize_paths", "dump_yaml", "diff_configs",
]


class ConfigError(ValueError):
    """A config problem, with the key or path it concerns in the message."""


class DataError(ValueError):
    """Bad data or command input (an unknown split, an empty file, an option out of range),
    named in the message. The CLI prints it as one line, like a :class:`ConfigError`."""


# --------------------------------------------------------------------------- locations

DATA_ENV = "JAXRNN_DATA"


def data_root(configured: Optional[str] = None, override: Optional[str] = None) -> Optional[Path]:
    """The folder that relative :func:`data_path` fields are read from, or None if none is set.

    In order: ``override`` (the CLI's ``--data-dir``), ``$JAXRNN_DATA``, then ``configured`` (a
    config's ``data_root`` key, already made absolute against the config file's folder by
    :func:`load_yaml`). The library has no built-in location: it installs and runs without this
    repository, whose configs set ``data_root: ../../shared/data``."""
    for value in (override, os.environ.get(DATA_ENV), configured):
        if value:
            return Path(os.path.expanduser(str(value))).resolve()
    return None


class CellName(str):
    """A config field type: the name of a cell in :mod:`jaxrnn.cells.registry` (checked when
    the config is read, before any data is loaded)."""


class NewtonConfig(dict):
    """A config field type (an annotation: the value stays a plain dict): a mapping of
    ``jr.NewtonOptions`` fields (``method: newton``'s options), checked by the library's own
    ``check_options`` when the config is read."""


@dataclass(frozen=True)
class Range:
    """A bound on a numeric config field, attached with ``typing.Annotated``: ``lo`` / ``hi``
    (None: unbounded), inclusive unless ``lo_open`` / ``hi_open``. Every float field must also
    be finite (NaN fails every comparison, so a plain ``> 0`` test would let it through)."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        left = "-inf" if self.lo is None else repr(self.lo)
        right = "inf" if self.hi is None else repr(self.hi)
        return (("(" if self.lo_open or self.lo is None else "[") + f"{left}, {right}"
                + (")" if self.hi_open or self.hi is None else "]"))

    def check(self, key: str, value) -> None:
        ok = True
        if self.lo is not None:
            ok &= value > self.lo if self.lo_open else value >= self.lo
        if self.hi is not None:
            ok &= value < self.hi if self.hi_open else value <= self.hi
        if not ok:
            raise ConfigError(f"{key}: must be in {self.describe()}, got {value!r}")


PositiveInt = Annotated[int, Range(lo=1)]
NonNegativeInt = Annotated[int, Range(lo=0)]
PositiveFloat = Annotated[float, Range(lo=0.0, lo_open=True)]
NonNegativeFloat = Annotated[float, Range(lo=0.0)]
Rate = Annotated[float, Range(0.0, 1.0, hi_open=True)]        # dropout-like: [0, 1)
Fraction = Annotated[float, Range(0.0, 1.0)]                  # [0, 1]
Decay = Annotated[float, Range(0.0, 1.0, hi_open=True)]       # Adam's b1/b2, momentum, EMA


# the solver over time of a model config's ``method`` field (jr.scan's ``method``)
Method = Literal["fused", "reference", "newton"]


def solver_options(method: str, newton: dict, where: str = "model") -> dict:
    """The layer keywords of a model config's ``method`` and ``newton`` fields
    (``jr.layer(cell, **solver_options(...))``), checked before anything is built: ``newton``
    (fields of ``jr.NewtonOptions``) only with ``method: newton``; a bad option is a
    :class:`ConfigError` naming ``<where>.newton``."""
    from jaxrnn.cells import checks
    from jaxrnn.engine import newton as newton_lib
    if method != "newton":
        if newton:
            raise ConfigError(f"{where}.newton: options apply to {where}.method=newton, not "
                              f"{method!r}")
        return dict(method=method)
    try:
        return dict(method=method, newton=newton_lib.check_options(dict(newton),
                                                                    where=f"{where}.newton"))
    except (checks.InvalidArgumentType, checks.InvalidArgumentValue) as e:
        raise ConfigError(str(e)) from None


def output_path(default: str):
    """A config field naming a file or folder the experiment writes: relative to the run folder
    (the workdir) and confined to it, so no config value writes anywhere else."""
    return field(default=default, metadata={"output_path": True})


def check_output_paths(cfg, prefix: str = "") -> None:
    """Every :func:`output_path` field is a relative path that stays inside the run folder."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(v):
            check_output_paths(v, key + ".")
        elif f.metadata.get("output_path"):
            p = Path(str(v))
            if not str(v) or p.is_absolute() or ".." in p.parts:
                raise ConfigError(f"{key}: {v!r} must be a relative path inside the run folder "
                                  f"(outputs are written under the workdir only)")


def data_path(default: Optional[str] = None, *, required: bool = True):
    """A config field naming a data file (or folder), relative to the data root unless absolute.

    ``required=False`` lets the field be empty (``None`` or ``""``)."""
    return field(default=default, metadata={"data_path": True, "required": required})


# --------------------------------------------------------------------------- skeleton

@dataclass
class OptimizerConfig:
    """Optax optimizer, schedule, regularization and accumulation (see ``jaxrnn.train.optim``)."""
    name: Literal["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "adafactor"] = "adam"
    learning_rate: PositiveFloat = 1e-3
    schedule: Literal["constant", "warmup_cosine", "warmup_linear"] = "constant"
    warmup_steps: NonNegativeInt = 0
    # final learning rate of the cosine / linear decay, as a fraction of learning_rate
    end_factor: NonNegativeFloat = 0.0
    # decoupled (AdamW-style) weight decay; for sgd/adam it is added to the gradient (L2)
    weight_decay: NonNegativeFloat = 0.0
    # clip the global gradient norm to this value (None: no clipping)
    clip_norm: Optional[PositiveFloat] = None
    b1: Decay = 0.9
    b2: Decay = 0.999
    eps: NonNegativeFloat = 1e-8
    momentum: Decay = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    # gradient accumulation: apply the averaged update every k train steps (optax.MultiSteps)
    accumulate_steps: PositiveInt = 1
    # exponential moving average of the parameters (Polyak averaging), updated every train step
    # with decay min(ema_decay, (1 + t) / (10 + t)); when set, dev evaluation, the best
    # checkpoint, evaluate and predict use the averaged parameters. None: off.
    ema_decay: Optional[Annotated[float, Range(0.0, 1.0, lo_open=True, hi_open=True)]] = None


@dataclass
class TrainConfig:
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 32
    eval_every: PositiveInt = 500
    checkpoint_every: PositiveInt = 500
    log_every: PositiveInt = 50
    # keep this many most recent checkpoints (the best one is kept apart, in best/)
    keep_checkpoints: PositiveInt = 2
    # the dev metric that selects the best checkpoint, and whether lower or higher is better
    best_metric: str = "loss"
    best_mode: Literal["min", "max"] = "min"
    # early stopping: stop once train.best_metric has gone this many dev evaluations without
    # improving on its reference value (None: always train for train.steps)
    patience: Optional[PositiveInt] = None
    # an evaluation improves on the reference when it beats it by more than this fraction of
    # the reference's magnitude (0: any improvement counts)
    min_improvement: Annotated[float, Range(0.0, 1.0, hi_open=True)] = 0.0
    # progress bar: None = on when stderr is a TTY and CI is not set
    progress: Optional[bool] = None
    tensorboard: bool = True
    plots: bool = True


@dataclass
class DistributedConfig:
    """Multi-host setup for ``jax.distributed.initialize``.

    Each field may also come from the environment (``JAXRNN_COORDINATOR_ADDRESS``,
    ``JAXRNN_NUM_PROCESSES``, ``JAXRNN_PROCESS_ID``), which wins over the config so one config
    serves every process. ``enabled: auto`` initializes when a coordinator address is known.
    """
    enabled: Literal["auto", "on", "off"] = "auto"
    coordinator_address: Optional[str] = None
    num_processes: Optional[PositiveInt] = None
    process_id: Optional[NonNegativeInt] = None


@dataclass
class BaseConfig:
    """Fields every experiment shares. Subclasses add ``data`` and ``model`` sections.

    ``experiment`` is required: the importable module that defines the experiment
    (``experiments.charlm`` in this repository, or any module of the user's; see
    :func:`jaxrnn.train.load_experiment`). ``data_root`` is the folder relative data paths are
    read from (relative to the config file's folder; ``--data-dir`` and ``$JAXRNN_DATA`` win
    over it)."""
    experiment: str = ""
    data_root: Optional[str] = None
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


# --------------------------------------------------------------------------- validation

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        ranges = [m.describe() for m in meta if isinstance(m, Range)]
        return _type_name(base) + (" in " + ", ".join(ranges) if ranges else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(typing.get_args(tp)) else inner
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if tp is CellName:
        return "a cell name"
    if tp is NewtonConfig:
        return "a mapping of jr.NewtonOptions fields"
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str):
    """Checks ``value`` against annotation ``tp``; returns the (lightly coerced) value."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        value = _convert(value, base, key)
        for m in meta:
            if isinstance(m, Range):
                m.check(key, value)
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            # Optional[X]: X's own error says more (a range, a finite number) than "X or null"
            try:
                return _convert(value, options[0], key)
            except ConfigError as e:
                raise ConfigError(f"{e} (or null)") from None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is NewtonConfig:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} "
                              f"{value!r}")
        from jaxrnn.cells import checks
        from jaxrnn.engine import newton as newton_lib
        try:
            newton_lib.check_options(dict(value), where=key)
        except (checks.InvalidArgumentType, checks.InvalidArgumentValue) as e:
            raise ConfigError(str(e)) from None
        return dict(value)
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
    if tp is CellName:
        from jaxrnn.cells import registry
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a cell name, got {type(value).__name__} {value!r}")
        try:
            registry.get(value)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        out = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        # PyYAML reads 3e-4 (no dot) as a string; accept numeric strings for float fields.
        elif isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            out = float(value)
        if out is not None:
            if not math.isfinite(out):
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            return out
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{key}: unsupported annotation {tp!r} in the config schema")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _fields(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def from_dict(cls, data: dict, *, prefix: str = ""):
    """Builds dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    fields = _fields(cls)
    names = [f.name for f, _ in fields]
    for k in data:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{k}'{hint}; valid keys here: "
                              + ", ".join(prefix + n for n in names))
    kwargs = {}
    for f, tp in fields:
        if f.name in data:
            value = data[f.name]
            default = _default_of(f)
            if dataclasses.is_dataclass(default) and isinstance(value, dict):
                # a section given in part keeps the schema's own defaults for the rest (an
                # experiment's Config may set e.g. train.best_metric differently from TrainConfig)
                value = _merge(to_dict(default), value)
            kwargs[f.name] = _convert(value, tp, prefix + f.name)
    return cls(**kwargs)


def _default_of(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(base[k], v) if isinstance(base.get(k), dict) and isinstance(v, dict) else v
    return out


def to_dict(cfg) -> dict:
    """The config as plain nested dicts/lists (for YAML and comparisons)."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def load_yaml(path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config: {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML config was expected)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    root = data.get("data_root")
    if isinstance(root, str) and root and not Path(os.path.expanduser(root)).is_absolute():
        # a config's data root is relative to the config file, so the file works from any cwd
        data["data_root"] = str((path.resolve().parent / root).resolve())
    return data


def dump_yaml(cfg, path) -> None:
    """Writes the resolved config (every field, defaults included)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides) -> dict:
    """Returns a copy of the nested dict ``data`` with ``key.sub=value`` items set.

    The keys and types are checked when the result is validated against the schema."""
    import copy
    data = copy.deepcopy(data)
    for item in overrides or ():
        key, value = parse_override(item) if isinstance(item, str) else item
        parts = key.split(".")
        node = data
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def resolve_paths(cfg, root: Optional[Path] = None, *, prefix: str = ""):
    """Resolves every :func:`data_path` field against the data root and checks it exists.

    ``root`` defaults to :func:`data_root` of the config's own ``data_root``. Returns a new
    config with absolute paths; the error names the key and the path, and says how to set the
    root when a relative path has none."""
    if root is None and not prefix:
        root = data_root(getattr(cfg, "data_root", None))
    changes = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(v):
            changes[f.name] = resolve_paths(v, root, prefix=key + ".")
        elif f.metadata.get("data_path"):
            if v is None or v == "":
                if f.metadata.get("required", True):
                    raise ConfigError(f"{key}: a data file is required")
                continue
            p = Path(os.path.expanduser(v))
            if not p.is_absolute():
                if root is None:
                    raise ConfigError(
                        f"{key}: {v!r} is a relative path and no data root is set: set "
                        f"data_root in the config, pass --data-dir, or set ${DATA_ENV}")
                p = Path(root) / p
                if not p.resolve().is_relative_to(Path(root).resolve()):
                    raise ConfigError(
                        f"{key}: {v!r} resolves outside the data root {root}; relative data "
                        f"paths stay under it (give an absolute path to read a file elsewhere)")
            if not p.exists():
                where = (f" (relative paths are resolved against the data root {root}; set it "
                         f"with data_root, --data-dir or ${DATA_ENV})" if root is not None else "")
                raise ConfigError(f"{key}: data file not found: {p}{where}")
            changes[f.name] = str(p.resolve())
    return dataclasses.replace(cfg, **changes)


def relativize_paths(cfg, root: Optional[Path] = None):
    """The inverse of :func:`resolve_paths` for files under the data root (so a run folder's
    ``config.yaml`` stays valid when the data root moves: pass ``--data-dir``); other paths
    stay absolute."""
    if root is None:
        root = data_root(getattr(cfg, "data_root", None))
        if root is None:
            return cfg
    changes = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            changes[f.name] = relativize_paths(v, root)
        elif f.metadata.get("data_path") and v:
            p = Path(v)
            if p.is_absolute():
                try:
                    changes[f.name] = str(p.relative_to(root))
                except ValueError:
                    pass
    return dataclasses.replace(cfg, **changes)


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, prefix + f"{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
