"""The results table, from fresh runs: trains every row of the README's results table with the
command beside it, for several seeds, scores the selected and the final checkpoint, and writes
the table (README.md, docs/results.md) and a JSON of every run (docs/results_runs/).

    python -m experiments.results                        # train what is missing, then report
    python -m experiments.results --only digits,connected --time-limit 3600   # one sitting
    python -m experiments.results --report-only          # the tables from the recorded runs
    python -m experiments.results --list                 # the rows, their seeds and cost

A run is one (row, seed): ``jaxrnn train CONFIG --set seed=S`` with the row's overrides, in
``runs/results/<row>/s<S>/``. When it has trained, its selected checkpoint (``best``: the best
dev evaluation by the config's ``train.best_metric``; see docs/results.md for which metric each
config selects on and why) and its final one (``latest``) are scored on the row's splits, and
the run is recorded in ``docs/results_runs/<row>/s<S>.json`` (committed; ``runs/`` is not) with
its code version (:func:`experiments.runs.code_version`: the library, the experiment's modules
and the resolved config), the machine, the wall time of its training sittings and every metric.

Resumable: a run recorded for the current code version is not run again; one recorded for an
older version is run again from scratch; an interrupted one (``--time-limit``, Ctrl-C, a
crash, a killed machine) resumes from its newest checkpoint to the same result. Rows whose
config asks for an accelerator the machine lacks are reported from their last record, with
when and on what they were measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from experiments import runs

REPO = runs.REPO
DOCS = REPO / "docs"
LEDGER = DOCS / "results_runs"
RUNS = REPO / "runs" / "results"
README = REPO / "README.md"


@dataclass(frozen=True)
class Metric:
    """One figure of a row: ``key`` of the ``split`` evaluation, times ``scale``."""
    label: str
    split: str
    key: str
    scale: float = 1.0
    digits: int = 2
    unit: str = ""

    def value(self, scores: dict) -> Optional[float]:
        v = scores.get(self.split, {}).get(self.key)
        return None if v is None else float(v) * self.scale


@dataclass(frozen=True)
class Row:
    key: str
    task: str
    model: str
    config: str
    metrics: tuple
    overrides: tuple = ()
    seeds: tuple = (0, 1, 2)
    minutes: float = 10.0          # rough training minutes of one run on the 2-core CPU
    ensemble: bool = False         # tagging: also score the ensemble of the seeds (dev)
    rotations: tuple = ()          # FSDD speakers: one model per held-out speaker, averaged
    accelerator: bool = False      # too slow for the CPU: reported from its record
    previous: str = ""             # what the README said before this table was regenerated

    @property
    def splits(self) -> tuple:
        return tuple(dict.fromkeys(m.split for m in self.metrics))

    def command(self, seed: Optional[int] = None) -> str:
        sets = "".join(f" --set {o}" for o in self.overrides)
        s = "S" if seed is None else str(seed)
        if self.rotations:
            return (f"python -m experiments.digits rotations --config {self.config} "
                    f"--workdir runs/{self.key}_s{s} --set seed={s}{sets}")
        return f"jaxrnn train {self.config} --set seed={s}{sets}"


SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")

ROWS = (
    Row("charlm", "char LM, Tiny Shakespeare, dev nats/char (small GPT 1.47)",
        "2x256 LSTM, `charlm.yaml` (the default job)", "configs/charlm.yaml",
        (Metric("dev nats/char", "dev", "loss", digits=3),), minutes=18,
        previous="1.609 (one run, older code)"),
    Row("charlm_gpu", "same, GPU", "3x512 LSTM, `charlm_gpu.yaml`", "configs/charlm_gpu.yaml",
        (Metric("dev nats/char", "dev", "loss", digits=3),), seeds=(0,), accelerator=True,
        previous="1.396 (one run, 1x H100, 104 s of training, measured 2026-11)"),
    Row("cws", "word segmentation, UD Chinese GSD dev F1 (96.9, Ma et al. 2018)",
        "char+bigram BiLSTM-CRF, lexicon bits, joint BMES x POS tags, `cws.yaml`",
        "configs/cws.yaml", (Metric("dev word F1", "dev", "f1"),), minutes=7,
        ensemble=True, previous="94.68 / 94.79 / 94.61 (seeds 0-2, older code); ensemble 95.04"),
    Row("cws_seg", "same, segmentation-only tags", "`cws.yaml`, BMES tags",
        "configs/cws.yaml", (Metric("dev word F1", "dev", "f1"),),
        overrides=("data.pos=none", "train.steps=700"), minutes=5,
        previous="93.84 (one run, older code)"),
    Row("pos", "POS (UPOS), UD English EWT dev accuracy (95-96)",
        "word+char BiLSTM-CRF, `pos.yaml`", "configs/pos.yaml",
        (Metric("dev accuracy", "dev", "accuracy"),), minutes=37, ensemble=True,
        previous="95.20 / 95.26 / 95.33 (seeds 0-2, older code); ensemble 95.52"),
    Row("ner_wnut17", "NER, WNUT-17 dev entity F1 (41.9 test)",
        "word + char BiLSTM-CRF, `ner_wnut17.yaml`", "configs/ner_wnut17.yaml",
        (Metric("dev entity F1", "dev", "f1"),), minutes=9,
        previous="29.01 (one run, older code)"),
    Row("ner_weibo", "NER, Weibo dev entity F1 (58.8)",
        "char BiLSTM-CRF with lexicon bits, `ner_weibo.yaml`", "configs/ner_weibo.yaml",
        (Metric("dev entity F1", "dev", "f1"),), minutes=4, ensemble=True,
        previous="48.16 / 47.81 (seeds 0-1, older code); ensemble 48.87"),
    Row("ner_weibo_nobits", "same, without the lexicon bits", "`ner_weibo.yaml`",
        "configs/ner_weibo.yaml", (Metric("dev entity F1", "dev", "f1"),),
        overrides=("model.lexicon_max_len=0",), minutes=4,
        previous="45.31 / 45.85 (seeds 0-1, older code)"),
    Row("translate", "en->zh translation, Tatoeba test BLEU (sacrebleu zh)",
        "bi-LSTM encoder, LSTM decoder, additive attention, `translate.yaml`",
        "configs/translate.yaml", (Metric("beam BLEU", "test", "bleu_beam", digits=2),
                                   Metric("greedy BLEU", "test", "bleu", digits=2)),
        minutes=22, previous="greedy 14.45, beam 15.53 (one run, older code)"),
    Row("translate_noattn", "same, no attention", "`translate_noattn.yaml`",
        "configs/translate_noattn.yaml", (Metric("beam BLEU", "test", "bleu_beam", digits=2),
                                          Metric("greedy BLEU", "test", "bleu", digits=2)),
        minutes=21, previous="greedy 8.13, beam 8.66 (one run, older code)"),
    Row("digits", "spoken digits, FSDD official split, test accuracy",
        "2x96 BiGRU, `digits.yaml`", "configs/digits.yaml",
        (Metric("test accuracy", "test", "accuracy", 100.0, 1, "%"),), minutes=6,
        previous="98.0% final checkpoint, 96.3% best-dev (one run, older code)"),
    Row("connected", "connected digits (2-7), CTC, test digit error rate",
        "2x96 BiGRU + CTC, `connected.yaml`", "configs/connected.yaml",
        (Metric("test DER", "test", "der", 100.0, 2, "%"),
         Metric("beam DER", "test", "der_beam", 100.0, 2, "%")), minutes=7,
        previous="0.89% greedy and beam (one run, older code)"),
    Row("digits_speaker", "spoken digits, speaker held out (6 rotations)",
        "2x64 BiGRU, 300 steps each, `digits_speaker.yaml`", "configs/digits_speaker.yaml",
        (Metric("mean held-out accuracy", "test", "accuracy", 100.0, 1, "%"),), minutes=12,
        rotations=SPEAKERS, previous="70.6% mean (one run, older code)"),
)
BY_KEY = {r.key: r for r in ROWS}
# claimed comparisons the docs discuss: (name, row a, metric label a, row b, metric label b)
COMPARISONS = (
    ("attention vs none (beam BLEU)", "translate", "beam BLEU", "translate_noattn", "beam BLEU"),
    ("beam vs greedy (with attention)", "translate", "beam BLEU", "translate", "greedy BLEU"),
    ("beam vs greedy (no attention)", "translate_noattn", "beam BLEU", "translate_noattn",
     "greedy BLEU"),
    ("lexicon bits vs none (Weibo)", "ner_weibo", "dev entity F1", "ner_weibo_nobits",
     "dev entity F1"),
    ("joint POS tags vs segmentation only (CWS)", "cws", "dev word F1", "cws_seg",
     "dev word F1"),
    ("greedy vs beam DER (connected)", "connected", "test DER", "connected", "beam DER"),
)


# --------------------------------------------------------------------------- one run

def _config_of(row: Row, seed: int, workdir: Optional[Path] = None, speaker: str = ""):
    from jaxrnn.train import load_config
    ov = [*row.overrides, f"seed={seed}", "train.progress=false"]
    if speaker:
        ov += ["data.split=speaker", f"data.test_speaker={speaker}"]
    return load_config(str(REPO / row.config), ov, workdir)


def version(row: Row, seed: int = 0) -> str:
    """The code version of ``row``'s runs (the same for every seed)."""
    from jaxrnn.train import config as config_lib
    cfg = _config_of(row, seed)
    d = config_lib.to_dict(config_lib.relativize_paths(cfg))
    d.pop("data_root", None)
    d.pop("seed", None)
    return runs.code_version(cfg.experiment, d, [f"rotations={','.join(row.rotations)}"])


def ledger_file(ledger: Path, row: Row, seed) -> Path:
    return ledger / row.key / (f"s{seed}.json" if isinstance(seed, int) else f"{seed}.json")


def recorded(ledger: Path, row: Row, seed, ver: Optional[str] = None) -> Optional[dict]:
    """The ledger's entry of (``row``, ``seed``), or None; with ``ver``, only one of that code
    version."""
    path = ledger_file(ledger, row, seed)
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    return entry if ver is None or entry.get("version") == ver else None


# the sitting in progress (workdir, start time, first step), for the SIGTERM handler
_SITTING: list = []


def _stop_sitting(signum, frame) -> None:
    """SIGTERM (the time limit): records the sitting's wall time and exits at once; the run
    resumes from its newest checkpoint next time."""
    if _SITTING:
        workdir, t0, first = _SITTING
        _SITTING.clear()
        runs.add_sitting(workdir, time.perf_counter() - t0, (first, runs.latest_step(workdir)))
    os._exit(128 + signum)


def _fresh_workdir(workdir: Path, ver: str) -> None:
    """A workdir trained by another code version is removed (its runs measured other code)."""
    stamp = workdir / "version.json"
    if workdir.exists() and (not stamp.is_file()
                             or json.loads(stamp.read_text()).get("version") != ver):
        shutil.rmtree(workdir)
    if not stamp.is_file():
        runs.write_json(stamp, {"version": ver})


def _train_and_score(cfg, workdir: Path, splits) -> dict:
    """Trains ``cfg`` in ``workdir`` (resuming), then scores its best and latest checkpoints."""
    from jaxrnn.train import load_params, prepare, train_and_evaluate
    first = runs.latest_step(workdir)
    t0 = time.perf_counter()
    _SITTING[:] = [workdir, t0, first]
    try:
        train_and_evaluate(cfg, workdir)
    finally:
        if _SITTING:
            _SITTING.clear()
            runs.add_sitting(workdir, time.perf_counter() - t0,
                             (first, runs.latest_step(workdir)))
    seconds, sittings = runs.sittings_seconds(workdir)
    t1 = time.perf_counter()
    run = prepare(cfg)
    out = {"budget": cfg.train.steps, "train_seconds": seconds, "sittings": sittings,
           "selected_on": f"dev {cfg.train.best_metric} ({cfg.train.best_mode})"}
    for which in ("best", "latest"):
        params, step = load_params(run, workdir, which)
        out[which] = {"step": step, **{s: run.task.evaluate(params, s) for s in splits}}
    out["steps_taken"] = out["latest"]["step"]
    out["score_seconds"] = time.perf_counter() - t1
    return out


def run_one(row: Row, seed: int, runs_dir: Path, ledger: Path) -> dict:
    """Trains and scores (``row``, ``seed``) and records it in the ledger."""
    ver = version(row, seed)
    workdir = runs_dir / row.key / f"s{seed}"
    _fresh_workdir(workdir, ver)
    entry = {"row": row.key, "seed": seed, "version": ver, "command": row.command(seed),
             "config": row.config, "overrides": list(row.overrides),
             "machine": runs.machine(), "date": time.strftime("%Y-%m-%d")}
    if row.rotations:
        per = {}
        for spk in row.rotations:
            wd = workdir / spk
            wd.mkdir(parents=True, exist_ok=True)
            per[spk] = _train_and_score(_config_of(row, seed, wd, spk), wd, row.splits)
        entry["speakers"] = per
        for which in ("best", "latest"):
            entry[which] = {s: {k: float(np.mean([per[p][which][s][k] for p in per]))
                                for k in ("accuracy", "loss")} for s in row.splits}
        entry["train_seconds"] = sum(p["train_seconds"] for p in per.values())
        entry["selected_on"] = next(iter(per.values()))["selected_on"]
    else:
        entry.update(_train_and_score(_config_of(row, seed, workdir), workdir, row.splits))
    runs.write_json(ledger_file(ledger, row, seed), entry)
    return entry


def run_ensemble(row: Row, runs_dir: Path, ledger: Path) -> Optional[dict]:
    """The dev score of the ensemble of ``row``'s seeds (their selected checkpoints), recorded
    as ``ensemble.json``; None until every seed is recorded for the current version."""
    from jaxrnn.train import load_experiment, load_params, prepare
    ver = version(row)
    if any(recorded(ledger, row, s, ver) is None for s in row.seeds):
        return None
    members = []
    for s in row.seeds:
        wd = runs_dir / row.key / f"s{s}"
        if not (wd / "checkpoints").is_dir():
            return None            # recorded on another machine: its checkpoints are not here
        run = prepare(_config_of(row, s, wd))
        members.append((run.task, load_params(run, wd, "best")[0]))
    exp = load_experiment(run.cfg.experiment)
    dev = exp.evaluate_ensemble(members, None)
    entry = {"row": row.key, "seeds": list(row.seeds), "version": ver, "dev": dev,
             "machine": runs.machine(), "date": time.strftime("%Y-%m-%d"),
             "command": f"jaxrnn evaluate --workdir runs/results/{row.key}/s{row.seeds[0]} "
                        f"--ensemble " + " ".join(f"runs/results/{row.key}/s{s}"
                                                  for s in row.seeds[1:])}
    runs.write_json(ledger_file(ledger, row, "ensemble"), entry)
    return entry


# --------------------------------------------------------------------------- the sweep

def can_run(row: Row) -> bool:
    """Whether this machine runs ``row``: rows made for an accelerator need one."""
    if not row.accelerator:
        return True
    import jax
    return jax.default_backend() != "cpu"


def todo(rows, seeds, ledger: Path) -> list[tuple[Row, int]]:
    """The (row, seed) runs without a record of the current code version: the cheapest row
    first, each row's seeds together (a row with all its seeds is a row with a spread)."""
    out = []
    for row in rows:
        if not can_run(row):
            continue
        ver = version(row)
        for s in (seeds or row.seeds):
            if recorded(ledger, row, s, ver) is None:
                out.append((row, s))
    return sorted(out, key=lambda rs: (rs[0].minutes, rs[0].key, rs[1]))


def run_all(rows, seeds, runs_dir: Path, ledger: Path, jobs: int = 1,
            time_limit: Optional[float] = None) -> int:
    """Trains the missing runs, ``jobs`` at a time, each in its own process (``--one``); with
    ``time_limit`` (seconds) no run starts after it and running ones are stopped at it (they
    resume next time). Then scores the ensembles whose seeds are all recorded. Returns the
    number of failed runs."""
    env = runs.child_env(None, jobs)
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    queue = todo(rows, seeds, ledger)
    print(f"{len(queue)} run(s) to train with {jobs} job(s): "
          + ", ".join(f"{r.key}/s{s}" for r, s in queue), flush=True)
    running, failed = [], []

    def stamp():
        return f"[{time.perf_counter() - t0:7.1f}s]"

    while queue or running:
        while queue and len(running) < jobs and (deadline is None
                                                 or time.perf_counter() < deadline):
            row, s = queue.pop(0)
            wd = runs_dir / row.key / f"s{s}"
            wd.mkdir(parents=True, exist_ok=True)
            log = open(wd.parent / f"s{s}.log", "a")
            proc = subprocess.Popen(
                [sys.executable, "-m", "experiments.results", "--one", f"{row.key}:{s}",
                 "--runs-dir", str(runs_dir), "--ledger", str(ledger)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((row, s, proc, log))
            print(f"{stamp()} start {row.key}/s{s}", flush=True)
        if not running:
            break
        time.sleep(1.0)
        if deadline is not None and time.perf_counter() > deadline:
            runs.stop_children([(f"{row.key}/s{s}", proc, log)
                                for row, s, proc, log in running],
                               lambda m: print(f"{stamp()} {m}", flush=True))
            running = []
            break
        for item in list(running):
            row, s, proc, log = item
            rc = proc.poll()
            if rc is None:
                continue
            log.close()
            running.remove(item)
            if rc != 0:
                failed.append((row, s))
            print(f"{stamp()} {row.key}/s{s}: " + ("ok" if rc == 0 else
                  f"FAILED (rc {rc}, see {runs_dir / row.key}/s{s}.log)"), flush=True)
    if deadline is None or time.perf_counter() < deadline:
        for row in rows:
            if row.ensemble and can_run(row) and recorded(ledger, row, "ensemble",
                                                           version(row)) is None:
                if run_ensemble(row, runs_dir, ledger) is not None:
                    print(f"{stamp()} {row.key}: ensemble of seeds "
                          f"{', '.join(map(str, row.seeds))} scored", flush=True)
    left = len(todo(rows, seeds, ledger))
    if failed or left:
        print(f"{len(failed)} run(s) failed, {left} not recorded (rerun to continue)", flush=True)
    return len(failed)


# --------------------------------------------------------------------------- the report

def spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt_spread(values, digits: int, unit: str = "") -> str:
    m, sd = spread(values)
    if len(values) == 1:
        return f"{m:.{digits}f}{unit} (1 run)"
    return f"{m:.{digits}f} ± {sd:.{digits}f}{unit} ({len(values)} runs)"


def row_runs(row: Row, ledger: Path, current: Optional[str]) -> list[dict]:
    """The recorded runs of ``row``: those of version ``current`` if there are any, else the
    newest version's (an accelerator row, or a row not yet rerun)."""
    entries = [e for s in row.seeds if (e := recorded(ledger, row, s)) is not None]
    now = [e for e in entries if e["version"] == current]
    if now or not entries:
        return now
    newest = max(entries, key=lambda e: e["date"])["version"]
    return [e for e in entries if e["version"] == newest]


def summarize(row: Row, ledger: Path, current: Optional[str]) -> dict:
    entries = row_runs(row, ledger, current)
    out = {"row": row.key, "runs": entries, "current": bool(entries) and
           entries[0]["version"] == current, "metrics": {}}
    for m in row.metrics:
        for which in ("best", "latest"):
            vals = [v for e in entries if (v := m.value(e[which])) is not None]
            if vals:
                out["metrics"][(m.label, which)] = vals
    ens = recorded(ledger, row, "ensemble")
    if ens is not None and (ens["version"] == current or not out["current"]):
        out["ensemble"] = ens
    return out


def result_text(row: Row, s: dict) -> str:
    if not s["runs"]:
        return f"not rerun yet; before: {row.previous}" if row.previous else "not run yet"
    parts = []
    for i, m in enumerate(row.metrics):
        best = s["metrics"].get((m.label, "best"))
        last = s["metrics"].get((m.label, "latest"))
        if not best:
            continue
        text = f"{m.label} " + (f"**{fmt_spread(best, m.digits, m.unit)}**" if i == 0
                                else fmt_spread(best, m.digits, m.unit))
        if last and not np.allclose(last, best):
            text += f"; final checkpoint {fmt_spread(last, m.digits, m.unit)}"
        elif last:
            text += " (final checkpoint the same)"
        parts.append(text)
    if "ensemble" in s:
        m = row.metrics[0]
        v = m.value({m.split: s["ensemble"]["dev"]})
        if v is not None:
            parts.append(f"ensemble of seeds {', '.join(map(str, s['ensemble']['seeds']))} "
                         f"{v:.{m.digits}f}{m.unit}")
    if not s["current"]:
        parts.append(f"measured {s['runs'][0]['date']} on {runs.machine_label(s['runs'][0]['machine'])}, "
                     f"code {s['runs'][0]['version']} (not this version)")
    return "; ".join(parts)


def time_text(s: dict) -> str:
    if not s["runs"]:
        return ""
    mins = [e["train_seconds"] / 60 for e in s["runs"]]
    m = runs.machine_label(s["runs"][0]["machine"])
    return f"{np.mean(mins):.1f} min a run, {m}"


def results_table(rows, ledger: Path, versions: dict) -> tuple[str, dict]:
    lines = ["| task (reference) | model, config | result: mean ± sd over seeds, selected "
             "checkpoint (final beside) | training time | command |", "|---|---|---|---|---|"]
    summaries = {}
    for row in rows:
        s = summaries[row.key] = summarize(row, ledger, versions.get(row.key))
        lines.append(f"| {row.task} | {row.model} | {result_text(row, s)} | {time_text(s)} | "
                     f"`{row.command()}` |")
    return "\n".join(lines), summaries


def comparisons_table(summaries: dict) -> str:
    """Each claimed comparison with its difference of means and whether it is within the seed
    spread (|difference| <= sd_a + sd_b, the sample standard deviations of the two)."""
    lines = ["| comparison | a | b | a - b | within the seed spread? |", "|---|---|---|---|---|"]
    n = 0
    for name, ra, la, rb, lb in COMPARISONS:
        a = summaries.get(ra, {}).get("metrics", {}).get((la, "best"))
        b = summaries.get(rb, {}).get("metrics", {}).get((lb, "best"))
        if not a or not b:
            continue
        (ma, sa), (mb, sb) = spread(a), spread(b)
        if len(a) < 2 or len(b) < 2:
            verdict = "cannot tell (fewer than 2 seeds)"
        else:
            verdict = "**yes**" if abs(ma - mb) <= sa + sb else "no"
        lines.append(f"| {name} | {ma:.2f} ± {sa:.2f} | {mb:.2f} ± {sb:.2f} | {ma - mb:+.2f} | "
                     f"{verdict} |")
        n += 1
    return "\n".join(lines) if n else "(no comparison has both sides measured yet)"


def runs_table(rows, summaries: dict) -> str:
    lines = ["| row | seed | code | machine | date | steps (budget) | selected step | "
             "selected on | selected | final | training |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for e in summaries[row.key]["runs"]:
            m = row.metrics[0]
            best, last = m.value(e["best"]), m.value(e["latest"])
            steps = (f"{e.get('steps_taken', '')} ({e.get('budget', '')})"
                     if "budget" in e else "6 rotations")
            lines.append(
                f"| {row.key} | {e['seed']} | {e['version']} | "
                f"{runs.machine_label(e['machine'])} | {e['date']} | {steps} | "
                f"{e['best'].get('step', '')} | {e.get('selected_on', '')} | "
                f"{best:.{m.digits}f} | {last:.{m.digits}f} | {e['train_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def write_report(rows=ROWS, ledger: Path = LEDGER, docs: Path = DOCS,
                 readme: Optional[Path] = README) -> str:
    """The tables from the ledger: the results table into README.md and docs/results.md, the
    comparisons and every run into docs/results.md (between their markers)."""
    versions = {r.key: version(r) for r in rows}
    table, summaries = results_table(rows, ledger, versions)
    blocks = {"table": table, "comparisons": comparisons_table(summaries),
              "runs": runs_table(rows, summaries)}
    for path in ([docs / "results.md"] + ([readme] if readme is not None else [])):
        if path.is_file():
            doc = path.read_text()
            for name, text in blocks.items():
                doc = runs.replace_block(doc, name, text)
            path.write_text(doc)
    runs.write_json(docs / "results.json", {
        "rows": {k: {"current": s["current"], "runs": s["runs"],
                     **({"ensemble": s["ensemble"]} if "ensemble" in s else {})}
                 for k, s in summaries.items()}})
    return "\n\n".join(blocks.values())


# --------------------------------------------------------------------------- CLI

def _rows(only: Optional[str]) -> list[Row]:
    if not only:
        return list(ROWS)
    keys = [k.strip() for k in only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        raise SystemExit(f"--only: unknown row(s) {', '.join(unknown)}; the rows are "
                         f"{', '.join(BY_KEY)}")
    return [BY_KEY[k] for k in keys]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.results",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="comma-separated rows (default: all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: each row's)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds: start no run after it, stop unfinished runs at it")
    p.add_argument("--runs-dir", default=str(RUNS))
    p.add_argument("--ledger", default=str(LEDGER), help="the committed folder of recorded runs")
    p.add_argument("--docs", default=str(DOCS))
    p.add_argument("--readme", default=str(README), help="'' to leave README.md alone")
    p.add_argument("--report-only", action="store_true", help="no training: the tables")
    p.add_argument("--list", action="store_true", help="the rows, seeds and cost; no training")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.time_limit is not None and not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        p.error(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    runs_dir, ledger = Path(args.runs_dir).resolve(), Path(args.ledger).resolve()
    if args.one:
        key, seed = args.one.split(":")
        signal.signal(signal.SIGTERM, _stop_sitting)
        run_one(BY_KEY[key], int(seed), runs_dir, ledger)
        return 0
    rows = _rows(args.only)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if args.list:
        for r in rows:
            print(f"{r.key:18s} seeds {','.join(map(str, seeds or r.seeds)):8s} "
                  f"~{r.minutes:g} min a run{'  (accelerator)' if r.accelerator else ''}  "
                  f"{r.command()}")
        return 0
    failed = 0
    if not args.report_only:
        failed = run_all(rows, seeds, runs_dir, ledger, args.jobs, args.time_limit)
    print(write_report(rows, ledger, Path(args.docs), Path(args.readme) if args.readme else None))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
