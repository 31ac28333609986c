"""Why gates matter: runs the whole sweep and regenerates the tables and figures of docs/gates.md.

    python -m experiments.gates_report                      # train what is missing, then report
    python -m experiments.gates_report --jobs 13 --platform cpu --only adding,copy
    python -m experiments.gates_report --report-only        # tables and figures from finished runs

The sweep (every run is the ``jaxrnn train`` runner on a config of ``configs/`` with ``--set``
overrides, kept in each run's ``config.yaml`` and ``spec.json``):

- ``adding`` (``configs/adding.yaml``), T = 50, 100, 200, 400, 600, and ``copy``
  (``configs/copy.yaml``), T = 100, 200, 500, 1000: simple_rnn (tanh), lstm, lstm_peephole,
  lstm_coupled (CIFG), gru, min_gru, min_lstm, 500 steps of batch 32 each; hidden sizes chosen
  so every model has about the recurrent parameters of a 64-unit LSTM (one layer; two for
  min_gru / min_lstm, whose single layer has no recurrent weights at all); seeds 0 and 1 up
  to T = 200, seed 0 beyond (the compute budget);
- ``adding_long``: adding at T = 100 with 3000 steps for simple_rnn, lstm and gru;
- ``mnist1d`` (``configs/mnist1d.yaml``): simple_rnn, lstm, gru, bidirectional lstm and gru,
  a 2-layer bidirectional gru, seeds 0, 1, 2.

Each run's workdir (``runs/gates/<group>/<run>/``) gets, besides the runner's files,
``result.json`` (dev and test metrics of the best dev checkpoint, parameter count, wall time)
and, for the synthetic tasks, ``gradient_flow.json`` / ``gradient_flow.png``: the mean over 32
test sequences of ||dL/dh_t|| against t for the untrained (initial) and trained parameters
(:func:`jaxrnn.analysis.gradient_norms`). A run with a ``result.json`` is not run again; an
interrupted one resumes from its last checkpoint.

The report: each group's table between its ``<!-- results:GROUP:begin/end -->`` markers in
``docs/gates.md`` (groups without results are left as they are), and the figures
``docs/gates_loss_vs_T.png`` and ``docs/gates_gradient_flow.png``.
"""

from __future__ import annotations

import argparse
import functools
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

ADDING_T = (50, 100, 200, 400, 600)
COPY_T = (100, 200, 500, 1000)
LONGDEP_CELLS = ("simple_rnn", "lstm", "lstm_peephole", "lstm_coupled", "gru", "min_gru",
                 "min_lstm")
# seeds per length: the compute budget (see docs/gates.md) allowed two seeds up to T = 200
# and one beyond
LONGDEP_SEEDS = (0, 1)
LONG_T, LONG_T_SEEDS = 200, (0,)
# layers per cell; min_gru / min_lstm have no recurrent weights, so one layer of them is only a
# gated running average of the input: two layers, as Feng et al. 2024 stack them
LAYERS = {"min_gru": 2, "min_lstm": 2}
# the reference: the recurrent parameters of a 64-unit LSTM on the task's input
REFERENCE = ("lstm", 64, 1)

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

# a longer budget for one length: does the ordering change when the cells get 6x the steps?
LONGER = {"T": 100, "steps": 3000, "cells": ("simple_rnn", "lstm", "gru"), "seeds": (0,)}

GROUPS = ("adding", "copy", "adding_long", "mnist1d")
INPUT_SIZE = {"adding": 2, "copy": 10, "adding_long": 2}
CONFIG = {"adding": "configs/adding.yaml", "copy": "configs/copy.yaml",
          "adding_long": "configs/adding.yaml",
          "mnist1d": "configs/mnist1d.yaml"}
# published reference (Bai, Kolter & Koltun 2018, Table 1; generic recurrent baselines)
BAI_2018 = {"adding": {"T": 600, "lstm": 0.164, "gru": 5.3e-5, "simple_rnn": 0.177},
            "adding_long": {"T": 600, "lstm": 0.164, "gru": 5.3e-5, "simple_rnn": 0.177},
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
        """A rough relative cost, to start the longest runs first."""
        if self.group == "mnist1d":
            return 40.0 * (2 if "model.num_layers=2" in self.overrides else 1)
        steps = next((int(o.split("=")[1]) for o in self.overrides
                      if o.startswith("train.steps=")), 500)
        return float(self.T + (20 if self.group == "copy" else 0)) * steps / 500


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


def sweep(groups=GROUPS, seeds=None, steps: Optional[int] = None, lengths=None,
          cells=None, parallel: bool = False) -> list[RunSpec]:
    """The runs of ``groups``; ``seeds``, ``steps``, ``lengths`` (T) and ``cells`` (long-term
    dependency cells or MNIST-1D model labels) narrow or shorten it for quick looks;
    ``parallel`` trains min_gru / min_lstm with the associative scan (same numbers, faster on
    a GPU, slower on a CPU)."""
    specs = []
    extra = [f"train.steps={steps}"] if steps else []
    for group in groups:
        if group in ("adding", "copy"):
            for T in (lengths or (ADDING_T if group == "adding" else COPY_T)):
                for cell in (cells or LONGDEP_CELLS):
                    if cell not in LONGDEP_CELLS:
                        continue
                    L = LAYERS.get(cell, 1)
                    H = matched_hidden(cell, INPUT_SIZE[group], L)
                    default = LONGDEP_SEEDS if T <= LONG_T else LONG_T_SEEDS
                    for s in (seeds or default):
                        specs.append(RunSpec(group, cell, s, CONFIG[group], [
                            f"data.seq_len={T}", f"model.cell={cell}", f"model.hidden_size={H}",
                            f"model.num_layers={L}", f"model.parallel={str(parallel).lower()}",
                            f"seed={s}",
                            "train.progress=false"] + extra, T=T))
        elif group == "adding_long":
            T = LONGER["T"]
            for cell in (cells or LONGER["cells"]):
                if cell not in LONGER["cells"]:
                    continue
                H = matched_hidden(cell, INPUT_SIZE[group], LAYERS.get(cell, 1))
                for s in (seeds or LONGER["seeds"]):
                    specs.append(RunSpec(group, cell, s, CONFIG[group], [
                        f"data.seq_len={T}", f"model.cell={cell}", f"model.hidden_size={H}",
                        f"model.num_layers={LAYERS.get(cell, 1)}", f"seed={s}",
                        f"train.steps={steps or LONGER['steps']}", "train.progress=false"],
                        T=T))
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


# --------------------------------------------------------------------------- one run

def gradient_flow(cfg, params, n: int = 32) -> dict:
    """Mean over ``n`` test sequences of ||dL/dh_t|| (every layer's h) against t."""
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
                lg = model.head(p, ys)
                return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(lg, yi))
            return analysis.gradient_norms(model.cells, p["rnn"], xs, loss_fn)

    fn = jax.jit(jax.vmap(per_example, in_axes=(None, 0, 0)))
    init = model.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0])  # the runner's init key
    out = {}
    for which, p in (("untrained", init), ("trained", params)):
        norms = np.asarray(fn(p, jnp.asarray(x), jnp.asarray(y)))
        out[which] = np.mean(norms, axis=0).tolist()
    out["t"] = list(range(len(out["trained"])))
    return out


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


def run_one(spec: RunSpec, workdir: Path) -> dict:
    """Trains one run with the runner (resuming if interrupted), scores the best dev
    checkpoint on test, measures gradient flow; writes ``result.json``."""
    from jaxrnn.train import load_config, load_params, prepare, train_and_evaluate
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    cfg = load_config(str(REPO / spec.config), spec.overrides, workdir)
    t0 = time.perf_counter()
    train_and_evaluate(cfg, workdir)
    wall = time.perf_counter() - t0
    run = prepare(cfg)
    params, step = load_params(run, workdir, "best")
    result = {"spec": asdict(spec), "step": step, "train_seconds": wall,
              "params": int(sum(np.prod(np.shape(a)) for a in __import__("jax").tree.leaves(params))),
              "dev": run.task.evaluate(params, "dev"), "test": run.task.evaluate(params, "test")}
    if spec.group in ("adding", "copy", "adding_long"):
        flow = gradient_flow(cfg, params)
        (workdir / "gradient_flow.json").write_text(json.dumps(flow))
        plot_gradient_flow(flow, workdir / "gradient_flow.png",
                           f"{spec.group} T={spec.T}: {spec.label} (seed {spec.seed})")
    result["seconds"] = time.perf_counter() - t0
    tmp = workdir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, workdir / "result.json")
    return result


def child_env(platform: Optional[str], jobs: int) -> dict:
    env = dict(os.environ)
    if platform:
        env["JAX_PLATFORMS"] = platform
    if platform == "cpu" and jobs > 1:
        # one core per run: no intra-op thread pool fighting the other runs
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    if platform in ("cuda", "gpu"):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def run_all(specs, runs_dir: Path, jobs: int, platform: Optional[str],
            time_limit: Optional[float] = None) -> None:
    """Trains the runs without a ``result.json``, longest first, ``jobs`` at a time. With
    ``time_limit`` (seconds) no run starts after it and unfinished runs are stopped at it
    (a later call resumes them from their last checkpoint)."""
    todo = [s for s in specs if not (runs_dir / s.group / s.name / "result.json").is_file()]
    todo.sort(key=lambda s: -s.cost())
    print(f"{len(specs) - len(todo)} of {len(specs)} runs done; running {len(todo)} "
          f"with {jobs} job(s)", flush=True)
    env = child_env(platform, jobs)
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit

    def launch(spec):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        wd = runs_dir / spec.group / spec.name
        wd.mkdir(parents=True, exist_ok=True)
        with open(wd / "log.txt", "a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "experiments.gates_report", "--one",
                                     json.dumps(asdict(spec)), "--runs-dir", str(runs_dir)],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(None if deadline is None
                               else max(deadline - time.perf_counter(), 0.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = "stopped at the time limit"
        print(f"[{time.perf_counter() - t0:7.1f}s] {spec.group}/{spec.name}: "
              + ("ok" if rc == 0 else f"FAILED (rc {rc}, see {wd}/log.txt)"), flush=True)
        return rc

    with cf.ThreadPoolExecutor(max_workers=max(jobs, 1)) as ex:
        rcs = list(ex.map(launch, todo))
    failed = sum(rc not in (0, None) for rc in rcs)
    skipped = sum(rc is None for rc in rcs)
    if failed or skipped:
        print(f"{failed} run(s) failed or stopped, {skipped} not started (time limit)",
              flush=True)


# --------------------------------------------------------------------------- the report

def load_results(specs, runs_dir: Path) -> list[dict]:
    out = []
    for s in specs:
        p = runs_dir / s.group / s.name / "result.json"
        if p.is_file():
            r = json.loads(p.read_text())
            r["workdir"] = str(p.parent)
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
    rows = [r for r in results if r["spec"]["group"] == group]
    Ts = sorted({r["spec"]["T"] for r in rows})
    stats, base, params, secs = {}, {}, {}, 0.0
    for r in rows:
        sp = r["spec"]
        stats.setdefault((sp["label"], sp["T"]), []).append(r["test"]["loss"])
        base[sp["T"]] = r["test"]["baseline"]
        params[sp["label"]] = (r["params"], next(o for o in sp["overrides"]
                                                 if o.startswith("model.hidden_size")).split("=")[1],
                               next(o for o in sp["overrides"]
                                    if o.startswith("model.num_layers")).split("=")[1])
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
            entries.append(f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]")
        lines.append(f"| {cell} | {H} x {L} | {n:,} | " + " | ".join(entries) + " |")
    lines.append("| *memoryless baseline (computed on the test set)* | | | "
                 + " | ".join(_fmt(base[T]) if T in base else "—" for T in Ts) + " |")
    summary = {"stats": stats, "baseline": base, "seconds": secs, "metric": metric,
               "runs": len(rows), "seeds": sorted({r["spec"]["seed"] for r in rows})}
    return "\n".join(lines), summary


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
        if g == "adding" and "adding_long" in summaries:
            for (cell, T), v in sorted(summaries["adding_long"]["stats"].items()):
                ax.plot([T], [np.mean(v)], "*", markersize=12,
                        color=f"C{LONGDEP_CELLS.index(cell)}",
                        label=f"{cell}, {LONGER['steps']} steps")
        bt = sorted(s["baseline"])
        ax.plot(bt, [s["baseline"][T] for T in bt], "k--", label="memoryless baseline")
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


def figure_gradient_flow(results, path: Path,
                         picks=(("adding", 200), ("adding", 600), ("adding_long", 100))) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    flows = {}
    for r in results:
        sp = r["spec"]
        if (sp["group"], sp["T"]) in picks and sp["seed"] == 0:
            p = Path(r["workdir"]) / "gradient_flow.json"
            if p.is_file():
                flows[(sp["group"], sp["T"], sp["label"])] = json.loads(p.read_text())
    if not flows:
        return False
    picks = [p for p in picks if any(k[:2] == p for k in flows)]
    fig, axes = plt.subplots(len(picks), 2, figsize=(11, 3.8 * len(picks)), dpi=100,
                             squeeze=False)
    for row, (g, T) in zip(axes, picks):
        for ax, which in zip(row, ("untrained", "trained")):
            for cell in LONGDEP_CELLS:
                f = flows.get((g, T, cell))
                if f is None:
                    continue
                ax.semilogy(f["t"], _visible(f[which]), label=cell,
                            color=f"C{LONGDEP_CELLS.index(cell)}")
            steps = LONGER["steps"] if g == "adding_long" else 500
            ax.set_title(f"adding, T={T}, {which}" + (f" ({steps} steps)" if which == "trained"
                                                        else ""))
            ax.set_xlabel("t")
            ax.set_ylabel("mean ||dL/dh_t||")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def group_block(results, g: str) -> tuple[str, dict]:
    """The markdown (caption + table) of one group and its summary."""
    if g in ("adding", "copy", "adding_long"):
        table, summary = longdep_table(results, g)
        ref = BAI_2018[g]
        name = {"adding": "Adding problem", "copy": "Copy memory",
                "adding_long": f"Adding problem, {LONGER['steps']} steps"}[g]
        per_T = {}
        for (cell, T), v in summary["stats"].items():
            per_T[T] = max(per_T.get(T, 0), len(v))
        seeds = ", ".join(f"{n} at T={T}" for T, n in sorted(per_T.items()))
        return (f"**{name}**: test {summary['metric']} of the best dev checkpoint, mean "
                f"[min, max] over seeds (seeds per cell: {seeds}) "
                f"({summary['runs']} runs, {summary['seconds'] / 60:.0f} minutes of training "
                f"in all). Bai et al. 2018 at T={ref['T']}: LSTM {ref['lstm']}, GRU "
                f"{ref['gru']}, RNN {ref['simple_rnn']}.\n\n{table}\n"), summary
    table, summary = mnist_table(results)
    return (f"**MNIST-1D**: test accuracy of the best dev checkpoint "
            f"({summary['runs']} runs, {summary['seconds'] / 60:.0f} minutes of training in "
            f"all). Greydanus 2020: logistic regression 32%, MLP 68%, CNN 94%, GRU 91%."
            f"\n\n{table}\n"), summary


def replace_block(doc: str, name: str, text: str) -> str:
    """Replaces the text between ``<!-- results:NAME:begin -->`` and ``...:end -->``."""
    a, b = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    if a not in doc or b not in doc:
        return doc
    pre, rest = doc.split(a, 1)
    _, post = rest.split(b, 1)
    return pre + a + "\n" + text + "\n" + b + post


def write_report(specs, runs_dir: Path, docs: Path = DOCS) -> str:
    """Tables of the groups in ``specs`` that have results (written into ``docs/gates.md``
    between their markers, groups without results left as they are) and the figures."""
    results = load_results(specs, runs_dir)
    done = {r["spec"]["group"] for r in results}
    groups = [g for g in GROUPS if g in {s.group for s in specs} and g in done]
    blocks, summaries = {}, {}
    for g in groups:
        blocks[g], summaries[g] = group_block(results, g)
    docs.mkdir(parents=True, exist_ok=True)
    if any(g in summaries for g in ("adding", "copy")):
        figure_loss_vs_T(summaries, docs / "gates_loss_vs_T.png")
        figure_gradient_flow(results, docs / "gates_gradient_flow.png")
    gates = docs / "gates.md"
    if gates.is_file():
        doc = gates.read_text()
        for g, text in blocks.items():
            doc = replace_block(doc, g, text)
        gates.write_text(doc)
    return "\n".join(blocks[g] for g in groups)


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
                   help="min_gru / min_lstm with the parallel scan (for GPUs)")
    p.add_argument("--report-only", action="store_true", help="no training: tables and figures")
    p.add_argument("--docs", default=str(DOCS), help="where the tables and figures go")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir).resolve()
    if args.one:
        spec = RunSpec(**json.loads(args.one))
        run_one(spec, runs_dir / spec.group / spec.name)
        return 0
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    lengths = [int(t) for t in args.lengths.split(",")] if args.lengths else None
    cells = [c.strip() for c in args.cells.split(",")] if args.cells else None
    specs = sweep(groups, seeds, args.steps, lengths, cells, args.parallel)
    if not args.report_only:
        run_all(specs, runs_dir, args.jobs, args.platform, args.time_limit)
    print(write_report(specs, runs_dir, Path(args.docs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
