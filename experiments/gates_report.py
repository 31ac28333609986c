"""Why gates matter: runs the whole sweep and regenerates the tables and figures of docs/gates.md.

    python -m experiments.gates_report                      # train what is missing, then report
    python -m experiments.gates_report --jobs 2 --time-limit 3600   # one sitting; rerun to go on
    python -m experiments.gates_report --report-only        # tables and figures from finished runs

The sweep (every run is the ``jaxrnn train`` runner on a config of ``configs/`` with ``--set``
overrides, kept in each run's ``config.yaml`` and ``spec.json``):

- ``adding`` (``configs/adding.yaml``), T = 200, 400, 600, 1000, and ``copy``
  (``configs/copy.yaml``), T = 100, 200, 500: the tanh RNN (simple_rnn), the LSTM with forget
  bias 1 (lstm), the LSTM with chrono initialization (lstm_chrono: ``chrono_t_max`` = the
  sequence length, Tallec & Ollivier 2018), gru, mgu and min_gru; hidden sizes chosen so every
  model has about the recurrent parameters of a 64-unit LSTM (one layer; two for min_gru, whose
  single layer has no recurrent weights). The configs' budget: up to 5000 steps of batch 32,
  a dev evaluation every 250, early stopping after 12 evaluations (3000 steps) without a 1%
  improvement of the dev loss (``train.patience``, ``train.min_improvement``). Seed 0 for every
  (cell, T); seeds 1 and 2 as well wherever seed 0 lands near a target's threshold
  (:func:`near_threshold`), scheduled as soon as seed 0 is scored;
- ``mnist1d`` (``configs/mnist1d.yaml``): simple_rnn, lstm, gru, bidirectional lstm and gru,
  a 2-layer bidirectional gru, seeds 0, 1, 2.

Runs start in priority order (the lengths the targets name first: adding T = 600 and 1000,
copy T = 200), ``--jobs`` at a time. Each run's workdir (``runs/gates/<group>/<run>/``) gets,
besides the runner's files, ``sittings.json`` (the wall time of every sitting that trained
it), ``result.json`` (dev and test metrics of the best dev checkpoint, the budget, the steps
taken, whether it stopped early, parameter count, the command) and, for the synthetic tasks,
``gradient_flow.json`` / ``gradient_flow.png``: the mean over 32 test sequences of
||dL/dh_t|| against t for the untrained and trained parameters
(:func:`jaxrnn.analysis.gradient_norms`). A run with a ``result.json`` is not run again; an
interrupted one (``--time-limit``, Ctrl-C, a crash) resumes from its last checkpoint to the
same result. Every finished run is also recorded in ``docs/gates_runs/<group>/<run>.json``
(``--ledger``; its result and gradient flow), which is committed: ``runs/`` is not, and a sweep
longer than one machine's life skips, on the next machine, the runs the ledger holds, and
reports them.

The report: each group's tables between its ``<!-- results:GROUP:begin/end -->`` markers in
``docs/gates.md`` (groups without results are left as they are), and the figures
``docs/gates_loss_vs_T.png``, ``docs/gates_gradient_flow_adding.png`` and
``docs/gates_gradient_flow_copy.png``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from experiments.runs import add_sitting as _add_sitting
from experiments.runs import latest_step as _latest_step
from experiments.runs import child_env as _child_env
from experiments.runs import replace_block, stop_children, write_json

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# one JSON per finished run (its result.json and gradient flow), committed: a sweep longer than
# one machine's life continues on the next one (runs/ is not committed)
LEDGER = DOCS / "gates_runs"

ADDING_T = (200, 400, 600, 1000)
COPY_T = (100, 200, 500)
LONGDEP_CELLS = ("simple_rnn", "lstm", "lstm_chrono", "gru", "mgu", "min_gru")
# a label's registry cell, when it is not the label itself
CELL_OF = {"lstm_chrono": "lstm"}
FIRST_SEEDS = (0,)
MORE_SEEDS = (1, 2)
# layers per cell; min_gru / min_lstm have no recurrent weights, so one layer of them is only a
# gated running average of the input: two layers, as Feng et al. 2024 stack them
LAYERS = {"min_gru": 2, "min_lstm": 2}
# the reference: the recurrent parameters of a 64-unit LSTM on the task's input
REFERENCE = ("lstm", 64, 1)
# the targets: a loss below this fraction of the memoryless baseline solves the task
TARGET = {"adding": 0.01, "copy": 0.10}
# the (T, cells) the targets name, first in the queue; then the gradient-flow figure's length
# per task (copy memory is not run at 600: its figure is at the copy target's length)
TARGET_RUNS = {"adding": ((600, 1000), ("gru", "lstm_chrono", "simple_rnn", "lstm")),
               "copy": ((200,), ("gru", "lstm_chrono"))}
FLOW_T = {"adding": 600, "copy": 200}

MNIST_MODELS = {
    # label: overrides of configs/mnist1d.yaml (a 1-layer bidirectional GRU, 128 units)
    "simple_rnn": ["model.cell=simple_rnn", "model.bidirectional=false"],
    "lstm": ["model.cell=lstm", "model.bidirectional=false"],
    "gru": ["model.cell=gru", "model.bidirectional=false"],
    "bi_lstm": ["model.cell=lstm"],
    "bi_gru": ["model.cell=gru"],
    "deep_bi_gru": ["model.cell=gru", "model.num_layers=2"],
}
MNIST_SEEDS = (0, 1, 2)

GROUPS = ("adding", "copy", "mnist1d")
INPUT_SIZE = {"adding": 2, "copy": 10}
CONFIG = {"adding": "configs/adding.yaml", "copy": "configs/copy.yaml",
          "mnist1d": "configs/mnist1d.yaml"}
# published reference (Bai, Kolter & Koltun 2018, Table 1; generic recurrent baselines)
BAI_2018 = {"adding": {"T": 600, "lstm": 0.164, "gru": 5.3e-5, "simple_rnn": 0.177},
            "copy": {"T": 1000, "lstm": 0.0204, "gru": 0.0197, "simple_rnn": 0.0202}}


@dataclass
class RunSpec:
    group: str
    label: str
    seed: int
    config: str
    overrides: list = field(default_factory=list)
    T: Optional[int] = None

    @property
    def name(self) -> str:
        t = f"_T{self.T}" if self.T is not None else ""
        return f"{self.label}{t}_s{self.seed}"

    def cost(self) -> float:
        """A rough relative cost (time steps per training step)."""
        if self.group == "mnist1d":
            return 40.0 * (2 if "model.num_layers=2" in self.overrides else 1)
        return float(self.T + (20 if self.group == "copy" else 0))

    def priority(self) -> tuple:
        """Smaller starts first: the runs the targets name, then the other cells at the
        gradient-flow figures' lengths, then the extra seeds of both (cheapest first), then
        the other cells at the targets' lengths, then the rest; long runs first in a tier."""
        if self.group not in TARGET_RUNS:
            tier = 4
        else:
            lengths, cells = TARGET_RUNS[self.group]
            tier = (0 if self.T in lengths and self.label in cells
                    else 1 if self.T == FLOW_T[self.group]
                    else 2 if self.T in lengths else 3)
        if self.seed not in FIRST_SEEDS:
            return (max(tier, 1) + 0.5, self.cost(), self.seed)
        return (tier, -self.cost(), self.seed)

    def command(self) -> str:
        """The ``jaxrnn train`` command line of this run."""
        sets = " ".join(f"--set '{o}'" if " " in o else f"--set {o}" for o in self.overrides)
        return f"jaxrnn train {self.config} --workdir runs/gates/{self.group}/{self.name} {sets}"


# --------------------------------------------------------------------------- the sweep

@functools.lru_cache(maxsize=None)
def matched_hidden(cell: str, input_size: int, layers: int = 1) -> int:
    """The hidden size whose recurrent parameter count is closest to the reference LSTM's."""
    from experiments.adding import Model, ModelConfig
    count = lambda c, h, l: Model(ModelConfig(cell=c, hidden_size=h, num_layers=l),
                                  input_size, 1).recurrent_params()
    target = count(*REFERENCE)
    lo, hi = 1, 4096                      # the count grows with h: bisect, then pick the nearer
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(cell, mid, layers) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(count(cell, h, layers) - target))


def longdep_spec(group: str, label: str, T: int, seed: int, extra=(), parallel=False) -> RunSpec:
    cell = CELL_OF.get(label, label)
    L = LAYERS.get(cell, 1)
    H = matched_hidden(cell, INPUT_SIZE[group], L)
    ov = [f"data.seq_len={T}", f"model.cell={cell}", f"model.hidden_size={H}",
          f"model.num_layers={L}"]
    if label == "lstm_chrono":
        # the longest dependency the task can ask for: the whole sequence
        ov.append(f"model.cell_options={{chrono_t_max: {T + (20 if group == 'copy' else 0)}}}")
    if cell in ("min_gru", "min_lstm"):
        ov.append(f"model.parallel={str(parallel).lower()}")
    ov += [f"seed={seed}", "train.progress=false", *extra]
    return RunSpec(group, label, seed, CONFIG[group], ov, T=T)


def sweep(groups=GROUPS, seeds=None, steps: Optional[int] = None, lengths=None,
          cells=None, parallel: bool = False) -> list[RunSpec]:
    """The first runs of ``groups`` (more seeds follow where :func:`followups` says so);
    ``seeds``, ``steps``, ``lengths`` (T) and ``cells`` (long-term dependency cells or MNIST-1D
    model labels) narrow or shorten it for quick looks; ``parallel`` trains min_gru with the
    associative scan (same numbers, faster on a GPU, slower on a CPU)."""
    specs = []
    extra = [f"train.steps={steps}"] if steps else []
    for group in groups:
        if group in ("adding", "copy"):
            for T in (lengths or (ADDING_T if group == "adding" else COPY_T)):
                for label in (cells or LONGDEP_CELLS):
                    if label not in LONGDEP_CELLS:
                        continue
                    for s in (seeds or FIRST_SEEDS):
                        specs.append(longdep_spec(group, label, T, s, extra, parallel))
        elif group == "mnist1d":
            for label, ov in MNIST_MODELS.items():
                if cells and label not in cells:
                    continue
                for s in (seeds or MNIST_SEEDS):
                    specs.append(RunSpec(group, label, s, CONFIG[group],
                                         ov + [f"seed={s}", "train.progress=false"] + extra))
        else:
            raise ValueError(f"unknown group {group!r}; choose from {GROUPS}")
    return specs


def near_threshold(group: str, loss: float, baseline: float) -> bool:
    """Whether a run's test loss is close enough to its target's threshold (a factor of 10
    either way, and clearly off the baseline) that one seed cannot tell which side it is on."""
    r = loss / baseline
    t = TARGET[group]
    return t / 10 <= r <= min(10 * t, 0.9)


def followups(results: list[dict]) -> list[RunSpec]:
    """Seeds 1 and 2 of every (group, cell, T) whose seed 0 landed near its threshold."""
    out = []
    for r in results:
        sp = RunSpec(**r["spec"])
        if sp.group not in TARGET or sp.seed not in FIRST_SEEDS:
            continue
        if near_threshold(sp.group, r["test"]["loss"], r["test"]["baseline"]):
            for s in MORE_SEEDS:
                ov = [o if not o.startswith("seed=") else f"seed={s}" for o in sp.overrides]
                out.append(RunSpec(sp.group, sp.label, s, sp.config, ov, sp.T))
    return out


# --------------------------------------------------------------------------- one run

def gradient_flow(cfg, params, n: int = 32) -> dict:
    """Mean over ``n`` test sequences of ||dL/dh_t|| (every layer's h) against t, for the loss
    at the end of the sequence: the adding problem's squared error, copy memory's cross-entropy
    of the 10 recalled symbols (the steps that need the memory; the blanks before them are
    predictable without it)."""
    import jax
    import jax.numpy as jnp
    import optax
    from jaxrnn import analysis
    from experiments import adding, copymem

    T = cfg.data.seq_len
    if cfg.experiment == "experiments.adding":
        model = adding.Model(cfg.model, 2, 1)
        x, y = adding.adding_data(np.random.default_rng([adding.TEST_SEED, T]), n, T)

        def per_example(p, xs, yi):
            def loss_fn(ys):
                return (model.head(p, ys[-1])[0] - yi) ** 2
            return analysis.gradient_norms(model.cells, p["rnn"], xs, loss_fn)
    else:
        model = adding.Model(cfg.model, copymem.NUM_SYMBOLS, copymem.NUM_SYMBOLS)
        ids, y = copymem.copy_data(np.random.default_rng([adding.TEST_SEED, T]), n, T)
        x = np.eye(copymem.NUM_SYMBOLS, dtype=np.float32)[ids]

        def per_example(p, xs, yi):
            def loss_fn(ys):
                lg = model.head(p, ys[-copymem.NUM_COPY:])
                return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
                    lg, yi[-copymem.NUM_COPY:]))
            return analysis.gradient_norms(model.cells, p["rnn"], xs, loss_fn)

    fn = jax.jit(jax.vmap(per_example, in_axes=(None, 0, 0)))
    init = model.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0])  # the runner's init key
    out = {}
    for which, p in (("untrained", init), ("trained", params)):
        norms = np.asarray(fn(p, jnp.asarray(x), jnp.asarray(y)))
        out[which] = np.mean(norms, axis=0).tolist()
    out["t"] = list(range(len(out["trained"])))
    return out


def flow_ratio(norms) -> float:
    """||dL/dh_1|| / ||dL/dh_T||: how much of the gradient at the last step reaches the first
    (0 when it underflows float32 on the way)."""
    v = np.asarray(norms, np.float64)
    return float(v[0] / v[-1]) if v[-1] > 0 else float("nan")


def _visible(values):
    """Norms that underflowed float32 (0, or denormals) are not drawn: the line just stops."""
    v = np.asarray(values, np.float64)
    return np.where(v > 1e-37, v, np.nan)


def plot_gradient_flow(flow: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for which, style in (("untrained", "--"), ("trained", "-")):
        ax.semilogy(flow["t"], _visible(flow[which]), style, label=which)
    ax.set_xlabel("t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# the sitting in progress (workdir, start time, first step), for the SIGTERM handler
_SITTING: list = []


def _stop_sitting(signum, frame) -> None:
    """SIGTERM (the sweep's time limit): records the sitting and exits at once. The run
    resumes from its newest checkpoint (written atomically) next time; its lock, left behind
    by a dead process, is taken over then."""
    if _SITTING:
        workdir, t0, first = _SITTING
        _SITTING.clear()
        _add_sitting(workdir, time.perf_counter() - t0, (first, _latest_step(workdir)))
    os._exit(128 + signum)


def run_one(spec: RunSpec, workdir: Path) -> dict:
    """Trains one run with the runner (resuming if interrupted), scores the best dev
    checkpoint on test, measures gradient flow; writes ``result.json``. The wall time of the
    training (this sitting's, even if it is stopped) is added to ``sittings.json``."""
    from jaxrnn.train import load_config
    from jaxrnn.train.lock import WorkdirLock
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    cfg = load_config(str(REPO / spec.config), spec.overrides, workdir)
    # held from training to result.json, so no other sweep takes the run up in between
    with WorkdirLock(_sweep_lock_dir(workdir)):
        return _run_one(spec, workdir, cfg)


def _sweep_lock_dir(workdir: Path) -> Path:
    d = workdir / ".sweep"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_one(spec: RunSpec, workdir: Path, cfg) -> dict:
    import jax
    from jaxrnn.train import load_params, prepare, train_and_evaluate
    first = _latest_step(workdir)
    t0 = time.perf_counter()
    _SITTING[:] = [workdir, t0, first]
    try:
        train_and_evaluate(cfg, workdir)
    finally:
        if _SITTING:
            _SITTING.clear()
            _add_sitting(workdir, time.perf_counter() - t0, (first, _latest_step(workdir)))
    sittings = json.loads((workdir / "sittings.json").read_text())
    t1 = time.perf_counter()
    run = prepare(cfg)
    params, step = load_params(run, workdir, "best")
    _, last = load_params(run, workdir, "latest")
    result = {"spec": asdict(spec), "command": spec.command(), "step": step,
              "budget": cfg.train.steps, "steps_taken": last,
              "stopped_early": last < cfg.train.steps,
              "train_seconds": sum(x["seconds"] for x in sittings), "sittings": len(sittings),
              "params": int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params))),
              "dev": run.task.evaluate(params, "dev"), "test": run.task.evaluate(params, "test")}
    if spec.group in TARGET:
        flow = gradient_flow(cfg, params)
        (workdir / "gradient_flow.json").write_text(json.dumps(flow))
        plot_gradient_flow(flow, workdir / "gradient_flow.png",
                           f"{spec.group} T={spec.T}: {spec.label} (seed {spec.seed})")
    result["score_seconds"] = time.perf_counter() - t1
    write_json(workdir / "result.json", result)
    return result


def child_env(platform: Optional[str], jobs: int) -> dict:
    # JAX_PLATFORMS unset: one thread per run only when the CPU is asked for
    return _child_env(platform, jobs if platform == "cpu" else 1)


def _ledger_file(ledger: Path, spec: RunSpec) -> Path:
    return ledger / spec.group / f"{spec.name}.json"


def _done(runs_dir: Path, spec: RunSpec, ledger: Optional[Path] = None) -> bool:
    return ((runs_dir / spec.group / spec.name / "result.json").is_file()
            or (ledger is not None and _ledger_file(ledger, spec).is_file()))


def record(spec: RunSpec, runs_dir: Path, ledger: Path) -> bool:
    """Copies a finished run's ``result.json`` and gradient flow into the ledger (atomically);
    False if the run has no result."""
    wd = runs_dir / spec.group / spec.name
    if not (wd / "result.json").is_file():
        return False
    entry = {"result": json.loads((wd / "result.json").read_text())}
    if (wd / "gradient_flow.json").is_file():
        entry["flow"] = json.loads((wd / "gradient_flow.json").read_text())
    write_json(_ledger_file(ledger, spec), entry)
    return True


def _busy(runs_dir: Path, spec: RunSpec) -> bool:
    """A run another sweep (or a ``jaxrnn train``) is training right now: left to it."""
    from jaxrnn.train.lock import WorkdirLock
    wd = runs_dir / spec.group / spec.name
    return WorkdirLock(wd).in_use() or WorkdirLock(wd / ".sweep").in_use()


def run_all(specs, runs_dir: Path, jobs: int, platform: Optional[str],
            time_limit: Optional[float] = None, more_seeds: bool = True,
            ledger: Optional[Path] = None) -> int:
    """Trains the runs without a ``result.json`` in priority order, ``jobs`` at a time (runs
    another process is training count too, and are left to it), adding the extra seeds of
    :func:`followups` as first seeds are scored (``more_seeds``). With
    ``time_limit`` (seconds) no run starts after it and unfinished runs are stopped at it
    (SIGTERM; a later call resumes them from their last checkpoint). With a ``ledger`` every
    finished run is recorded there (:func:`record`), and a run recorded there is done.
    Returns the number of failed runs."""
    env = child_env(platform, jobs)
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    wanted = {s.name + s.group: s for s in specs}
    running, failed = {}, set()

    def refresh():
        if more_seeds:
            firsts = [w for w in wanted.values() if w.seed in FIRST_SEEDS]
            for f in followups(load_results(firsts, runs_dir, ledger)):
                wanted.setdefault(f.name + f.group, f)
        return sorted((s for k, s in wanted.items() if k not in running and k not in failed
                       and not _done(runs_dir, s, ledger) and not _busy(runs_dir, s)),
                      key=RunSpec.priority)

    if ledger is not None:            # runs finished before the ledger knew them
        for s in specs:
            if not _ledger_file(ledger, s).is_file():
                record(s, runs_dir, ledger)
    todo = refresh()
    done = sum(_done(runs_dir, s, ledger) for s in wanted.values())
    print(f"{done} of {len(wanted)} runs done, {len(wanted) - done - len(todo)} being trained "
          f"elsewhere; running {len(todo)} with {jobs} job(s)", flush=True)

    def stamp():
        return f"[{time.perf_counter() - t0:7.1f}s]"

    while True:
        todo = refresh()
        # runs of this sweep that another process (an earlier sitting) is still training
        # count against --jobs
        elsewhere = sum(_busy(runs_dir, s) for k, s in wanted.items() if k not in running)
        while todo and len(running) + elsewhere < jobs and (deadline is None
                                                           or time.perf_counter() < deadline):
            spec = todo.pop(0)
            wd = runs_dir / spec.group / spec.name
            wd.mkdir(parents=True, exist_ok=True)
            log = open(wd / "log.txt", "a")
            proc = subprocess.Popen([sys.executable, "-m", "experiments.gates_report", "--one",
                                     json.dumps(asdict(spec)), "--runs-dir", str(runs_dir)],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[spec.name + spec.group] = (spec, proc, log)
            print(f"{stamp()} start {spec.group}/{spec.name}", flush=True)
        if not running and not (elsewhere and todo):
            break
        time.sleep(1.0)
        if deadline is not None and time.perf_counter() > deadline:
            stop_children([(f"{sp.group}/{sp.name}", proc, log)
                           for sp, proc, log in running.values()],
                          lambda m: print(f"{stamp()} {m}", flush=True))
            running.clear()
            break
        for key, (spec, proc, log) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            log.close()
            del running[key]
            if rc != 0:
                failed.add(key)
            elif ledger is not None:
                record(spec, runs_dir, ledger)
            wd = runs_dir / spec.group / spec.name
            print(f"{stamp()} {spec.group}/{spec.name}: "
                  + ("ok" if rc == 0 else f"FAILED (rc {rc}, see {wd}/log.txt)"), flush=True)
    left = len(refresh())
    if failed or left:
        print(f"{len(failed)} run(s) failed, {left} not finished (rerun to continue)", flush=True)
    return len(failed)


# --------------------------------------------------------------------------- the report

def load_results(specs, runs_dir: Path, ledger: Optional[Path] = None) -> list[dict]:
    """The finished runs' results: from their workdir, else (a run trained on another machine)
    from the ledger, with the gradient flow as ``r["flow"]``."""
    out = []
    for s in specs:
        p = runs_dir / s.group / s.name / "result.json"
        if p.is_file():
            r = json.loads(p.read_text())
            r["workdir"] = str(p.parent)
            out.append(r)
        elif ledger is not None and _ledger_file(ledger, s).is_file():
            entry = json.loads(_ledger_file(ledger, s).read_text())
            r = entry["result"]
            r["workdir"] = None
            if "flow" in entry:
                r["flow"] = entry["flow"]
            out.append(r)
    return out


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 0.01:
        return f"{x:.3f}"
    return f"{x:.1e}"


def _cell_stats(vals):
    vals = np.asarray(vals, np.float64)
    return float(vals.mean()), float(vals.min()), float(vals.max()), len(vals)


def longdep_table(results, group: str) -> tuple[str, dict]:
    """The result table of one task: mean test loss over seeds per (cell, T), its fraction of
    the memoryless baseline, and the seeds behind it."""
    rows = [r for r in results if r["spec"]["group"] == group]
    Ts = sorted({r["spec"]["T"] for r in rows})
    stats, base, params, secs = {}, {}, {}, 0.0
    for r in rows:
        sp = r["spec"]
        stats.setdefault((sp["label"], sp["T"]), []).append(r["test"]["loss"])
        base[sp["T"]] = r["test"]["baseline"]
        ov = dict(o.split("=", 1) for o in sp["overrides"])
        params[sp["label"]] = (r["params"], ov["model.hidden_size"], ov["model.num_layers"])
        secs += r["train_seconds"]
    metric = "cross-entropy" if group == "copy" else "MSE"
    head = "| cell | hidden x layers | params | " + " | ".join(f"T={T}" for T in Ts) + " |"
    lines = [head, "|" + "---|" * (3 + len(Ts))]
    for cell in LONGDEP_CELLS:
        if cell not in params:
            continue
        n, H, L = params[cell]
        entries = []
        for T in Ts:
            v = stats.get((cell, T))
            if not v:
                entries.append("—")
                continue
            mean, lo, hi, k = _cell_stats(v)
            frac = f"{100 * mean / base[T]:.3g}%"
            solved = " ✓" if mean < TARGET[group] * base[T] else ""
            spread = f" [{_fmt(lo)}, {_fmt(hi)}] ({k} seeds)" if k > 1 else ""
            entries.append(f"{_fmt(mean)} ({frac}){solved}{spread}")
        lines.append(f"| {cell} | {H} x {L} | {n:,} | " + " | ".join(entries) + " |")
    lines.append("| *memoryless baseline (computed on the test set)* | | | "
                 + " | ".join(_fmt(base[T]) if T in base else "—" for T in Ts) + " |")
    ref = BAI_2018[group]
    if ref["T"] in Ts:
        lines.append(f"| *Bai et al. 2018: GRU / LSTM / RNN* | | | "
                     + " | ".join(f"{ref['gru']:.2g} / {ref['lstm']:.3g} / {ref['simple_rnn']:.3g}"
                                  if T == ref["T"] else "—" for T in Ts) + " |")
    summary = {"stats": stats, "baseline": base, "seconds": secs, "metric": metric,
               "runs": len(rows), "seeds": sorted({r["spec"]["seed"] for r in rows})}
    return "\n".join(lines), summary


def runs_table(results, group: str) -> str:
    """Every run of a task, met or not: seed, result, budget, steps taken, wall time, and the
    command (in a list after the table)."""
    rows = sorted((r for r in results if r["spec"]["group"] == group),
                  key=lambda r: (r["spec"]["T"], LONGDEP_CELLS.index(r["spec"]["label"])
                                 if r["spec"]["label"] in LONGDEP_CELLS else 99, r["spec"]["seed"]))
    metric = "cross-entropy" if group == "copy" else "MSE"
    lines = [f"| T | cell | seed | test {metric} | of baseline | solved | best dev step | "
             f"steps taken / budget | wall (min) |", "|" + "---|" * 9]
    cmds = []
    for r in rows:
        sp, test = r["spec"], r["test"]
        frac = test["loss"] / test["baseline"]
        stop = " (early stop)" if r.get("stopped_early") else ""
        extra = (f", recall {100 * test['recall_accuracy']:.0f}%" if "recall_accuracy" in test
                 else f", {100 * test['accuracy']:.0f}% within 0.04" if "accuracy" in test else "")
        lines.append(f"| {sp['T']} | {sp['label']} | {sp['seed']} | {_fmt(test['loss'])}{extra} | "
                     f"{100 * frac:.3g}% | {'yes' if frac < TARGET[group] else 'no'} | "
                     f"{r['step']} | {r.get('steps_taken', r['step'])} / "
                     f"{r.get('budget', '?')}{stop} | {r['train_seconds'] / 60:.1f} |")
        cmds.append(f"    {r.get('command') or RunSpec(**sp).command()}")
    return ("\n".join(lines) + "\n\n<details><summary>the command of every run</summary>\n\n"
            + "\n".join(cmds) + "\n\n</details>\n")


def flow_table(results, group: str) -> tuple[str, dict]:
    """||dL/dh_1|| / ||dL/dh_T|| per cell at the task's figure length, untrained and trained."""
    T = FLOW_T[group]
    flows = {}
    for r in results:
        sp = r["spec"]
        if sp["group"] == group and sp["T"] == T and sp["seed"] == 0:
            if r.get("flow") is not None:
                flows[sp["label"]] = (r["flow"], r)
                continue
            path = Path(r["workdir"]) / "gradient_flow.json" if r.get("workdir") else None
            if path is not None and path.is_file():
                flows[sp["label"]] = (json.loads(path.read_text()), r)
    if not flows:
        return "", flows
    lines = [f"| cell (T={T}, seed 0) | ratio untrained | ratio trained | test loss of baseline |",
             "|---|---|---|---|"]
    fmt = lambda x: "0 (underflow)" if not np.isfinite(x) or x == 0 else f"{x:.1e}"
    for cell in LONGDEP_CELLS:
        if cell in flows:
            f, r = flows[cell]
            lines.append(f"| {cell} | {fmt(flow_ratio(f['untrained']))} | "
                         f"{fmt(flow_ratio(f['trained']))} | "
                         f"{100 * r['test']['loss'] / r['test']['baseline']:.3g}% |")
    return "\n".join(lines), flows


def targets_table(results) -> str:
    """The issue's targets, each with what was measured."""
    def cell_at(group, label, T):
        rows = [r for r in results if (r["spec"]["group"], r["spec"]["T"]) == (group, T)]
        losses = [r["test"]["loss"] for r in rows if r["spec"]["label"] == label]
        return (_cell_stats(losses) if losses else None,
                rows[0]["test"]["baseline"] if rows else None)

    lines = ["| target | measured (mean test loss over seeds, % of baseline) | met |",
             "|---|---|---|"]
    checks = [("adding", T, label, "below") for T in (600, 1000) for label in ("gru", "lstm_chrono")]
    checks += [("adding", T, "simple_rnn", "at") for T in (600, 1000)]
    checks += [("adding", T, "lstm", "report") for T in (600, 1000)]
    checks += [("copy", 200, label, "below") for label in ("gru", "lstm_chrono")]
    for group, T, label, kind in checks:
        st, base = cell_at(group, label, T)
        want = {"below": f"< {100 * TARGET[group]:g}% of baseline", "at": "at the baseline",
                "report": "reported either way"}[kind]
        task = "adding" if group == "adding" else "copy memory"
        if st is None:
            lines.append(f"| {task} T={T}, {label}: {want} | not run yet | — |")
            continue
        mean, lo, hi, k = st
        frac = mean / base
        met = {"below": frac < TARGET[group], "at": frac > 0.9, "report": True}[kind]
        lines.append(f"| {task} T={T}, {label}: {want} | {_fmt(mean)} ({100 * frac:.3g}%, "
                     f"{k} seed{'s' if k > 1 else ''}) | {'yes' if met else '**no**'} |")
    return "\n".join(lines)


def mnist_table(results) -> tuple[str, dict]:
    rows = [r for r in results if r["spec"]["group"] == "mnist1d"]
    acc, dev, params, secs = {}, {}, {}, 0.0
    for r in rows:
        lab = r["spec"]["label"]
        acc.setdefault(lab, []).append(r["test"]["accuracy"])
        dev.setdefault(lab, []).append(r["dev"]["accuracy"])
        params[lab] = r["params"]
        secs += r["train_seconds"]
    lines = ["| model | params | test accuracy, mean [min, max] | best seed | dev accuracy (mean) |",
             "|---|---|---|---|---|"]
    for lab in MNIST_MODELS:
        if lab not in acc:
            continue
        mean, lo, hi, k = _cell_stats(acc[lab])
        lines.append(f"| {lab} | {params[lab]:,} | {100 * mean:.1f}% [{100 * lo:.1f}, "
                     f"{100 * hi:.1f}] ({k} seeds) | {100 * hi:.1f}% | "
                     f"{100 * np.mean(dev[lab]):.1f}% |")
    return "\n".join(lines), {"acc": acc, "seconds": secs, "runs": len(rows)}


def figure_loss_vs_T(summaries: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = [g for g in ("adding", "copy") if g in summaries]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.0 * len(groups), 4.2), dpi=100,
                             squeeze=False)
    for ax, g in zip(axes[0], groups):
        s = summaries[g]
        Ts = sorted({T for (_, T) in s["stats"]})
        for cell in LONGDEP_CELLS:
            pts = [(T, _cell_stats(s["stats"][(cell, T)])) for T in Ts if (cell, T) in s["stats"]]
            if not pts:
                continue
            x = [p[0] for p in pts]
            mean = np.array([p[1][0] for p in pts])
            lo = np.array([p[1][1] for p in pts])
            hi = np.array([p[1][2] for p in pts])
            line, = ax.plot(x, mean, "o-", label=cell, markersize=4,
                            color=f"C{LONGDEP_CELLS.index(cell)}")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        bt = sorted(s["baseline"])
        ax.plot(bt, [s["baseline"][T] for T in bt], "k--", label="memoryless baseline")
        ax.plot(bt, [TARGET[g] * s["baseline"][T] for T in bt], "k:",
                label=f"target: {100 * TARGET[g]:g}% of the baseline")
        ref = BAI_2018[g]
        for cell, marker in (("lstm", "s"), ("gru", "^"), ("simple_rnn", "v")):
            ax.plot([ref["T"]], [ref[cell]], marker, color="gray", markerfacecolor="none",
                    markersize=8, label=f"Bai et al. 2018: {cell}")
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel(f"test {s['metric']}")
        ax.set_title(f"{'adding problem' if g == 'adding' else 'copy memory'}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def figure_gradient_flow(flows: dict, group: str, path: Path) -> bool:
    """One figure per task: mean ||dL/dh_t|| against t for every cell at ``FLOW_T``,
    untrained (left) and trained (right)."""
    if not flows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    T = FLOW_T[group]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), dpi=100, sharey=True)
    task = "adding problem" if group == "adding" else "copy memory (recall loss)"
    for ax, which in zip(axes, ("untrained", "trained")):
        for cell in LONGDEP_CELLS:
            if cell in flows:
                f, r = flows[cell]
                ax.semilogy(f["t"], _visible(f[which]), color=f"C{LONGDEP_CELLS.index(cell)}",
                            label=cell + ("" if which == "untrained"
                                          else f" ({r.get('steps_taken', r['step'])} steps)"))
        ax.set_title(f"{task}, T={T}, {which}")
        ax.set_xlabel("t")
        ax.set_ylabel("mean ||dL/dh_t||")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def group_block(results, g: str) -> tuple[str, dict]:
    """The markdown (caption + tables) of one group and its summary."""
    if g in TARGET:
        table, summary = longdep_table(results, g)
        name = {"adding": "Adding problem", "copy": "Copy memory"}[g]
        per_T = {}
        for (cell, T), v in summary["stats"].items():
            per_T[T] = max(per_T.get(T, 0), len(v))
        flows_md, flows = flow_table(results, g)
        summary["flows"] = flows
        text = (f"**{name}**: test {summary['metric']} of the best dev checkpoint, mean over "
                f"seeds, and in brackets its fraction of the memoryless baseline (✓: below the "
                f"target, {100 * TARGET[g]:g}% of it); [min, max] where more than one seed ran "
                f"({summary['runs']} runs, {summary['seconds'] / 60:.0f} minutes of training "
                f"in all).\n\n{table}\n\nEvery run:\n\n{runs_table(results, g)}")
        if flows_md:
            text += (f"\nGradient flow at T={FLOW_T[g]}: ||dL/dh_1|| / ||dL/dh_T|| for the loss at "
                     f"the end of the sequence (mean over 32 test sequences of each norm):\n\n"
                     f"{flows_md}\n")
        return text, summary
    table, summary = mnist_table(results)
    return (f"**MNIST-1D**: test accuracy of the best dev checkpoint "
            f"({summary['runs']} runs, {summary['seconds'] / 60:.0f} minutes of training in "
            f"all). Greydanus 2020: logistic regression 32%, MLP 68%, CNN 94%, GRU 91%."
            f"\n\n{table}\n"), summary


def compute_block(specs, results, runs_dir: Path) -> str:
    """What the finished runs cost (wall time of their training sittings) and, from the
    seconds per time step they measured, at most what the unfinished ones will."""
    rows = [r for r in results if r["spec"]["group"] in TARGET]
    if not rows:
        return ""
    rates = [r["train_seconds"] / (r.get("steps_taken", r["step"]) * RunSpec(**r["spec"]).cost())
             for r in rows if r.get("steps_taken")]
    rate = float(np.median(rates)) if rates else float("nan")
    done = {(r["spec"]["group"], RunSpec(**r["spec"]).name) for r in rows}
    left, left_s, started = 0, 0.0, 0
    from jaxrnn.train import load_config
    for s in specs:
        if s.group not in TARGET or (s.group, s.name) in done:
            continue
        left += 1
        budget = load_config(str(REPO / s.config), s.overrides).train.steps
        at = _latest_step(runs_dir / s.group / s.name)
        started += at > 0
        left_s += (budget - at) * s.cost() * rate
    spent = sum(r["train_seconds"] for r in rows)
    text = (f"{len(rows)} runs finished, {spent / 3600:.1f} hours of training in all (the sum "
            f"of each run's sittings' wall times, two runs at a time on the 2-core CPU; "
            f"scoring and gradient flow add about a minute a run); median cost "
            f"{1e3 * rate:.2f} ms of wall time per time step of a batch of 32, forward and "
            f"backward.")
    if left:
        text += (f" {left} runs of the sweep are not finished ({started} of them started): at "
                 f"that rate they need at most {left_s / 3600:.1f} more run-hours (their full "
                 f"budgets; early stopping ends most failing runs after 3000-4500 steps), so "
                 f"the whole sweep is at most {(spent + left_s) / 3600:.1f} run-hours, about "
                 f"{(spent + left_s) / 7200:.1f} hours of the machine with `--jobs 2`. "
                 f"`python -m experiments.gates_report --jobs 2 --platform cpu` continues it "
                 f"where it stopped.")
    return text


def write_report(specs, runs_dir: Path, docs: Path = DOCS, ledger: Optional[Path] = None) -> str:
    """Tables of the groups in ``specs`` that have results (written into ``docs/gates.md``
    between their markers, groups without results left as they are) and the figures. The extra
    seeds of :func:`followups` are reported with their first seeds."""
    results = load_results(list(specs) + followups(load_results(specs, runs_dir, ledger)),
                           runs_dir, ledger)
    done = {r["spec"]["group"] for r in results}
    groups = [g for g in GROUPS if g in {s.group for s in specs} and g in done]
    blocks, summaries = {}, {}
    for g in groups:
        blocks[g], summaries[g] = group_block(results, g)
    if any(g in summaries for g in TARGET):
        blocks["targets"] = targets_table(results)
        blocks["compute"] = compute_block(list(specs) + followups(results), results, runs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    if any(g in summaries for g in TARGET):
        figure_loss_vs_T(summaries, docs / "gates_loss_vs_T.png")
        for g in TARGET:
            if g in summaries:
                figure_gradient_flow(summaries[g]["flows"], g,
                                     docs / f"gates_gradient_flow_{g}.png")
    gates = docs / "gates.md"
    if gates.is_file():
        doc = gates.read_text()
        for g, text in blocks.items():
            doc = replace_block(doc, g, text)
        gates.write_text(doc)
    return "\n".join(blocks[g] for g in blocks)


# --------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.gates_report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(GROUPS),
                   help="comma-separated groups: adding, copy, mnist1d (default: all)")
    p.add_argument("--runs-dir", default=str(REPO / "runs" / "gates"))
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    p.add_argument("--platform", default=None,
                   help="JAX_PLATFORMS for the runs (cpu, cuda); cpu with --jobs > 1 pins "
                        "each run to one thread")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the sweep's)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps (quick looks)")
    p.add_argument("--lengths", default=None, help="comma-separated T (quick looks)")
    p.add_argument("--cells", default=None, help="comma-separated cells / MNIST-1D models")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds: start no run after it, stop unfinished runs at it")
    p.add_argument("--parallel", action="store_true",
                   help="min_gru with the parallel scan (for GPUs)")
    p.add_argument("--report-only", action="store_true", help="no training: tables and figures")
    p.add_argument("--docs", default=str(DOCS), help="where the tables and figures go")
    p.add_argument("--ledger", default=str(LEDGER),
                   help="the committed folder of finished runs ('' for none)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir).resolve()
    if args.one:
        spec = RunSpec(**json.loads(args.one))
        # stopped at the time limit: the sitting's time is recorded
        signal.signal(signal.SIGTERM, _stop_sitting)
        run_one(spec, runs_dir / spec.group / spec.name)
        return 0
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    lengths = [int(t) for t in args.lengths.split(",")] if args.lengths else None
    cells = [c.strip() for c in args.cells.split(",")] if args.cells else None
    specs = sweep(groups, seeds, args.steps, lengths, cells, args.parallel)
    ledger = Path(args.ledger).resolve() if args.ledger else None
    if not args.report_only:
        run_all(specs, runs_dir, args.jobs, args.platform, args.time_limit,
                more_seeds=args.seeds is None, ledger=ledger)
    print(write_report(specs, runs_dir, Path(args.docs), ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
