"""Side-by-side RNN benchmark: jaxrnn vs Flax vs PyTorch (vs cuDNN on a GPU), one process.

    python -m experiments.bench.rnn                      # everything (CPU: ~10 minutes)
    python -m experiments.bench.rnn --quick              # one small size, a few repeats
    python -m experiments.bench.rnn --sizes mid --cells lstm --dtypes float32 --repeats 20
    python -m experiments.bench.rnn --parallel           # min_gru parallel scan vs GRU only

What is timed (forward, and forward+backward = gradients of all parameters and of the
inputs of ``sum(ys)``), one layer, inputs ``[B, T, I]`` batch-major for everyone:

- ``jaxrnn``: ``jaxrnn.fast.layer`` (the fast path: whole-batch custom-VJP kernels);
- ``jr.scan``: ``jax.vmap(jr.scan)`` of the same cell (the reference path, autodiff);
- ``flax``: ``flax.linen.RNN(OptimizedLSTMCell / GRUCell)``;
- ``torch``: ``torch.nn.LSTM / GRU`` (oneDNN on CPU, cuDNN on GPU), threads = cores;
- ``jax-cudnn`` (GPU only, LSTM only): ``jax.experimental.rnn.lstm``.

Every JAX function is jitted and compiled before timing; each one gets ``--warmup`` untimed
calls, then ``--repeats`` rounds in which every implementation runs once in turn (so a
burst of load on a shared machine hits all of them alike); the median is reported.
JAX calls end with ``block_until_ready``; torch on GPU with ``torch.cuda.synchronize``.

Memory (bytes, excluding the inputs and parameters): JAX: ``temp + output`` from XLA's
buffer assignment (``compiled.memory_analysis()``), exact for what XLA allocates. torch on
CPU: the peak of live tensors allocated during one call, from the profiler's memory events
(oneDNN's internal scratchpad is not counted); on GPU: ``torch.cuda.max_memory_allocated``
minus what was allocated before the call.

bfloat16 means bf16 matmuls with float32 parameters, gates and cell state for the JAX
implementations (``jr.lstm(H, dtype=bfloat16)``, Flax ``dtype=bfloat16``); torch runs the
module and inputs in bf16 (it has no mixed mode for its fused RNNs).

XLA flags (``--xla-flags`` or the ``XLA_FLAGS`` environment variable) must be set before JAX
starts; this script sets them from the command line before importing JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

SIZES = {
    "small": (1, 1000, 32, 64),
    "mid": (32, 100, 128, 256),
    "large": (64, 200, 256, 512),
    "long": (16, 2000, 64, 256),
}
PARALLEL_T = (256, 1024, 4096)


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="small,mid,large,long",
                   help="comma list of names (small, mid, large, long) or B:T:I:H tuples")
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--impls", default="jaxrnn,jr.scan,flax,torch,jax-cudnn",
                   help="comma list among jaxrnn, jr.scan, flax, torch, jax-cudnn")
    p.add_argument("--modes", default="fwd,fwdbwd")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help="small and mid sizes, float32, 5 repeats: a smoke run in about a minute")
    p.add_argument("--parallel", action="store_true",
                   help="run only the min_gru parallel-scan vs GRU training benchmark")
    p.add_argument("--no-parallel", action="store_true", help="skip the min_gru benchmark")
    p.add_argument("--parallel-size", default="16:64:256", help="B:I:H for the min_gru benchmark")
    p.add_argument("--parallel-t", default=",".join(map(str, PARALLEL_T)))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="wall: elapsed time (the default). process: CPU time of the whole "
                        "process, for single-core runs on a busy machine (taskset -c 0 ... "
                        "--threads 1), where it counts the work done and not the waiting")
    p.add_argument("--xla-flags", default=None, help="appended to XLA_FLAGS before JAX starts")
    p.add_argument("--json", default="runs/bench/rnn.json", help="where to write the results")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the Markdown tables of a saved run and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.dtypes, args.repeats, args.warmup = "small,mid", "float32", 5, 2
        args.no_parallel = True
    return args


def _sizes(spec):
    out = []
    for item in spec.split(","):
        item = item.strip()
        if item in SIZES:
            out.append((item, SIZES[item]))
        elif item:
            dims = tuple(int(v) for v in item.split(":"))
            if len(dims) != 4:
                raise SystemExit(f"--sizes: {item!r} is neither a name ({', '.join(SIZES)}) nor B:T:I:H")
            out.append((item, dims))
    return out


# --------------------------------------------------------------------------- JAX impls

def _jax_memory(compiled):
    try:
        ma = compiled.memory_analysis()
    except Exception:  # pragma: no cover - backend without memory analysis
        return None
    if ma is None:
        return None
    return int(ma.temp_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes)


def _jax_impl(fn_fwd, params, xs):
    """(fwd, fwdbwd, memory) for a JAX ``fn(params, xs) -> ys``: compiled, blocking callables."""
    import jax
    import jax.numpy as jnp

    def loss(p, x):
        return jnp.sum(fn_fwd(p, x).astype(jnp.float32))

    out = {}
    for mode, f in (("fwd", fn_fwd), ("fwdbwd", jax.grad(loss, argnums=(0, 1)))):
        compiled = jax.jit(f).lower(params, xs).compile()
        out[mode] = ((lambda c=compiled: jax.block_until_ready(c(params, xs))),
                     _jax_memory(compiled))
    return out


def _make_jax_impls(name, cell_name, dims, dtype_name, key):
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr
    from jaxrnn import fast

    B, T, I, H = dims
    compute = jnp.bfloat16 if dtype_name == "bfloat16" else None
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    if compute is not None:
        xs = xs.astype(compute)
    cell = (jr.lstm if cell_name == "lstm" else jr.gru)(H, dtype=compute)
    params = cell.init(jax.random.PRNGKey(1), I)

    if name == "jaxrnn":
        return _jax_impl(lambda p, x: fast.layer(cell, p, x)[0], params, xs)
    if name == "jr.scan":
        def ref(p, x):
            return jax.vmap(lambda s: jr.scan(cell, p, s)[0])(x)
        return _jax_impl(ref, params, xs)
    if name == "flax":
        import flax.linen as nn
        kw = dict(features=H, param_dtype=jnp.float32)
        if compute is not None:
            kw["dtype"] = compute
        fcell = nn.OptimizedLSTMCell(**kw) if cell_name == "lstm" else nn.GRUCell(**kw)
        rnn = nn.RNN(fcell)
        fparams = rnn.init(jax.random.PRNGKey(1), xs)
        return _jax_impl(lambda p, x: rnn.apply(p, x), fparams, xs)
    if name == "jax-cudnn":
        # cuDNN's LSTM through jax.experimental.rnn (GPU only; float32 weights).
        if cell_name != "lstm" or jax.default_backend() != "gpu" or compute is not None:
            return None
        from jax.experimental import rnn as xrnn
        weights = xrnn.init_lstm_weight(jax.random.PRNGKey(1), I, H, 1, False)
        lengths = jnp.full((B,), T, jnp.int32)
        h0 = jnp.zeros((1, B, H), jnp.float32)

        def cudnn(w, x):
            y, _, _ = xrnn.lstm(x, h0, h0, w, lengths, input_size=I, hidden_size=H,
                                num_layers=1, dropout=0.0, bidirectional=False)
            return y
        return _jax_impl(cudnn, weights, xs)
    raise ValueError(name)


# --------------------------------------------------------------------------- torch impl

def _torch_peak_cpu(call):
    """Peak bytes of live tensors allocated during ``call`` (profiler memory events)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    del torch
    return int(peak)


def _make_torch_impl(cell_name, dims, dtype_name):
    import torch

    B, T, I, H = dims
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dt = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    torch.manual_seed(0)
    mod = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(I, H, batch_first=True)
    mod = mod.to(device=dev, dtype=dt)
    x = torch.randn(B, T, I, device=dev, dtype=dt)
    xg = x.clone().requires_grad_(True)
    params = list(mod.parameters())
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def fwd():
        with torch.no_grad():
            y, _ = mod(x)
        sync()
        return y

    def fwdbwd():
        y, _ = mod(xg)
        grads = torch.autograd.grad(y.float().sum(), [xg] + params)
        sync()
        return grads

    out = {}
    for mode, f in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        f()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            f()
            mem = int(torch.cuda.max_memory_allocated() - before)
        else:
            mem = _torch_peak_cpu(f)
        out[mode] = (f, mem)
    return out


# --------------------------------------------------------------------------- timing

_CLOCK = {"wall": time.perf_counter, "process": time.process_time}


def _time_round_robin(impls, warmup, repeats, clock="wall"):
    """impls: {name: callable}. Returns {name: [seconds]} with calls interleaved.

    Round r starts at implementation r (mod n), so each one follows each other one equally
    often: at the small size a JAX call right after a PyTorch call could run up to 3x slower
    (PyTorch's OpenMP threads keep spinning for a while after a call), which a fixed order
    charged to one implementation every round."""
    now = _CLOCK[clock]
    for f in impls.values():
        for _ in range(warmup):
            f()
    names = list(impls)
    times = {n: [] for n in impls}
    for r in range(repeats):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            t0 = now()
            impls[n]()
            times[n].append(now() - t0)
    return times


def _machine():
    import jax
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import flax
        info["flax"] = flax.__version__
    except ImportError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = os.getloadavg()
    return info


def _burn_in():
    """Compiles and runs a throwaway program with a loop, matmuls and a gradient.

    The first programs a process compiles ran slower than the same programs compiled later
    (jaxrnn's LSTM fwd+bwd at (1, 1000, 32, 64): 6.07 ms when it was the first program, 3.92 ms
    after a throwaway one; measured on the 2-core CPU), so whichever implementation was built
    first lost. This puts every implementation after the same warm start."""
    import jax
    import jax.numpy as jnp

    def loss(w, xs):
        def body(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h
        return jnp.sum(jax.lax.scan(body, jnp.zeros((4, 32)), xs)[1])

    w, xs = jnp.eye(32) * 0.5, jnp.ones((16, 4, 32))
    for _ in range(3):
        jax.block_until_ready(jax.jit(jax.value_and_grad(loss))(w, xs))


def run_rnn(args, results):
    import jax

    _burn_in()
    impl_names = [s.strip() for s in args.impls.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    on_gpu = jax.default_backend() == "gpu"
    rows = []
    for size_name, dims in _sizes(args.sizes):
        for cell_name in [c.strip() for c in args.cells.split(",") if c.strip()]:
            for dtype_name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
                built = {}
                for name in impl_names:
                    if name == "jax-cudnn" and not on_gpu:
                        continue
                    try:
                        if name == "torch":
                            impl = _make_torch_impl(cell_name, dims, dtype_name)
                        else:
                            impl = _make_jax_impls(name, cell_name, dims, dtype_name,
                                                   jax.random.PRNGKey(0))
                    except ImportError as e:
                        print(f"  skipping {name}: {e}", file=sys.stderr)
                        continue
                    if impl is not None:
                        built[name] = impl
                for mode in modes:
                    fns = {n: impl[mode][0] for n, impl in built.items()}
                    times = _time_round_robin(fns, args.warmup, args.repeats, args.clock)
                    row = {"size": size_name, "B": dims[0], "T": dims[1], "I": dims[2],
                           "H": dims[3], "cell": cell_name, "dtype": dtype_name, "mode": mode,
                           "median_ms": {n: 1e3 * statistics.median(t) for n, t in times.items()},
                           "min_ms": {n: 1e3 * min(t) for n, t in times.items()},
                           "memory_bytes": {n: built[n][mode][1] for n in built}}
                    rows.append(row)
                    _print_row(row)
                    results["rnn"] = rows
                    _write(args.json, results)
                del built
    return rows


def _fmt_ms(v):
    return f"{v:9.2f}" if v < 100 else f"{v:9.1f}"


def _print_row(row):
    med = row["median_ms"]
    head = (f"{row['cell']:4} {row['mode']:6} {row['dtype']:8} "
            f"({row['B']},{row['T']},{row['I']},{row['H']})")
    parts = [f"{n}={_fmt_ms(v).strip()}ms" for n, v in med.items()]
    ratios = []
    if "jaxrnn" in med:
        for n, v in med.items():
            if n != "jaxrnn":
                ratios.append(f"jaxrnn/{n}={med['jaxrnn'] / v:.2f}")
    print(f"{head}  " + "  ".join(parts) + ("  |  " + "  ".join(ratios) if ratios else ""),
          flush=True)


def table(rows, peers=("torch", "flax", "jr.scan", "jax-cudnn")):
    """A Markdown table of medians (ms), ratios jaxrnn/peer and memory (MiB)."""
    names = []
    for r in rows:
        for n in r["median_ms"]:
            if n not in names:
                names.append(n)
    ratio_peers = [p for p in peers if p in names and "jaxrnn" in names]
    head = (["cell", "mode", "dtype", "(B, T, I, H)"] + [f"{n} ms" for n in names]
            + [f"jaxrnn/{p}" for p in ratio_peers] + [f"{n} MiB" for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        med, mem = r["median_ms"], r["memory_bytes"]
        cells = [r["cell"], r["mode"], r["dtype"], f"({r['B']}, {r['T']}, {r['I']}, {r['H']})"]
        cells += [_fmt_ms(med[n]).strip() if n in med else "" for n in names]
        cells += [f"{med['jaxrnn'] / med[p]:.2f}" if p in med and "jaxrnn" in med else ""
                  for p in ratio_peers]
        cells += [f"{mem[n] / 2**20:.1f}" if mem.get(n) is not None else "" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- min_gru

def run_parallel(args, results):
    """Training step (fwd+bwd) of min_gru with the parallel scan vs the sequential GRU."""
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr
    from jaxrnn import fast

    B, I, H = (int(v) for v in args.parallel_size.split(":"))
    rows = []
    for T in [int(t) for t in args.parallel_t.split(",") if t]:
        xs = jax.random.normal(jax.random.PRNGKey(0), (B, T, I))
        mg = jr.min_gru(H)
        gru = jr.gru(H)
        p_mg = mg.init(jax.random.PRNGKey(1), I)
        p_gru = gru.init(jax.random.PRNGKey(1), I)

        def seq_loss(cell, parallel):
            def loss(p, x):
                ys = jax.vmap(lambda s: jr.scan(cell, p, s, parallel=parallel)[0])(x)
                return jnp.sum(ys)
            return loss

        def fast_gru_loss(p, x):
            return jnp.sum(fast.layer(gru, p, x)[0])

        fns = {}
        for name, loss, p in (("min_gru parallel", seq_loss(mg, True), p_mg),
                              ("min_gru sequential", seq_loss(mg, False), p_mg),
                              ("gru jaxrnn (fast)", fast_gru_loss, p_gru),
                              ("gru jr.scan", seq_loss(gru, False), p_gru)):
            c = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(p, xs).compile()
            fns[name] = (lambda c=c, p=p: jax.block_until_ready(c(p, xs)))
        times = _time_round_robin(fns, args.warmup, max(3, args.repeats // 2), args.clock)
        med = {n: 1e3 * statistics.median(t) for n, t in times.items()}
        row = {"B": B, "T": T, "I": I, "H": H, "median_ms": med,
               "speedup_vs_gru_fast": med["gru jaxrnn (fast)"] / med["min_gru parallel"],
               "speedup_vs_gru_scan": med["gru jr.scan"] / med["min_gru parallel"],
               "speedup_vs_min_gru_sequential": med["min_gru sequential"] / med["min_gru parallel"]}
        rows.append(row)
        print(f"min_gru T={T}: " + "  ".join(f"{n}={v:.1f}ms" for n, v in med.items())
              + f"  | speed-up vs fast GRU {row['speedup_vs_gru_fast']:.1f}x, vs jr.scan GRU "
              f"{row['speedup_vs_gru_scan']:.1f}x, vs sequential min_gru "
              f"{row['speedup_vs_min_gru_sequential']:.1f}x", flush=True)
        results["parallel"] = rows
        _write(args.json, results)
    return rows


def parallel_table(rows):
    names = list(rows[0]["median_ms"]) if rows else []
    head = ["(B, T, I, H)"] + [f"{n} ms" for n in names] + [
        "speed-up vs fast GRU", "vs jr.scan GRU", "vs sequential min_gru"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"({r['B']}, {r['T']}, {r['I']}, {r['H']})"]
        cells += [_fmt_ms(r["median_ms"][n]).strip() for n in names]
        cells += [f"{r['speedup_vs_gru_fast']:.2f}x", f"{r['speedup_vs_gru_scan']:.2f}x",
                  f"{r['speedup_vs_min_gru_sequential']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(path, results):
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def main(argv=None):
    args = _parse_args(argv)
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        m = saved.get("machine", {})
        print(f"machine: {m.get('cpu', '')} {m.get('gpu', '')}, {m.get('cpu_count')} cores, "
              f"jax {m.get('jax')} ({m.get('jax_backend')}), flax {m.get('flax')}, torch "
              f"{m.get('torch')} ({m.get('torch_threads')} threads), clock "
              f"{saved.get('args', {}).get('clock', 'wall')}, load {m.get('loadavg_start')}")
        if saved.get("rnn"):
            print("\n" + table(saved["rnn"]))
        if saved.get("parallel"):
            print("\n" + parallel_table(saved["parallel"]))
        return
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    try:
        import torch
        torch.set_num_threads(args.threads or os.cpu_count())
    except ImportError:
        pass
    results = {"machine": _machine(), "args": vars(args)}
    print(json.dumps(results["machine"]), flush=True)
    if not args.parallel:
        rows = run_rnn(args, results)
        print("\n" + table(rows), flush=True)
    if args.parallel or not args.no_parallel:
        run_parallel(args, results)
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_end"] = os.getloadavg()
    _write(args.json, results)
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
