"""Training throughput of a tagging config with its BiLSTM on the scan path and on the fast path.

    python -m experiments.bench.tagger configs/pos.yaml [--steps 300] [--rounds 3]

Builds the run once per ``model.impl`` (``scan`` and ``auto``), compiles every bucket shape
by running each distinct training batch shape once (not timed), then times the same
``--steps`` training steps (the steps ``1..steps`` of the config's own batch order) for each
implementation in alternating rounds, and prints the median steps/s, tokens/s and the ratio.
Run it on a quiet machine: another busy process on a 2-core CPU changes every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from jaxrnn.train import load_config, prepare


def _setup(config: str, impl: str, overrides):
    cfg = load_config(config, [f"model.impl={impl}", *overrides], None)
    run = prepare(cfg)
    state = run.init_state()
    return run, state


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    runs = {impl: _setup(args.config, impl, args.overrides) for impl in ("scan", "auto")}
    any_run = runs["scan"][0]
    batches = [any_run.rt.shard_batch(any_run.task.train_batch(s)) for s in range(args.steps)]
    shapes = {}
    for b in batches:
        shapes.setdefault(tuple(jax.tree.leaves(jax.tree.map(lambda a: a.shape, b))), b)
    tokens = sum(int(b["length"].sum()) for b in batches)
    for impl, (run, state) in runs.items():       # compile every shape, untimed
        for b in shapes.values():
            state = run.train_step(state, b)
        jax.block_until_ready(state)
        runs[impl] = (run, state)
    times = {impl: [] for impl in runs}
    for _ in range(args.rounds):
        for impl, (run, state) in runs.items():
            t0 = time.perf_counter()
            for b in batches:
                state = run.train_step(state, b)
            jax.block_until_ready(state)
            times[impl].append(time.perf_counter() - t0)
            runs[impl] = (run, state)
    out = {"config": args.config, "steps": args.steps, "rounds": args.rounds,
           "compiled_shapes": len(shapes)}
    for impl, ts in times.items():
        med = statistics.median(ts)
        out[impl] = {"seconds": med, "steps_per_s": args.steps / med, "tokens_per_s": tokens / med}
        print(f"impl={impl:5s} {args.steps / med:7.2f} steps/s {tokens / med:10,.0f} tokens/s "
              f"(median of {args.rounds} rounds of {args.steps} steps)")
    out["auto_over_scan_time"] = out["auto"]["seconds"] / out["scan"]["seconds"]
    print(f"time auto / scan = {out['auto_over_scan_time']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
