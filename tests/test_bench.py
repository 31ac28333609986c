"""The benchmark scripts run end to end on tiny sizes and report what they promise (these
are smoke tests of the scripts: no timing is asserted)."""

import json

from experiments.bench import newton, plans, rnn


def test_rnn_benchmark_reports_every_peer_and_the_roofline(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert rnn.main(["--sizes", "2:5:3:4", "--cells", "lstm,gru_cho",
                     "--dtypes", "float32", "--repeats", "1", "--warmup", "0",
                     "--no-parallel", "--peak-size", "64", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    rows = {r["cell"]: r for r in saved["rnn"]}
    assert set(rows["lstm"]["median_ms"]) == {"jaxrnn", "naive", "flax", "torch"}
    assert set(rows["gru_cho"]["median_ms"]) == {"jaxrnn", "naive"}   # no peer has Cho's GRU
    # matmul FLOPs of an LSTM(4) on 3 inputs: 3 * 2 * B * T * (3*16 + 4*16)
    assert abs(rows["lstm"]["matmul_gflop"] - 3 * 2 * 2 * 5 * (3 * 16 + 4 * 16) / 1e9) < 1e-15
    assert 0 < rows["lstm"]["fraction_of_peak"]["jaxrnn"]
    assert saved["peak_gflops"]["float32"]["xla"] > 0
    rnn.main(["--render", str(out)])
    text = capsys.readouterr().out
    assert "jaxrnn / naive" in text and "% of peak" in text and "matmul peak" in text


def test_parallel_and_plan_benchmarks_run(tmp_path, capsys):
    out = tmp_path / "par.json"
    assert rnn.main(["--parallel", "--parallel-size", "2:3:4", "--parallel-t", "8",
                     "--repeats", "1", "--warmup", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["parallel"][0]["T"] == 8
    assert rnn.main(["--conv", "2:3:4:2:3", "--repeats", "1", "--warmup", "0",
                     "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["conv"][0]["median_ms"]) == {"jaxrnn", "reference",
                                                                      "naive"}
    assert plans.main(["mgu:2,6,3,4", "--vary", "hoist=0,1", "--rounds", "1"]) == 0
    assert "hoist=1" in capsys.readouterr().out


def test_newton_benchmark_reports_times_iterations_and_agreement(tmp_path, capsys):
    out = tmp_path / "newton.json"
    assert newton.main(["--cells", "gru", "--batch", "1", "--lengths", "64,1000", "--hidden", "8",
                        "--jacobians", "diagonal", "--max-elements", "500", "--repeats", "1",
                        "--warmup", "1", "--peak-size", "64", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    rows = {(r["jacobian"], r["mode"]): r for r in saved["newton"] if r["T"] == 64}
    skipped = [r for r in saved["newton"] if r["T"] == 1000]
    assert len(skipped) == 2 and all("max-elements" in r["skipped"] for r in skipped)
    assert set(rows) == {("diagonal", "eval"), ("diagonal", "fwdbwd")}
    for r in rows.values():
        assert not r.get("skipped"), r
        assert r["sequential_ms"] > 0 and r["newton_ms"] > 0 and r["speedup"] > 0
        assert r["converged"] and 1 <= r["iterations"] <= 100
        assert r["max_abs_diff"] < 1e-4
    fb = rows["diagonal", "fwdbwd"]
    assert fb["grad_max_abs_diff"] < 1e-4 * fb["grad_max_abs"]
    assert saved["machine"]["device_kind"] and len(saved["crossover"]) == 2
    newton.main(["--render", str(out)])
    text = capsys.readouterr().out
    assert "| newton ms | speedup |" in text and "| gru | diagonal | fwdbwd | 1 | 64 | 8 |" in text
    assert "T=64" in text   # a crossover line per (cell, jacobian, mode, B, H)
