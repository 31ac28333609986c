"""The fused engine's plans side by side, and the per-step matmul against ``torch.matmul``.

    python -m experiments.bench.plans lstm:32,100,128,256 --vary unroll=1,2 --vary hoist=0,1
    python -m experiments.bench.plans --matmul 32,256,1024
    python -m experiments.bench.plans --profile lstm:32,100,128,256

Plans: each ``CELL:B,T,I,H`` (any cell name of ``experiments.bench.rnn``) is timed forward
and forward+backward (gradients of the parameters and the inputs of ``sum(ys)``) of
``jax.vmap`` of the engine under the backend's default plan and under every plan that
changes one field of it per ``--vary FIELD=V1,V2,...`` (the defaults of
``docs/benchmarks.md``, "Choosing the plan", come from these runs). The plans run in turn,
each round starting with the next one, and the median wall-clock ms is printed.

``--matmul B,K,N``: one ``[B, K] @ [K, N]`` per step of a 100-step ``lax.scan`` (reduced so
that XLA cannot slice the product away) against the same matmul in a Python loop of
``torch.matmul``, in GFLOP/s.

``--profile CELL:B,T,I,H``: XLA's per-operation trace of one fwd+bwd call of the default
plan (``--xla_cpu_enable_xprof_traceme`` and ``jax.profiler``), summed per operation name:
where the time goes. Run everything on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _problem(spec):
    import jax

    from experiments.bench.rnn import _cells
    cell_name, dims = spec.split(":")
    B, T, I, H = (int(v) for v in dims.split(","))
    cell = _cells()[cell_name][0](H, None)
    params = cell.init(jax.random.PRNGKey(0), I)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    return cell_name, cell, params, xs


def _layer(cell, plan):
    """``jax.vmap`` of the engine on one plan (what ``jax.vmap(jr.scan)`` runs)."""
    import jax

    from jaxrnn import engine

    def run(p, x):
        def one(s):
            return engine.run(cell, p, s, cell.carry_for_input(p, s[0]), plan=plan)[0]
        return jax.vmap(one)(x)
    return run


def _calls(cell, params, xs, plan):
    import jax

    f = _layer(cell, plan)
    fwd = jax.jit(f)
    grad = jax.jit(jax.grad(lambda p, x: f(p, x).sum(), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(fwd(params, xs)),
            lambda: jax.block_until_ready(grad(params, xs)))


def _rotate(fns: dict, rounds: int, warmup: int = 2) -> dict:
    for f in fns.values():
        for _ in range(warmup):
            f()
    names, times = list(fns), {n: [] for n in fns}
    for r in range(rounds):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: 1e3 * statistics.median(t) for n, t in times.items()}


def run_plans(spec, vary, rounds):
    import jax

    from jaxrnn.engine import default_plan
    cell_name, cell, params, xs = _problem(spec)
    base = default_plan()
    plans = {"default": base}
    for item in vary:
        field, values = item.split("=")
        for v in values.split(","):
            plan = base._replace(**{field: type(getattr(base, field))(int(v))})
            plans.setdefault(f"{field}={v}", plan)
    fns = {}
    for name, plan in plans.items():
        fwd, fwdbwd = _calls(cell, params, xs, plan)
        fns[(name, "fwd")], fns[(name, "fwdbwd")] = fwd, fwdbwd
    med = _rotate(fns, rounds)
    print(f"{spec} on {jax.default_backend()}; default {base}")
    for name, plan in plans.items():
        print(f"  {name:12s} fwd {med[(name, 'fwd')]:9.2f} ms   fwd+bwd "
              f"{med[(name, 'fwdbwd')]:9.2f} ms   {plan}")


def run_matmul(dims, steps=100, rounds=30):
    import jax
    B, K, N = (int(v) for v in dims.split(","))
    if N % K:
        raise SystemExit(f"--matmul B,K,N needs N a multiple of K (got {dims})")
    w = jax.random.normal(jax.random.PRNGKey(0), (K, N)) * 0.05
    h0 = jax.random.normal(jax.random.PRNGKey(1), (B, K))

    @jax.jit
    def loop(w, h0):
        def body(h, _):
            return (h @ w).reshape(B, N // K, K).sum(1) * (K / N), None
        return jax.lax.scan(body, h0, None, length=steps)[0]

    flops = 2.0 * B * K * N * steps
    fns = {"xla": lambda: jax.block_until_ready(loop(w, h0))}
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
        a, tw = torch.randn(B, K), torch.randn(K, N) * 0.05

        def torch_loop():
            for _ in range(steps):
                torch.matmul(a, tw)
        fns["torch"] = torch_loop
    except ImportError:
        print("  torch not installed: XLA only", file=sys.stderr)
    med = _rotate(fns, rounds)
    for name, ms in med.items():
        print(f"  [{B}, {K}] @ [{K}, {N}] x {steps}: {name:5s} {ms:8.2f} ms  "
              f"{flops / ms / 1e6:6.0f} GFLOP/s")


def run_profile(spec, calls=5):
    import collections
    import glob
    import gzip
    import json
    import tempfile

    import jax
    from jaxrnn.engine import default_plan
    cell_name, cell, params, xs = _problem(spec)
    _, fwdbwd = _calls(cell, params, xs, default_plan())
    fwdbwd()
    out = tempfile.mkdtemp()
    jax.profiler.start_trace(out, create_perfetto_trace=True)
    for _ in range(calls):
        fwdbwd()
    jax.profiler.stop_trace()
    trace = glob.glob(os.path.join(out, "**", "*.trace.json.gz"), recursive=True)[-1]
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total = collections.defaultdict(float)
    count = collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0) / 1e3 / calls
            count[e["name"]] += 1
    print(f"{spec}: ms per call by operation (nested events overlap; {calls} calls)")
    for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {ms:9.3f} ms  {count[name] // calls:5d}x  {name}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs", nargs="*", help="CELL:B,T,I,H (lstm or gru)")
    ap.add_argument("--vary", action="append", default=[], help="FIELD=V1,V2,... of the Plan")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--matmul", default=None, metavar="B,K,N")
    ap.add_argument("--profile", default=None, metavar="CELL:B,T,I,H")
    args = ap.parse_args(argv)
    if args.profile:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xprof_traceme" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_enable_xprof_traceme=true").strip()
        run_profile(args.profile)
    if args.matmul:
        run_matmul(args.matmul)
    for spec in args.specs:
        run_plans(spec, args.vary, args.rounds)
    if not (args.specs or args.matmul or args.profile):
        ap.error("give CELL:B,T,I,H specs, --matmul or --profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
