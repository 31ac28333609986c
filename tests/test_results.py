"""The results sweep (experiments/results.py): what it records equals what the checkpoints
score, it skips what is recorded for the current code and reruns what is not, its table is the
ledger's statistics, and model selection breaks ties on dev loss."""

import json
import statistics

import numpy as np
import pytest

from experiments import results as R
from experiments import runs
from jaxrnn.train.checkpoint import Checkpoints


TINY = R.Row("tiny", "adding, tiny", "LSTM 16", "configs/adding_tiny.yaml",
             (R.Metric("test MSE", "test", "loss", digits=4),
              R.Metric("dev MSE", "dev", "loss", digits=4)), seeds=(0, 1))


def test_ties_go_to_the_lower_dev_loss(tmp_path):
    up = Checkpoints(tmp_path / "a", best_mode="max")
    assert up.is_better(0.96, None) and up.is_better(0.97, 0.96)
    assert not up.is_better(0.95, 0.96, loss=0.01, than_loss=0.5)   # worse metric, any loss
    assert up.is_better(0.96, 0.96, loss=0.10, than_loss=0.12)       # a tie: lower loss wins
    assert not up.is_better(0.96, 0.96, loss=0.12, than_loss=0.10)
    assert not up.is_better(0.96, 0.96)                              # a tie, no losses: keep
    assert not up.is_better(float("nan"), None) and not up.is_better(float("nan"), 0.5)
    down = Checkpoints(tmp_path / "b", best_mode="min")
    assert down.is_better(0.01, 0.02) and not down.is_better(0.02, 0.01, 0.0, 1.0)
    assert down.is_better(0.02, 0.02, loss=0.3, than_loss=0.4)


def test_the_code_version_follows_code_not_documentation(tmp_path):
    a = tmp_path / "a.py"
    a.write_text('"""Doc."""\nX = 1\n\ndef f(x):\n    """Adds."""\n    return x + X\n')
    b = tmp_path / "b.py"
    b.write_text('"""Other doc."""\n# a comment\nX = 1\n\n\ndef f(x):\n    return x + X  # same\n')
    c = tmp_path / "c.py"
    c.write_text('"""Doc."""\nX = 2\n\ndef f(x):\n    """Adds."""\n    return x + X\n')
    assert runs._normalized_source(a) == runs._normalized_source(b)
    assert runs._normalized_source(a) != runs._normalized_source(c)
    v = runs.code_version("experiments.adding", {"a": 1})
    assert v == runs.code_version("experiments.adding", {"a": 1})
    assert v != runs.code_version("experiments.adding", {"a": 2})
    assert v != runs.code_version("experiments.copymem", {"a": 1})
    # the experiment's own imports of experiments.* are part of it
    assert "tagging.py" in {p.name for p in runs._experiment_closure("experiments.ner")}


def test_every_row_loads_and_names_metrics_of_its_experiment():
    from jaxrnn.train import load_experiment
    for row in R.ROWS:
        cfg = R._config_of(row, 0, speaker=row.rotations[0] if row.rotations else "")
        exp = load_experiment(cfg.experiment)
        assert hasattr(exp, "build"), row.key
        assert not row.ensemble or hasattr(exp, "evaluate_ensemble"), row.key
        assert len(R.version(row)) == 12
    assert {a for _, a, *_ in R.COMPARISONS} <= set(R.BY_KEY)


def test_a_recorded_run_is_what_its_checkpoints_score(tmp_path, monkeypatch):
    from jaxrnn.train import load_params, prepare
    runs_dir, ledger = tmp_path / "runs", tmp_path / "ledger"
    entry = R.run_one(TINY, 0, runs_dir, ledger)
    assert json.loads(R.ledger_file(ledger, TINY, 0).read_text()) == json.loads(
        json.dumps(entry))
    wd = runs_dir / "tiny" / "s0"
    cfg = R._config_of(TINY, 0, wd)
    run = prepare(cfg)
    for which in ("best", "latest"):
        params, step = load_params(run, wd, which)
        assert entry[which]["step"] == step
        for split in ("dev", "test"):
            want = run.task.evaluate(params, split)["loss"]
            assert np.isfinite(want)
            assert entry[which][split]["loss"] == pytest.approx(want, rel=1e-6)
    assert entry["steps_taken"] == entry["budget"] == 60 and entry["train_seconds"] > 0
    assert entry["version"] == R.version(TINY) and entry["machine"]["cores"] >= 1
    # recorded for this code: not run again; seed 1 is still to do
    assert R.todo([TINY], None, ledger) == [(TINY, 1)]
    # another code version: both again, and the old workdir does not survive the rerun
    monkeypatch.setattr(R, "version", lambda row, seed=0: "0123456789ab")
    assert R.todo([TINY], None, ledger) == [(TINY, 0), (TINY, 1)]
    (wd / "marker").write_text("old")
    R._fresh_workdir(wd, "0123456789ab")
    assert not (wd / "marker").exists() and not (wd / "checkpoints").exists()


def _entry(row, seed, value, last, version="aaaaaaaaaaaa", date="2026-12-02"):
    m = row.metrics[0]
    scores = lambda v: {"step": 10, m.split: {m.key: v / m.scale}}
    return {"row": row.key, "seed": seed, "version": version, "command": row.command(seed),
            "machine": {"cpu": "Test CPU", "simd": ["avx2"], "cores": 2, "backend": "cpu"},
            "date": date, "budget": 10, "steps_taken": 10, "train_seconds": 60.0 * (seed + 1),
            "selected_on": "dev loss (min)", "best": scores(value), "latest": scores(last)}


def test_the_table_is_the_ledgers_statistics(tmp_path, monkeypatch):
    ledger, docs = tmp_path / "ledger", tmp_path / "docs"
    docs.mkdir()
    a, b, stale = R.BY_KEY["digits"], R.BY_KEY["connected"], R.BY_KEY["ner_weibo"]
    va, vb = [97.0, 98.0, 96.5], [1.2, 0.9, 1.0]
    for s, (x, y) in enumerate(zip(va, vb)):
        runs.write_json(R.ledger_file(ledger, a, s), _entry(a, s, x, x + 0.5))
        runs.write_json(R.ledger_file(ledger, b, s), _entry(b, s, y, y))
    runs.write_json(R.ledger_file(ledger, stale, 0), _entry(stale, 0, 48.0, 47.0, "bbbbbbbbbbbb",
                                                            "2026-11-01"))
    monkeypatch.setattr(R, "version", lambda row, seed=0: "aaaaaaaaaaaa")
    (docs / "results.md").write_text("x\n<!-- results:table:begin -->\n<!-- results:table:end -->"
                                     "\n<!-- results:runs:begin -->\n<!-- results:runs:end -->\n")
    R.write_report([a, b, stale, R.BY_KEY["pos"]], ledger, docs, None)
    doc = (docs / "results.md").read_text()
    mean, sd = statistics.mean(va), statistics.stdev(va)
    assert f"**{mean:.1f} ± {sd:.1f}% (3 runs)**" in doc
    lm, ls = statistics.mean([x + 0.5 for x in va]), statistics.stdev([x + 0.5 for x in va])
    assert f"final checkpoint {lm:.1f} ± {ls:.1f}% (3 runs)" in doc
    assert f"**{statistics.mean(vb):.2f} ± {statistics.stdev(vb):.2f}% (3 runs)**" in doc
    # a row recorded only for other code says so; a row never run says what stood before
    assert "(not this version)" in doc and "48.00 (1 run)" in doc
    assert "not rerun yet; before:" in doc
    assert doc.count("| digits | ") == 3 and "Test CPU (avx2), 2 cores" in doc
    js = json.loads((docs / "results.json").read_text())
    assert [e["seed"] for e in js["rows"]["digits"]["runs"]] == [0, 1, 2]
    assert js["rows"]["ner_weibo"]["current"] is False


def test_comparisons_say_when_they_are_within_the_spread():
    s = {"x": {"metrics": {("m", "best"): [10.0, 11.0, 12.0]}},
         "y": {"metrics": {("m", "best"): [11.5, 12.0, 12.5]}},
         "z": {"metrics": {("m", "best"): [20.0, 20.5, 21.0]}}}
    old = R.COMPARISONS
    try:
        R.COMPARISONS = (("x vs y", "x", "m", "y", "m"), ("x vs z", "x", "m", "z", "m"))
        table = R.comparisons_table(s)
    finally:
        R.COMPARISONS = old
    lines = table.splitlines()
    assert "| x vs y |" in lines[2] and lines[2].endswith("**yes** |")    # 1.0 <= 1.0 + 0.5
    assert "| x vs z |" in lines[3] and lines[3].endswith("| no |") and "-9.50" in lines[3]


@pytest.mark.parametrize("argv, message", [
    (["--only", "digits,nope"], "unknown row(s) nope"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--time-limit", "-5"], "--time-limit must be a positive number"),
])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        R.main(argv + ["--list"])
    assert message in (str(e.value.code) + capsys.readouterr().err)
