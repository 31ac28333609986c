"""The "why gates matter" experiments: generated data against its definition, baselines
computed (not assumed), a tiny run of each experiment through the runner whose loss falls,
and the report's parameter matching and tables."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jaxrnn.train")

from experiments import adding, copymem, gates_report, mnist1d  # noqa: E402
from jaxrnn.train import load_config, read_metrics, train_and_evaluate  # noqa: E402
from tests._paths import data_root  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNIST1D = data_root() / "mnist1d" / "mnist1d.npz"


# --------------------------------------------------------------------------- data

def test_adding_data_definition():
    T, n = 37, 500
    x, y = adding.adding_data(np.random.default_rng(0), n, T)
    assert x.shape == (n, T, 2) and y.shape == (n,) and x.dtype == np.float32
    values, marker = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert set(np.unique(marker)) == {0.0, 1.0}
    np.testing.assert_array_equal(marker.sum(axis=1), 2)             # exactly two markers
    for i in range(n):                                                  # target = their sum
        pos = np.flatnonzero(marker[i])
        assert len(pos) == 2
        np.testing.assert_allclose(y[i], values[i, pos].sum(), rtol=1e-6)
    # marker positions cover the whole sequence (uniform over the T steps)
    xs, _ = adding.adding_data(np.random.default_rng(2), 20_000, T)
    hits = xs[..., 1].sum(axis=0)
    assert hits.min() > 0.7 * hits.mean() and hits.max() < 1.3 * hits.mean()


def test_adding_baseline_is_computed_near_one_sixth():
    _, y = adding.adding_data(np.random.default_rng(3), 50_000, 20)
    b = adding.baseline_mse(float(np.mean(y)), y)
    assert abs(b - 1 / 6) < 0.005          # Var(u1 + u2) = 2/12
    assert adding.baseline_mse(1.0, np.array([0.5, 1.5])) == pytest.approx(0.25)


def test_copy_data_definition():
    T, n = 30, 200
    x, y = copymem.copy_data(np.random.default_rng(0), n, T)
    assert x.shape == y.shape == (n, T + 20)
    seq = x[:, :10]
    assert seq.min() >= 1 and seq.max() <= 8
    np.testing.assert_array_equal(x[:, 10:T + 9], 0)                   # T - 1 blanks
    np.testing.assert_array_equal(x[:, T + 9:], copymem.DELIMITER)    # 11 delimiters
    np.testing.assert_array_equal(y[:, :T + 10], 0)
    np.testing.assert_array_equal(y[:, T + 10:], seq)                 # recall the symbols
    assert len(np.unique(seq)) == 8


@pytest.mark.parametrize("T", [1, 100, 1000])
def test_copy_memoryless_baseline_is_computed(T):
    x, y = copymem.copy_data(np.random.default_rng(T), 8, T)
    b = copymem.cross_entropy(copymem.memoryless_logits(y), y)
    assert b == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)


def test_mnist1d_splits_and_shift():
    if not MNIST1D.is_file():
        pytest.skip(f"{MNIST1D} not found")
    s = mnist1d.load_splits(MNIST1D, 400)
    assert [len(s[k][0]) for k in ("train", "dev", "test")] == [3600, 400, 1000]
    assert abs(float(s["train"][0].mean())) < 1e-4 and abs(float(s["train"][0].std()) - 1) < 1e-4
    assert set(np.unique(s["test"][1])) == set(range(10))
    x = np.arange(10, dtype=np.float32)[None].repeat(2, 0)
    out = mnist1d.shift(x, np.array([2, -3]))
    np.testing.assert_array_equal(out[0], [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(out[1], [3, 4, 5, 6, 7, 8, 9, 9, 9, 9])


# --------------------------------------------------------------------------- tiny runs

def _tiny_run(config, tmp_path, overrides=()):
    cfg = load_config(str(REPO / "configs" / config), list(overrides), tmp_path)
    last = train_and_evaluate(cfg, tmp_path)
    train = [r["loss"] for r in read_metrics(tmp_path) if r["split"] == "train"]
    return cfg, last, train


def test_adding_tiny_run_learns(tmp_path):
    cfg, last, train = _tiny_run("adding_tiny.yaml", tmp_path)
    assert train[-1] < 0.5 * train[0]
    assert last["dev"]["loss"] < last["dev"]["baseline"]   # beats the memoryless answer
    assert 0.10 < last["dev"]["baseline"] < 0.25


def test_copy_tiny_run_learns(tmp_path):
    cfg, last, train = _tiny_run("copy_tiny.yaml", tmp_path)
    assert train[-1] < 0.6 * train[0]
    assert last["dev"]["baseline"] == pytest.approx(10 * math.log(8) / 25, rel=1e-9)


def test_mnist1d_tiny_run_learns(tmp_path):
    if not MNIST1D.is_file():
        pytest.skip(f"{MNIST1D} not found")
    cfg, last, train = _tiny_run("mnist1d_tiny.yaml", tmp_path,
                                 ["model.bidirectional=true", "data.augment_shift=2"])
    assert train[-1] < 0.95 * train[0]
    assert last["dev"]["accuracy"] > 0.2                    # chance is 10%


def test_train_batches_are_pure_functions_of_the_step():
    from jaxrnn.train.sharding import make_runtime
    rt = make_runtime()
    for name in ("adding_tiny.yaml", "copy_tiny.yaml"):
        cfg = load_config(str(REPO / "configs" / name))
        task = (adding if cfg.experiment == "experiments.adding" else copymem).build(cfg, rt)
        a, b, c = task.train_batch(7), task.train_batch(7), task.train_batch(8)
        np.testing.assert_array_equal(a["x"], b["x"])
        assert not np.array_equal(a["x"], c["x"])


# --------------------------------------------------------------------------- report

def test_hidden_sizes_match_parameter_budget():
    ref = adding.Model(adding.ModelConfig(cell="lstm", hidden_size=64), 2, 1).recurrent_params()
    for cell in gates_report.LONGDEP_CELLS:
        L = gates_report.LAYERS.get(cell, 1)
        H = gates_report.matched_hidden(cell, 2, L)
        n = adding.Model(adding.ModelConfig(cell=cell, hidden_size=H, num_layers=L), 2,
                         1).recurrent_params()
        assert abs(n - ref) < 0.06 * ref, (cell, H, n, ref)


def test_report_tables_from_results(tmp_path):
    specs = gates_report.sweep(("adding", "mnist1d"), seeds=[0, 1], lengths=[50, 100],
                               cells=["lstm", "simple_rnn", "bi_gru"])
    assert {s.label for s in specs} == {"lstm", "simple_rnn", "bi_gru"}
    runs = tmp_path / "runs"
    for i, s in enumerate(specs):
        wd = runs / s.group / s.name
        wd.mkdir(parents=True)
        test = ({"loss": 0.01 * (i + 1), "baseline": 0.167} if s.group == "adding"
                else {"loss": 0.3, "accuracy": 0.9 + 0.01 * s.seed})
        wd.joinpath("result.json").write_text(json.dumps({
            "spec": gates_report.asdict(s), "step": 10, "train_seconds": 60.0, "params": 1000,
            "dev": test, "test": test}))
    text = gates_report.write_report(specs, runs, tmp_path / "docs")
    assert "| lstm | 64 x 1 | 1,000 |" in text
    assert "| bi_gru | 1,000 | 90.5% [90.0, 91.0] (2 seeds) | 91.0% |" in text
    assert (tmp_path / "docs" / "gates_loss_vs_T.png").is_file()
