"""The train loop: ``train_and_evaluate(config, workdir)``.

One ``jit``-compiled step (state donated) over a data-parallel mesh, periodic evaluation,
``metrics.jsonl`` + TensorBoard, a progress bar, orbax checkpoints with exact resume, plots.

Exact resume rests on three rules:

- everything that changes from step to step is in :class:`TrainState` (params, optimizer state,
  step, the experiment's carried state such as a TBPTT carry, and the running sums of the train
  metrics since the last log line), and the whole state is checkpointed;
- the batch of step ``s`` is ``task.train_batch(s)`` (a pure function of the step) and the step's
  RNG key is ``fold_in(key, s)``;
- on resume, records and best-checkpoints written after the restored step are dropped, and the
  run recomputes them bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.train import config as config_lib
from jaxrnn.train.checkpoint import CheckpointError, Checkpoints
from jaxrnn.train.config import BaseConfig, ConfigError
from jaxrnn.train.experiment import Task, load_experiment
from jaxrnn.train.lock import WorkdirLock, WorkdirLockedError
from jaxrnn.train.metrics import MetricsWriter, truncate_metrics
from jaxrnn.train.optim import ema_decay_at, make_optimizer, make_schedule
from jaxrnn.train.sharding import Runtime, make_runtime

__all__ = ["TrainState", "eval_params", "NonFiniteLossError", "load_config", "config_path",
           "train_and_evaluate", "Run", "prepare", "CONFIG_FILE", "CheckpointError",
           "WorkdirLockedError"]

CONFIG_FILE = "config.yaml"
# Changing these on an existing workdir is allowed (they do not change what is computed before
# the restored step). Anything else must match the workdir's config.
RESUMABLE_CHANGES = ("train.steps", "train.progress", "train.tensorboard", "train.plots",
                     "distributed.", "data_root")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainState(NamedTuple):
    """Everything a train step changes. All of it is checkpointed."""
    step: jax.Array          # int32: train steps done
    params: Any
    opt_state: Any
    task_state: Any          # per-example carried state (TBPTT carry), batch-sharded; () if none
    sums: dict               # running sums of the train metrics since the last log line
    count: jax.Array         # int32: steps in ``sums``
    bad_step: jax.Array      # int32: first step whose loss was not finite, -1 if none
    ema: Any = ()            # moving average of params (``optimizer.ema_decay``); () if off


def eval_params(state: TrainState) -> Any:
    """The parameters to evaluate and keep as best: the moving average when there is one."""
    return state.ema if jax.tree.leaves(state.ema) else state.params


# --------------------------------------------------------------------------- configs

def config_path(arg) -> Path:
    """A config argument: a YAML path, or the name of a file in ``./configs/`` (``charlm_tiny``)."""
    p = Path(arg)
    if p.is_dir():
        raise ConfigError(f"config: {arg} is a folder, not a YAML file")
    if p.is_file():
        return p
    cand = Path("configs") / (arg if str(arg).endswith((".yaml", ".yml")) else f"{arg}.yaml")
    if cand.is_file():
        return cand
    raise ConfigError(f"config file not found: {arg} (also looked for {cand.resolve()})")


def build_config(raw: dict, data_dir: Optional[str] = None) -> BaseConfig:
    """Validates a raw dict against its experiment's schema and resolves data paths against
    the data root (``data_dir``, else ``$JAXRNN_DATA``, else the config's ``data_root``)."""
    if "experiment" not in raw:
        raise ConfigError("experiment: the config must name its experiment module, e.g. "
                          "'experiment: experiments.charlm'")
    name = raw["experiment"]
    exp = load_experiment(name)
    cfg = config_lib.from_dict(exp.Config, raw)
    if not isinstance(cfg, BaseConfig):
        raise ConfigError(f"experiment {name!r}: Config must extend jaxrnn.train.BaseConfig")
    root = config_lib.data_root(cfg.data_root, data_dir)
    # the run's config records the root it really read from
    cfg = dataclasses.replace(cfg, data_root=None if root is None else str(root))
    cfg = config_lib.resolve_paths(cfg, root)
    config_lib.check_output_paths(cfg)
    return cfg


def load_config(config: Optional[str], overrides: Sequence[str] = (), workdir=None, *,
                data_dir: Optional[str] = None) -> BaseConfig:
    """The run's config, validated, before anything is compiled.

    - ``workdir`` holding a ``config.yaml`` (a run to resume): that config, with ``overrides``;
      a ``config`` given as well must agree with it (except ``train.steps``, display options
      and the data root, which may move).
    - otherwise ``config`` (a path, or a name in ``./configs/``) with ``overrides``.

    ``data_dir`` overrides the data root (the CLI's ``--data-dir``)."""
    saved = Path(workdir) / CONFIG_FILE if workdir is not None else None
    if saved is not None and saved.is_file():
        old = config_lib.load_yaml(saved)
        base = config_lib.load_yaml(config_path(config)) if config is not None else old
        cfg = build_config(config_lib.apply_overrides(base, overrides), data_dir)
        old_cfg = build_config(old, data_dir)
        diffs = [d for d in config_lib.diff_configs(
                     config_lib.to_dict(config_lib.relativize_paths(old_cfg)),
                     config_lib.to_dict(config_lib.relativize_paths(cfg)))
                 if not d.startswith(RESUMABLE_CHANGES)]
        if diffs:
            raise ConfigError(
                f"workdir {workdir} holds a run with a different config; resuming it would not "
                f"continue that run. Differences: " + "; ".join(diffs)
                + ". Use a new --workdir, or drop the config/--set arguments to resume.")
        return cfg
    if config is None:
        raise ConfigError("no config given (and no run to resume in the workdir): "
                          "jaxrnn train CONFIG, e.g. jaxrnn train configs/charlm.yaml")
    path = config_path(config)
    return build_config(config_lib.apply_overrides(config_lib.load_yaml(path), overrides),
                        data_dir)


# --------------------------------------------------------------------------- setup

class Run(NamedTuple):
    """A prepared run: config, runtime, task, optimizer, compiled functions, shardings."""
    cfg: BaseConfig
    rt: Runtime
    task: Task
    tx: optax.GradientTransformation
    init_state: Any          # () -> TrainState
    abstract_state: Any      # TrainState of ShapeDtypeStructs with shardings
    train_step: Any          # jitted (state, batch) -> state, state donated
    reset_sums: Any          # jitted state -> state with zeroed metric sums


def prepare(cfg: BaseConfig, runtime: Optional[Runtime] = None) -> Run:
    rt = runtime or make_runtime(cfg.distributed)
    rt.check_batch(cfg.train.batch_size)
    exp = load_experiment(cfg.experiment)
    task = exp.build(cfg, rt)
    if task.metrics is not None and cfg.train.best_metric not in task.metrics:
        # before anything compiles or is written, not at the first evaluation
        raise ConfigError(f"train.best_metric: {cfg.train.best_metric!r} is not a dev metric of "
                          f"{cfg.experiment} (it reports {', '.join(sorted(task.metrics))})")
    tx = make_optimizer(cfg.optimizer, cfg.train.steps)
    repl, data_sh = rt.replicated, rt.batch_sharding
    root = jax.random.PRNGKey(cfg.seed)
    init_key, step_key = jax.random.split(root)

    host_task_state = task.init_state() if task.init_state is not None else ()
    batch0 = task.train_batch(0)

    def metric_names():
        params = jax.eval_shape(task.init, init_key)
        ts = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                          host_task_state)
        b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), batch0)
        out = jax.eval_shape(task.loss, params, ts, b, step_key)
        loss, (_, metrics) = out
        if jnp.shape(loss) != ():
            raise ValueError(f"experiment {cfg.experiment}: loss must be a scalar, got shape "
                             f"{jnp.shape(loss)}")
        return sorted(set(metrics) | {"loss"})

    names = metric_names()
    ema_decay = cfg.optimizer.ema_decay

    def init_replicated():
        params = task.init(init_key)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
            task_state=(), sums={k: jnp.zeros((), jnp.float32) for k in names},
            count=jnp.zeros((), jnp.int32), bad_step=jnp.full((), -1, jnp.int32),
            ema=() if ema_decay is None else jax.tree.map(jnp.array, params))

    abstract = jax.eval_shape(init_replicated)
    ts_abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=data_sh),
        host_task_state)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl),
                            abstract)._replace(task_state=ts_abstract)
    shardings = jax.tree.map(lambda a: a.sharding, abstract)

    def init_state():
        st = jax.jit(init_replicated, out_shardings=shardings._replace(task_state=()))()
        return st._replace(task_state=rt.shard_batch(host_task_state))

    def step_fn(state: TrainState, batch) -> TrainState:
        key = jax.random.fold_in(step_key, state.step)
        (loss, (task_state, metrics)), grads = jax.value_and_grad(task.loss, has_aux=True)(
            state.params, state.task_state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss)
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        ok = finite & (state.bad_step < 0)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
        ema = state.ema
        if ema_decay is not None:
            d = ema_decay_at(ema_decay, state.step)
            ema = keep(jax.tree.map(lambda a, p: (d * a + (1 - d) * p).astype(a.dtype),
                                    state.ema, params), state.ema)
        return TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            task_state=keep(task_state, state.task_state),
            sums={k: state.sums[k] + jnp.where(ok, jnp.asarray(metrics[k], jnp.float32), 0.0)
                  for k in names},
            count=state.count + ok.astype(jnp.int32),
            bad_step=jnp.where((state.bad_step < 0) & ~finite, state.step, state.bad_step),
            ema=ema)

    train_step = jax.jit(step_fn, in_shardings=(shardings, data_sh), out_shardings=shardings,
                         donate_argnums=0)

    def reset(state):
        return state._replace(sums=jax.tree.map(jnp.zeros_like, state.sums),
                              count=jnp.zeros_like(state.count))

    reset_sums = jax.jit(reset, in_shardings=(shardings,), out_shardings=shardings,
                         donate_argnums=0)
    return Run(cfg, rt, task, tx, init_state, abstract, train_step, reset_sums)


def load_params(run: Run, workdir, which: str = "best") -> tuple[Any, int]:
    """Params from ``workdir``, verified against their checksums: ``best`` (the newest intact
    ``best/`` entry, else the newest intact full checkpoint), ``latest`` (the newest intact full
    checkpoint) or a step (exactly that one). Damaged entries are skipped with a warning on
    stderr and left in place (this is a read-only look at the run); a damaged step asked for by
    number is a :class:`CheckpointError`."""
    ck = Checkpoints(workdir)
    try:
        params_abs = run.abstract_state.params
        if which == "best" and ck.best_steps():
            try:
                params, step, _ = ck.restore_best(params_abs)
                return params, step
            except FileNotFoundError:
                ck.warn(f"no intact best checkpoint in {Path(workdir) / 'best'}: using the "
                        f"newest intact full checkpoint instead")
        if which in ("best", "latest"):
            found = ck.restore_latest(run.abstract_state)
            if found is None:
                raise FileNotFoundError(f"no checkpoint in {Path(workdir) / 'checkpoints'}; "
                                        f"train first with: jaxrnn train --workdir {workdir}")
            return eval_params(found.tree), found.step
        return eval_params(ck.restore(int(which), run.abstract_state)), int(which)
    finally:
        ck.close()


class EarlyStopping:
    """``train.patience`` / ``train.min_improvement``: counts the dev evaluations since the
    metric last improved on its reference value by more than ``min_improvement`` of it, and
    says when ``patience`` of them have passed. Its state travels with every checkpoint, so a
    resumed run stops at the same step as an uninterrupted one."""

    def __init__(self, patience: Optional[int], min_improvement: float, mode: str,
                 state: Optional[dict] = None):
        self.patience, self.frac, self.mode = patience, float(min_improvement), mode
        state = state or {}
        self.ref_step = state.get("ref_step")
        self.ref_value = state.get("ref_value")
        self.waited = int(state.get("waited", 0))
        self.stopped = state.get("stopped")          # the step it stopped at, or None

    def improves(self, value: float) -> bool:
        if self.ref_value is None:
            return True
        margin = self.frac * abs(self.ref_value)
        if self.mode == "min":
            return value < self.ref_value - margin
        return value > self.ref_value + margin

    def update(self, step: int, value: float) -> bool:
        """Records the evaluation at ``step``; True when training should stop here."""
        if self.improves(value):
            self.ref_step, self.ref_value, self.waited = step, float(value), 0
        else:
            self.waited += 1
        if self.patience is not None and self.waited >= self.patience:
            self.stopped = step
        return self.stopped is not None

    def describe(self, metric: str) -> str:
        by = f" by more than {100 * self.frac:g}%" if self.frac else ""
        return (f"dev {metric} has not improved{by} for {self.waited} evaluations "
                f"(reference {self.ref_value:.6g} at step {self.ref_step})")

    def state(self) -> dict:
        return {"ref_step": self.ref_step, "ref_value": self.ref_value, "waited": self.waited,
                "stopped": self.stopped}


# --------------------------------------------------------------------------- loop

def _progress_enabled(setting: Optional[bool]) -> bool:
    if setting is not None:
        return setting
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return sys.stderr.isatty()


def _log(msg: str, rt: Runtime) -> None:
    if rt.is_main:
        print(msg, file=sys.stderr, flush=True)


def _lock_workdir(workdir: Path, rt: Runtime) -> Optional[WorkdirLock]:
    """Takes ``workdir/.lock`` on the main process (the other processes of a multi-process
    run share its lock); every process raises :class:`WorkdirLockedError` if it is refused."""
    lock, error = None, None
    if rt.is_main:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            lock = WorkdirLock(workdir).acquire()
        except Exception as e:  # noqa: BLE001 - re-raised below, after telling the others
            error = e
    ok = error is None
    if rt.process_count > 1:
        from jax.experimental import multihost_utils
        ok = bool(int(multihost_utils.broadcast_one_to_all(np.int32(ok))))
    if error is not None:
        raise error
    if not ok:
        raise WorkdirLockedError(f"workdir {workdir}: the main process could not lock it "
                                 f"(its error says why)")
    return lock


def train_and_evaluate(cfg: BaseConfig, workdir, *, runtime: Optional[Runtime] = None) -> dict:
    """Trains ``cfg`` in ``workdir`` (resuming if it holds a checkpoint); returns the final
    ``{"train": {...}, "dev": {...}}`` metrics.

    The workdir is locked for the whole run (``workdir/.lock``): a second trainer on it gets
    :class:`WorkdirLockedError`. Nothing in it is rewritten (``config.yaml``, ``metrics.jsonl``,
    ``best/``) before the state was restored and verified, or initialised for a new run; a
    damaged newest checkpoint is skipped for the newest intact one (moved to
    ``checkpoints/<step>.corrupt``, with a warning), and with none intact the run stops with
    :class:`CheckpointError`, leaving the workdir as it was."""
    workdir = Path(workdir).resolve()
    run = prepare(cfg, runtime)
    lock = _lock_workdir(workdir, run.rt)
    try:
        return _train(run, workdir)
    finally:
        if lock is not None:
            lock.release()


def _train(run: Run, workdir: Path) -> dict:
    cfg, rt, t = run.cfg, run.rt, run.cfg.train
    _log(f"{cfg.experiment}: {rt.num_devices} device(s) over {rt.process_count} process(es), "
         f"global batch {t.batch_size}", rt)
    ckpt = Checkpoints(workdir, keep=t.keep_checkpoints, best_mode=t.best_mode)
    try:
        return _train_from(run, workdir, ckpt)
    finally:
        ckpt.close()


def _train_from(run: Run, workdir: Path, ckpt: Checkpoints) -> dict:
    cfg, rt, task, t = run.cfg, run.rt, run.task, run.cfg.train
    found = ckpt.restore_latest(run.abstract_state, quarantine=True)   # verified
    best_step = best_value = best_metrics = None
    stopper = EarlyStopping(t.patience, t.min_improvement, t.best_mode,
                            found.info.get("early_stopping") if found is not None else None)
    if found is not None:
        start, state = found.step, found.tree
        ckpt.rewind(start)
        rec = found.info.get("best")
        if rec:
            best_step, best_value, best_metrics = rec["step"], rec["value"], rec.get("metrics")
        intact = ckpt.check_best(run.abstract_state.params)          # damaged ones moved aside
        if best_step is not None and best_step not in intact:
            if best_step == start and best_metrics is not None:
                ckpt.save_best(start, eval_params(state), best_metrics)
                ckpt.warn(f"rewrote best/{start} in {workdir} from checkpoints/{start}")
            else:
                ckpt.warn(f"the params of the best evaluation so far (step {best_step}) are "
                          f"lost; until a better evaluation is saved, 'best' means the newest "
                          f"checkpoint")
        if stopper.stopped is not None:
            _log(f"{workdir} stopped early at step {stopper.stopped} (train.patience); "
                 f"nothing to train", rt)
            return {"train": {}, "dev": dict(found.info.get("dev") or {})}
        _log(f"resuming {workdir} from step {start}", rt)
    else:
        start = 0
        state = run.init_state()
        ckpt.rewind(0)   # best entries of a run killed before its first checkpoint
    # only now, with the state restored and verified (or initialised), is the workdir rewritten
    if rt.is_main:
        truncate_metrics(workdir, start if start else -1)
        config_lib.dump_yaml(config_lib.relativize_paths(cfg), workdir / CONFIG_FILE)
        if run.task.write_files is not None:
            run.task.write_files(workdir)

    writer = MetricsWriter(workdir, tensorboard=t.tensorboard,
                           resume_step=start if start else None, enabled=rt.is_main)
    schedule = make_schedule(cfg.optimizer, max(t.steps // cfg.optimizer.accumulate_steps, 1))
    from tqdm.auto import tqdm
    bar = tqdm(total=t.steps, initial=start, disable=not (rt.is_main and _progress_enabled(t.progress)),
               unit="step", dynamic_ncols=True, desc=cfg.experiment)
    units = task.units
    last = {"train": {}, "dev": {}}
    t_log, s_log = time.perf_counter(), start
    t0 = time.perf_counter()

    def check_finite(step):
        bad = int(rt.to_host(state.bad_step))
        if bad >= 0:
            good = ckpt.newest_intact_step(run.abstract_state)   # restored and checksummed
            where = (f"the last good checkpoint is step {good} in {workdir / 'checkpoints'} "
                     f"(verified against its checksum)" if good is not None
                     else "no intact checkpoint was written yet")
            raise NonFiniteLossError(
                f"non-finite loss or gradient at train step {bad + 1} (detected at step {step}); "
                f"stopping. Parameters were not updated with it; {where}. Try a lower "
                f"optimizer.learning_rate or set optimizer.clip_norm.")

    try:
        for step in range(start + 1, t.steps + 1):
            batch = rt.shard_batch(task.train_batch(step - 1))
            state = run.train_step(state, batch)
            bar.update(1)
            final = step == t.steps
            if step % t.log_every == 0 or final:
                check_finite(step)
                host = rt.to_host((state.sums, state.count))
                sums, count = host
                means = {k: float(v) / max(int(count), 1) for k, v in sums.items()}
                state = run.reset_sums(state)
                last["train"] = writer.write(step, "train", means)
                now = time.perf_counter()
                rate = (step - s_log) / max(now - t_log, 1e-9)
                t_log, s_log = now, step
                extra = {"perf/steps_per_sec": rate,
                         "optimizer/learning_rate": float(schedule(
                             (step - 1) // cfg.optimizer.accumulate_steps))}
                post = {"loss": f"{means['loss']:.4f}"}
                if units:
                    extra[f"perf/{units[1]}s_per_sec"] = rate * units[0]
                    post[f"{units[1]}/s"] = f"{rate * units[0]:,.0f}"
                writer.scalars(step, extra)
                bar.set_postfix(post, refresh=False)
                if bar.disable and (step % (t.log_every * 10) == 0 or final):
                    _log(f"step {step}/{t.steps} train loss {means['loss']:.4f} "
                         f"({rate:.2f} steps/s)", rt)
            if step % t.eval_every == 0 or final:
                check_finite(step)
                dev = task.evaluate(eval_params(state), "dev")
                last["dev"] = writer.write(step, "dev", dev)
                if t.best_metric not in dev:
                    raise ConfigError(f"train.best_metric: {t.best_metric!r} is not a dev metric "
                                      f"of {cfg.experiment} (it reports {sorted(dev)})")
                _log(f"step {step}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in dev.items()), rt)
                tie = t.best_metric != "loss" and best_metrics is not None
                if ckpt.is_better(dev[t.best_metric], best_value,
                                  dev.get("loss") if tie else None,
                                  best_metrics.get("loss") if tie else None):
                    best_step, best_value = step, dev[t.best_metric]
                    best_metrics = dict(dev, step=step)
                    ckpt.save_best(step, eval_params(state), best_metrics)
                if stopper.update(step, float(dev[t.best_metric])):
                    _log(f"step {step}: stopping early: {stopper.describe(t.best_metric)}; "
                         f"train.patience is {t.patience}", rt)
            stop = stopper.stopped == step
            if step % t.checkpoint_every == 0 or final or stop:
                check_finite(step)
                writer.sync()
                # the best so far and the early-stopping count travel with the state: a
                # damaged best/ cannot change a resume, and a resumed run stops where an
                # uninterrupted one does
                ckpt.save(step, state, {"best": None if best_step is None else {
                    "step": best_step, "value": float(best_value), "metrics": best_metrics},
                    "early_stopping": stopper.state(), "dev": last["dev"]})
            if stop:
                break
    finally:
        bar.close()
        writer.close()
    if rt.is_main and t.plots:
        from jaxrnn.train.plots import plot_metrics
        plot_metrics(workdir)
    end = stopper.stopped or t.steps
    if end > start:
        _log(f"trained steps {start + 1}-{end} in {time.perf_counter() - t0:.1f} s; "
             f"workdir {workdir}", rt)
    return last
