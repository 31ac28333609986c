"""The runner end to end on the tiny char-LM config: smoke, exact resume after SIGKILL,
non-finite loss, several devices and two processes giving the single-device loss curve."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn.train import (NonFiniteLossError, load_config, prepare, read_metrics,
                          train_and_evaluate)
from jaxrnn.train.checkpoint import Checkpoints

ROOT = Path(__file__).resolve().parents[1]
# dropout on (the RNG path is tested), a checkpoint every 3 steps (many kill points)
SETS = ["train.steps=24", "train.checkpoint_every=3", "train.eval_every=12",
        "train.log_every=2", "model.dropout=0.2"]


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["CI"] = "true"
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _cli(workdir, sets=SETS, env=None):
    return [sys.executable, "-m", "jaxrnn.cli", "train", "charlm_tiny", "--workdir", str(workdir),
            *[a for s in sets for a in ("--set", s)]]


def _final_state(workdir, cfg):
    run = prepare(cfg)
    ck = Checkpoints(workdir)
    try:
        state = ck.restore(ck.latest_step(), run.abstract_state)
    finally:
        ck.close()
    return jax.tree.map(np.asarray, state)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-device run (in this process)."""
    wd = tmp_path_factory.mktemp("ref")
    cfg = load_config("charlm_tiny", SETS)
    last = train_and_evaluate(cfg, wd)
    return wd, cfg, last


def test_smoke_metrics_checkpoints_plots(reference):
    wd, cfg, last = reference
    recs = read_metrics(wd)
    train = [r for r in recs if r["split"] == "train"]
    dev = [r for r in recs if r["split"] == "dev"]
    assert [r["step"] for r in train] == list(range(2, 25, 2))
    assert [r["step"] for r in dev] == [12, 24]
    assert all(np.isfinite(r["loss"]) for r in recs)
    # it learns: from ~ln(65) = 4.17 nats/char towards the unigram entropy
    assert train[0]["loss"] > 3.9 and dev[-1]["loss"] < train[0]["loss"] - 0.3
    assert dev[-1]["bpc"] == pytest.approx(dev[-1]["loss"] / np.log(2))
    assert last["dev"]["loss"] == dev[-1]["loss"]
    assert sorted(os.listdir(wd / "checkpoints")) == ["21", "24"]  # keep_checkpoints=2
    assert os.listdir(wd / "best") == ["24"]
    assert (wd / "config.yaml").is_file()
    from jaxrnn.train import plot_metrics  # the tiny config turns end-of-run plots off
    assert {p.name for p in plot_metrics(wd)} == {"plot_loss.png", "plot_bpc.png",
                                                  "plot_perplexity.png"}
    assert (wd / "plot_loss.png").stat().st_size > 1000
    # the dev loss equals an independent NumPy evaluation of the best params
    state = _final_state(wd, cfg)
    assert _numpy_dev_loss(cfg, state.params) == pytest.approx(dev[-1]["loss"], rel=1e-5)


def _numpy_dev_loss(cfg, params):
    """Float64 NumPy reference of the char-LM's dev loss (2-layer LSTM, rows carry state)."""
    from experiments.charlm import Vocab, eval_rows, read_text, split_text
    text = read_text(cfg.data.path)
    vocab = Vocab("".join(sorted(set(text))))
    x, y, m = eval_rows(vocab.encode(split_text(text, cfg.data.train_fraction)[1]),
                        cfg.data.eval_rows, 1)
    f64 = lambda a: np.asarray(a, np.float64)
    h = f64(params["embed"])[x]                      # [R, L, E]
    sig = lambda z: 1 / (1 + np.exp(-z))
    for p in params["rnn"]:
        w_ih, w_hh, b = f64(p.w_ih), f64(p.w_hh), f64(p.b)
        H = w_hh.shape[0]
        hs, c, out = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
        for t in range(x.shape[1]):
            z = h[:, t] @ w_ih + hs @ w_hh + b
            i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
            c = f * c + i * g
            hs = o * np.tanh(c)
            out.append(hs)
        h = np.stack(out, 1)
    logits = h @ f64(params["head"]["w"]) + f64(params["head"]["b"])
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = logz - np.take_along_axis(logits, y[..., None], -1)[..., 0]
    return float((nll * m).sum() / m.sum())


def test_resume_after_sigkill_is_bitwise_equal(reference, tmp_path):
    ref_wd, cfg, _ = reference
    wd = tmp_path / "killed"
    proc = subprocess.Popen(_cli(wd), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    try:
        # kill once a few checkpoints exist, mid-run (between or during saves)
        while time.time() < deadline:
            steps = [int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit()] \
                if (wd / "checkpoints").is_dir() else []
            if steps and max(steps) >= 9:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be killed: "
                            + proc.stderr.read().decode()[-2000:])
            time.sleep(0.05)
        time.sleep(0.13)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = max(int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit())
    assert killed_at < 24, "killed too late to test resuming"
    # resume: `jaxrnn train --workdir` on the existing workdir (no config argument)
    train_and_evaluate(load_config(None, [], wd), wd)
    a, b = _final_state(ref_wd, cfg), _final_state(wd, cfg)
    assert int(b.step) == 24
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and np.array_equal(x, y), "resumed state differs"
    assert (wd / "metrics.jsonl").read_text() == (ref_wd / "metrics.jsonl").read_text()
    assert os.listdir(wd / "best") == os.listdir(ref_wd / "best")


NAN_EXPERIMENT = '''
"""A linear model whose data turn to NaN at step 7: the runner must stop cleanly."""
from dataclasses import dataclass, field
import jax, jax.numpy as jnp, numpy as np
from jaxrnn.train import BaseConfig, Task

@dataclass
class Data:
    nan_from: int = 7

@dataclass
class Model:
    size: int = 3

@dataclass
class Config(BaseConfig):
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)

def build(cfg, rt):
    n = cfg.model.size
    def batch(step):
        x = np.random.default_rng(step).normal(size=(cfg.train.batch_size, n)).astype(np.float32)
        if step + 1 >= cfg.data.nan_from:
            x[0, 0] = np.nan
        return {"x": x, "y": x.sum(1)}
    def loss(p, state, b, key):
        return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), (state, {})
    return Task(init=lambda k: {"w": jnp.zeros((n,))}, loss=loss, train_batch=batch,
                evaluate=lambda p, split="dev": {"loss": float(jnp.sum(p["w"] ** 2))})
'''


def experiment_config(tmp_path, monkeypatch, module: str, source: str, config: str) -> str:
    """Writes ``source`` as the module ``module`` (``package.name``) of a package of its own on
    the path, and ``config`` (YAML, dedented) as a config file; returns the config's path."""
    package, name = module.split(".")
    pkg = tmp_path / package
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg_file = tmp_path / f"{name}.yaml"
    cfg_file.write_text(f"experiment: {module}\n" + textwrap.dedent(config))
    return str(cfg_file)


def nan_experiment_config(tmp_path, monkeypatch, data: str = "") -> str:
    """A config of NAN_EXPERIMENT, written as a package of its own on the path (checkpoints
    every 5 steps); ``data`` is the YAML of its ``data`` section."""
    return experiment_config(tmp_path, monkeypatch, "extexp.nanexp", NAN_EXPERIMENT, textwrap.dedent("""
        optimizer: {name: sgd, learning_rate: 0.1}
        train: {steps: 20, batch_size: 4, log_every: 1, eval_every: 100, checkpoint_every: 5,
                tensorboard: false, plots: false}
    """) + (f"data: {data}\n" if data else ""))


def test_nonfinite_loss_stops_with_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(nan_experiment_config(tmp_path, monkeypatch))
    wd = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"train step 7 .*last good checkpoint is step 5"):
        train_and_evaluate(cfg, wd)
    state = _final_state(wd, cfg)
    assert int(state.step) == 5 and np.all(np.isfinite(state.params["w"]))
    assert float(np.abs(state.params["w"]).max()) > 0  # it did train before the NaN
    assert max(r["step"] for r in read_metrics(wd)) == 6  # nothing logged from the bad step


def _compare_to_reference(reference, wd, rtol=2e-5):
    ref_wd, cfg, _ = reference
    ref, got = read_metrics(ref_wd), read_metrics(wd)
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in ref]
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g["loss"], r["loss"], rtol=rtol, err_msg=str((r, g)))
    a, b = _final_state(ref_wd, cfg), _final_state(wd, cfg)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)


def test_four_devices_equal_one(reference, tmp_path):
    wd = tmp_path / "dp4"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    probe = "import jax; print(jax.device_count())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "4"
    r = subprocess.run(_cli(wd), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 device(s) over 1 process(es)" in r.stderr
    _compare_to_reference(reference, wd)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(reference, tmp_path):
    wd = tmp_path / "mp2"
    port = _free_port()
    procs = []
    for pid in range(2):
        env = _env(JAXRNN_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAXRNN_NUM_PROCESSES="2",
                   JAXRNN_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(_cli(wd), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    assert "2 device(s) over 2 process(es)" in outs[0]
    _compare_to_reference(reference, wd)


# --------------------------------------------------------------------------- parameter EMA

EMA_SETS = ["train.steps=8", "train.checkpoint_every=4", "train.eval_every=4",
            "train.log_every=2", "optimizer.ema_decay=0.9",
            # constant learning rate: a 4-step run is the first half of the 8-step one
            "optimizer.schedule=constant"]


def test_ema_matches_numpy_average_of_the_param_trajectory():
    """state.ema after each step equals a float64 NumPy average of the params seen so far,
    with the decay schedule min(d, (1 + t) / (10 + t))."""
    cfg = load_config("charlm_tiny", EMA_SETS)
    run = prepare(cfg)
    state = run.init_state()
    avg = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.params)]
    np.testing.assert_array_equal(jax.tree.leaves(state.ema)[0], jax.tree.leaves(state.params)[0])
    for t in range(6):
        state = run.train_step(state, run.rt.shard_batch(run.task.train_batch(t)))
        d = min(0.9, (1 + t) / (10 + t))
        avg = [d * a + (1 - d) * np.asarray(p, np.float64)
               for a, p in zip(avg, jax.tree.leaves(state.params))]
        for a, e in zip(avg, jax.tree.leaves(state.ema)):
            np.testing.assert_allclose(e, a, rtol=1e-5, atol=1e-6)
    # the average moved away from the current params (it is not a copy of them)
    p0, e0 = jax.tree.leaves(state.params)[0], jax.tree.leaves(state.ema)[0]
    assert float(np.abs(np.asarray(p0) - np.asarray(e0)).max()) > 1e-4


def test_ema_is_evaluated_checkpointed_and_resumed_exactly(tmp_path):
    from jaxrnn.train import eval_params, load_params
    cfg = load_config("charlm_tiny", EMA_SETS)
    straight = tmp_path / "straight"
    train_and_evaluate(cfg, straight)
    # the same run in two parts: 4 steps, then resumed to 8 from the step-4 checkpoint
    split = tmp_path / "split"
    train_and_evaluate(load_config("charlm_tiny", EMA_SETS + ["train.steps=4"]), split)
    train_and_evaluate(load_config(None, ["train.steps=8"], workdir=split), split)
    a, b = _final_state(straight, cfg), _final_state(split, cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # dev metrics are those of the averaged params, and best/ holds them
    run = prepare(cfg)
    best, step = load_params(run, straight, "best")
    dev = [r for r in read_metrics(straight) if r["split"] == "dev" and r["step"] == step][0]
    assert run.task.evaluate(best, "dev")["loss"] == pytest.approx(dev["loss"], rel=1e-6)
    assert step == 8  # the dev loss still falls at step 8
    for x, y in zip(jax.tree.leaves(best), jax.tree.leaves(a.ema)):
        np.testing.assert_array_equal(x, y)
    assert run.task.evaluate(a.params, "dev")["loss"] != pytest.approx(dev["loss"], rel=1e-6)
    last, _ = load_params(run, straight, "latest")
    for x, y in zip(jax.tree.leaves(last), jax.tree.leaves(eval_params(a))):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad", ["1.0", "0", "-0.5"])
def test_ema_decay_out_of_range_is_rejected(bad):
    from jaxrnn.train import ConfigError
    with pytest.raises(ConfigError, match="optimizer.ema_decay"):  # when read, or at the latest
        prepare(load_config("charlm_tiny", [f"optimizer.ema_decay={bad}"]))  # before compiling


# --------------------------------------------------------------------------- early stopping

PLATEAU_EXPERIMENT = '''
"""Noisy linear regression: the dev loss falls to the noise floor, then wanders on it."""
from dataclasses import dataclass, field
import jax.numpy as jnp, numpy as np
from jaxrnn.train import BaseConfig, Task

@dataclass
class Data:
    noise: float = 0.5

@dataclass
class Config(BaseConfig):
    data: Data = field(default_factory=Data)

def build(cfg, rt):
    w_true = np.array([1.0, -2.0, 0.5], np.float32)
    def draw(seed, n):
        x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
        noise = cfg.data.noise * np.random.default_rng(seed + 7).normal(size=n)
        return x, (x @ w_true + noise).astype(np.float32)
    xd, yd = draw(10_000, 256)
    def batch(step):
        x, y = draw(step, cfg.train.batch_size)
        return {"x": x, "y": y}
    def loss(p, state, b, key):
        return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), (state, {})
    def evaluate(p, split="dev"):
        return {"loss": float(np.mean((xd @ np.asarray(p["w"]) - yd) ** 2))}
    return Task(init=lambda k: {"w": jnp.zeros((3,))}, loss=loss, train_batch=batch,
                evaluate=evaluate, metrics=("loss",))
'''

STOP_SETS = ["train.patience=3", "train.min_improvement=0.01"]


def plateau_config(tmp_path, monkeypatch) -> str:
    return experiment_config(tmp_path, monkeypatch, "plateauexp.plateau", PLATEAU_EXPERIMENT, """
        optimizer: {name: sgd, learning_rate: 0.05}
        train: {steps: 400, batch_size: 8, log_every: 1, eval_every: 2, checkpoint_every: 5,
                keep_checkpoints: 1000, tensorboard: false, plots: false}
    """)


def expected_stop(dev: list, patience: int, frac: float):
    """The early-stopping rule, restated: the first evaluation that is the ``patience``-th in a
    row not beating the reference (the last value that beat it by more than ``frac``)."""
    ref, waited = None, 0
    for step, v in dev:
        if ref is None or v < ref - frac * abs(ref):
            ref, waited = v, 0
        else:
            waited += 1
            if waited == patience:
                return step
    return None


def test_early_stopping_follows_its_rule_and_keeps_the_best(tmp_path, monkeypatch):
    from jaxrnn.train import load_params
    cfg_file = plateau_config(tmp_path, monkeypatch)
    full = tmp_path / "full"
    train_and_evaluate(load_config(cfg_file), full)           # no patience: all 400 steps
    dev_full = [(r["step"], r["loss"]) for r in read_metrics(full) if r["split"] == "dev"]
    assert dev_full[-1][0] == 400
    stop = expected_stop(dev_full, 3, 0.01)
    assert stop is not None and 10 < stop < 300, stop

    cfg = load_config(cfg_file, STOP_SETS)
    wd = tmp_path / "stopped"
    train_and_evaluate(cfg, wd)
    dev = [(r["step"], r["loss"]) for r in read_metrics(wd) if r["split"] == "dev"]
    assert dev == [d for d in dev_full if d[0] <= stop]       # same run, cut at the rule's step
    state = _final_state(wd, cfg)
    assert int(state.step) == stop                            # checkpointed where it stopped
    full_state = _final_state(full, load_config(cfg_file))
    assert not np.array_equal(state.params["w"], full_state.params["w"])
    run = prepare(cfg)
    best, best_step = load_params(run, wd, "best")            # best/ is the best evaluation
    assert best_step == min(dev, key=lambda d: d[1])[0]
    # min_improvement 0 waits for any new minimum: never sooner
    later = expected_stop(dev_full, 3, 0.0)
    assert later is None or later >= stop


def test_early_stopping_resumes_to_the_same_stop(tmp_path, monkeypatch):
    cfg_file = plateau_config(tmp_path, monkeypatch)
    cfg = load_config(cfg_file, STOP_SETS)
    straight = tmp_path / "straight"
    train_and_evaluate(cfg, straight)
    stop = int(_final_state(straight, cfg).step)
    # a run killed just after its checkpoint at step 10: later checkpoints never written
    cut = tmp_path / "cut"
    train_and_evaluate(cfg, cut)
    import shutil
    for d in (cut / "checkpoints").iterdir():
        if d.name.isdigit() and int(d.name) > 10:
            shutil.rmtree(d)
    train_and_evaluate(load_config(None, [], cut), cut)
    a, b = _final_state(straight, cfg), _final_state(cut, cfg)
    assert int(b.step) == stop
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert (cut / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
    # a stopped run asked to train again trains nothing and keeps its files
    before = (straight / "metrics.jsonl").read_text()
    train_and_evaluate(load_config(None, [], straight), straight)
    assert int(_final_state(straight, cfg).step) == stop
    assert (straight / "metrics.jsonl").read_text() == before
