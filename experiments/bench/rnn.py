"""Side-by-side RNN benchmark: the path users write, ``jax.vmap(jr.scan)``, against its peers.

    python -m experiments.bench.rnn                            # every cell, four sizes, f32 + bf16
    python -m experiments.bench.rnn --quick                    # a smoke run in about a minute
    python -m experiments.bench.rnn --cells lstm,gru --sizes mid,8:50:64:128 --dtypes float32
    python -m experiments.bench.rnn --parallel                 # min_gru's parallel scan only
    python -m experiments.bench.rnn --conv 8:20:16:4:16        # the 2-D ConvLSTM only
    python -m experiments.bench.rnn --render runs/bench/rnn.json

For every cell, forward+backward (gradients of every parameter and of the inputs of
``sum(ys)``) of one layer over a batch ``[B, T, I]``, in one process:

- ``jaxrnn``: ``jax.vmap(jr.scan)``, the library's default path (the fused engine);
- ``naive``: ``lax.scan`` of ``cell.step`` written with the public cell API and batched with
  ``vmap``, differentiated by autodiff: the loop a user would write without the library;
- ``flax``: ``flax.linen.RNN`` of Flax's cell where Flax has the same cell
  (``SimpleCell``, ``OptimizedLSTMCell``, ``GRUCell``);
- ``torch``: ``torch.nn.RNN / LSTM / GRU`` (oneDNN on CPU, cuDNN on GPU) where PyTorch has
  the cell (tanh and relu RNN, LSTM, LSTM with ``proj_size``, GRU);
- ``jax-cudnn`` (GPU only, LSTM, float32): ``jax.experimental.rnn.lstm``.

The machine's matmul peak is measured first, in the same process (one large square matmul,
XLA and torch), and every implementation's achieved matmul FLOP/s is printed as a fraction
of XLA's peak (the roofline: what is left to win). A cell's matmul FLOPs per step and
example are ``2 * (I * G_in + sum_k K_k * N_k)`` over its input weight ``[I, G_in]`` and
recurrent weights ``[K_k, N_k]`` (forward); forward+backward counts three times that.

Every JAX function is jitted and compiled before timing (after a throwaway program: the first
programs a process compiles ran slower); each implementation gets ``--warmup`` calls, then
``--repeats`` rounds in which every implementation runs once, each round starting one
implementation later (a JAX call right after a PyTorch call can lose to PyTorch's spinning
threads); the median is reported. Time a quiet machine: with one of two cores busy,
PyTorch's timings collapse several-fold and every ratio lies.

bfloat16 means bf16 matmuls with float32 parameters, gates and state for the JAX
implementations (``jr.lstm(H, dtype=bfloat16)``, Flax ``dtype=bfloat16``); torch runs the
module in bf16 (its fused RNNs have no mixed mode).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from experiments.runs import cpu_info

SIZES = {
    "small": (1, 1000, 32, 64),
    "mid": (32, 100, 128, 256),
    "large": (64, 200, 256, 512),
    "long": (16, 2000, 64, 256),
}
PARALLEL_T = (256, 1024, 4096)


def _cells():
    """name -> (jaxrnn factory(H, dtype), flax cell or None, torch module kwargs or None)."""
    import jaxrnn as jr

    def flax_cell(kind, **extra):
        def make(H, dtype):
            import flax.linen as nn
            kw = dict(features=H, param_dtype=_jnp().float32, **extra)
            if dtype is not None:
                kw["dtype"] = dtype
            return getattr(nn, kind)(**kw)
        return make

    return {
        "simple_tanh": (lambda H, d: jr.simple_rnn(H, dtype=d), flax_cell("SimpleCell"),
                        ("RNN", dict(nonlinearity="tanh"))),
        "simple_relu": (lambda H, d: jr.simple_rnn(H, nonlinearity="relu", dtype=d),
                        _flax_relu_cell, ("RNN", dict(nonlinearity="relu"))),
        "lstm": (lambda H, d: jr.lstm(H, dtype=d), flax_cell("OptimizedLSTMCell"),
                 ("LSTM", {})),
        "lstm_peephole": (lambda H, d: jr.lstm(H, peephole=True, dtype=d), None, None),
        "lstm_coupled": (lambda H, d: jr.lstm(H, coupled=True, dtype=d), None, None),
        "lstm_layer_norm": (lambda H, d: jr.lstm(H, layer_norm=True, dtype=d), None, None),
        "lstm_proj": (lambda H, d: jr.lstm(H, proj_size=H // 2, dtype=d), None,
                      ("LSTM", "proj")),
        "gru": (lambda H, d: jr.gru(H, dtype=d), flax_cell("GRUCell"), ("GRU", {})),
        "gru_cho": (lambda H, d: jr.gru(H, reset_after=False, dtype=d), None, None),
        "mgu": (lambda H, d: jr.mgu(H, dtype=d), None, None),
        "min_gru": (lambda H, d: jr.min_gru(H, dtype=d), None, None),
        "min_lstm": (lambda H, d: jr.min_lstm(H, dtype=d), None, None),
    }


def _jnp():
    import jax.numpy as jnp
    return jnp


def _flax_relu_cell(H, dtype):
    import flax.linen as nn
    kw = dict(features=H, param_dtype=_jnp().float32, activation_fn=nn.relu)
    if dtype is not None:
        kw["dtype"] = dtype
    return nn.SimpleCell(**kw)


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="small,mid,large,long",
                   help="comma list of names (small, mid, large, long) or B:T:I:H tuples")
    p.add_argument("--cells", default="all", help="comma list of cell names, or all")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--impls", default="jaxrnn,naive,flax,torch,jax-cudnn",
                   help="comma list among jaxrnn, naive, reference, flax, torch, jax-cudnn "
                        "(reference: jax.vmap(jr.scan(..., method='reference')))")
    p.add_argument("--modes", default="fwdbwd", help="fwd, fwdbwd or both")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true",
                   help="lstm and gru at the small and mid sizes, float32, 5 repeats")
    p.add_argument("--parallel", action="store_true",
                   help="run only the min_gru parallel-scan vs GRU training benchmark")
    p.add_argument("--no-parallel", action="store_true", help="skip the min_gru benchmark")
    p.add_argument("--parallel-size", default="16:64:256", help="B:I:H for the min_gru benchmark")
    p.add_argument("--conv", default=None, metavar="B:T:S:C_IN:C",
                   help="run only the 2-D ConvLSTM benchmark (S x S maps, 3x3 kernels): "
                        "jaxrnn, reference and naive")
    p.add_argument("--parallel-t", default=",".join(map(str, PARALLEL_T)))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--peak-size", type=int, default=2048, help="n of the n x n peak matmul")
    p.add_argument("--xla-flags", default=None, help="appended to XLA_FLAGS before JAX starts")
    p.add_argument("--json", default="runs/bench/rnn.json", help="where to write the results")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the Markdown tables of a saved run and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.dtypes, args.repeats, args.warmup = "small,mid", "float32", 5, 2
        args.cells = "lstm,gru" if args.cells == "all" else args.cells
        args.no_parallel = True
    return args


def _sizes(spec):
    out = []
    for item in spec.split(","):
        item = item.strip()
        if item in SIZES:
            out.append((item, SIZES[item]))
        elif item:
            try:
                dims = tuple(int(v) for v in item.split(":"))
            except ValueError:
                dims = ()
            if len(dims) != 4 or min(dims) < 1:
                raise SystemExit(f"--sizes: {item!r} is neither a name ({', '.join(SIZES)}) "
                                 f"nor B:T:I:H with four positive integers")
            out.append((item, dims))
    return out


def _cell_names(spec):
    known = _cells()
    names = list(known) if spec == "all" else [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--cells: unknown {unknown}; choose from {sorted(known)} or all")
    return names


# --------------------------------------------------------------------------- FLOPs and peak

def matmul_flops(cell, params, B, T):
    """Forward matmul FLOPs of one layer over [B, T, I]: 2 * B * T * sum of weight sizes."""
    w_in, ws, _ = cell.recurrence.split(params)
    per_step = sum(int(w.shape[-2]) * int(w.shape[-1]) for w in (w_in,) + tuple(ws))
    return 2.0 * B * T * per_step


def measure_peak(n, dtype_name, repeats=9):
    """GFLOP/s of an n x n matmul: XLA (jitted) and torch, in this process."""
    import jax
    import jax.numpy as jnp
    dt = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dt)
    f = jax.jit(lambda a: jnp.matmul(a, a, preferred_element_type=jnp.float32))
    out = {}
    fns = {"xla": lambda: jax.block_until_ready(f(a))}
    try:
        import torch
        ta = torch.randn(n, n, dtype=torch.bfloat16 if dtype_name == "bfloat16" else torch.float32)
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        ta = ta.to(dev)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def torch_mm():
            ta @ ta
            sync()
        fns["torch"] = torch_mm
    except ImportError:
        pass
    times = _time_round_robin(fns, 2, repeats)
    for name, ts in times.items():
        out[name] = 2.0 * n ** 3 / min(ts) / 1e9
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


def _jax_impl(fn_fwd, params, xs, modes):
    """{mode: (blocking callable, memory bytes)} for a JAX ``fn(params, xs) -> ys``."""
    import jax
    import jax.numpy as jnp

    def loss(p, x):
        return jnp.sum(fn_fwd(p, x).astype(jnp.float32))

    out = {}
    for mode in modes:
        f = fn_fwd if mode == "fwd" else jax.grad(loss, argnums=(0, 1))
        compiled = jax.jit(f).lower(params, xs).compile()
        out[mode] = ((lambda c=compiled: jax.block_until_ready(c(params, xs))),
                     _jax_memory(compiled))
    return out


def _make_jax_impl(name, cell_name, dims, dtype_name, modes):
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr

    B, T, I, H = dims
    compute = jnp.bfloat16 if dtype_name == "bfloat16" else None
    xs = jax.random.normal(jax.random.PRNGKey(0), (B, T, I), jnp.float32)
    if compute is not None:
        xs = xs.astype(compute)
    make, flax_make, _ = _cells()[cell_name]
    cell = make(H, compute)
    params = cell.init(jax.random.PRNGKey(1), I)
    flops = matmul_flops(cell, params, B, T)

    if name in ("jaxrnn", "reference"):
        method = "fused" if name == "jaxrnn" else "reference"

        def public(p, x):
            return jax.vmap(lambda s: jr.scan(cell, p, s, method=method)[0])(x)
        return _jax_impl(public, params, xs, modes), flops
    if name == "naive":
        def naive(p, x):
            def one(seq):
                def body(c, x_t):
                    c = cell.step(p, c, x_t)
                    return c, cell.output(c)
                return jax.lax.scan(body, cell.initial_carry(p), seq)[1]
            return jax.vmap(one)(x)
        return _jax_impl(naive, params, xs, modes), flops
    if name == "flax":
        if flax_make is None:
            return None, flops
        import flax.linen as nn
        rnn = nn.RNN(flax_make(H, compute))
        fparams = rnn.init(jax.random.PRNGKey(1), xs)
        return _jax_impl(lambda p, x: rnn.apply(p, x), fparams, xs, modes), flops
    if name == "jax-cudnn":
        # cuDNN's LSTM through jax.experimental.rnn (GPU only; float32 weights).
        if cell_name != "lstm" or jax.default_backend() != "gpu" or compute is not None:
            return None, flops
        from jax.experimental import rnn as xrnn
        weights = xrnn.init_lstm_weight(jax.random.PRNGKey(1), I, H, 1, False)
        lengths = jnp.full((B,), T, jnp.int32)
        h0 = jnp.zeros((1, B, H), jnp.float32)

        def cudnn(w, x):
            y, _, _ = xrnn.lstm(x, h0, h0, w, lengths, input_size=I, hidden_size=H,
                                num_layers=1, dropout=0.0, bidirectional=False)
            return y
        return _jax_impl(cudnn, weights, xs, modes), flops
    raise ValueError(name)


# --------------------------------------------------------------------------- torch impl

def _torch_peak_cpu(call):
    """Peak bytes of live tensors allocated during ``call`` (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return int(peak)


def _make_torch_impl(cell_name, dims, dtype_name, modes):
    spec = _cells()[cell_name][2]
    if spec is None:
        return None
    import torch

    B, T, I, H = dims
    kind, kw = spec
    if kw == "proj":
        kw = dict(proj_size=H // 2)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dt = torch.bfloat16 if dtype_name == "bfloat16" else torch.float32
    torch.manual_seed(0)
    mod = getattr(torch.nn, kind)(I, H, batch_first=True, **kw).to(device=dev, dtype=dt)
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
    for mode in modes:
        f = fwd if mode == "fwd" else fwdbwd
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

def _time_round_robin(impls, warmup, repeats):
    """impls: {name: callable}. Returns {name: [seconds]} with calls interleaved.

    Round r starts at implementation r (mod n), so each one follows each other one equally
    often: at the small size a JAX call right after a PyTorch call could run up to 3x slower
    (PyTorch's OpenMP threads keep spinning for a while after a call), which a fixed order
    charged to one implementation every round."""
    for f in impls.values():
        for _ in range(warmup):
            f()
    names = list(impls)
    times = {n: [] for n in impls}
    for r in range(repeats):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            t0 = time.perf_counter()
            impls[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def _machine():
    import jax
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    cpu = cpu_info()
    info.update(cpu=cpu["cpu"], simd=cpu["simd"])
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
    """Compiles and runs a throwaway program with a loop, matmuls and a gradient: the first
    programs a process compiles ran slower than the same programs compiled later, so
    whichever implementation was built first lost."""
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
    bad = [m for m in modes if m not in ("fwd", "fwdbwd")]
    if bad:
        raise SystemExit(f"--modes: unknown {bad}; choose fwd, fwdbwd or both")
    on_gpu = jax.default_backend() == "gpu"
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    results["peak_gflops"] = {d: measure_peak(args.peak_size, d) for d in dtypes}
    for d, pk in results["peak_gflops"].items():
        print(f"matmul peak {d} ({args.peak_size}^2): "
              + "  ".join(f"{n}={v:.0f} GFLOP/s" for n, v in pk.items()), flush=True)
    rows = []
    for size_name, dims in _sizes(args.sizes):
        for cell_name in _cell_names(args.cells):
            for dtype_name in dtypes:
                built, flops = {}, None
                for name in impl_names:
                    if name == "jax-cudnn" and not on_gpu:
                        continue
                    try:
                        if name == "torch":
                            impl = _make_torch_impl(cell_name, dims, dtype_name, modes)
                        else:
                            impl, flops = _make_jax_impl(name, cell_name, dims, dtype_name, modes)
                    except ImportError as e:
                        print(f"  skipping {name}: {e}", file=sys.stderr)
                        continue
                    except Exception as e:   # a peer that cannot run this case (not ours)
                        if name in ("jaxrnn", "reference", "naive"):
                            raise
                        print(f"  skipping {name} for {cell_name} {dtype_name}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
                        continue
                    if impl is not None:
                        built[name] = impl
                for mode in modes:
                    fns = {n: impl[mode][0] for n, impl in built.items()}
                    times = _time_round_robin(fns, args.warmup, args.repeats)
                    med = {n: 1e3 * statistics.median(t) for n, t in times.items()}
                    work = flops * (3 if mode == "fwdbwd" else 1)
                    peak = results["peak_gflops"][dtype_name]["xla"]
                    row = {"size": size_name, "B": dims[0], "T": dims[1], "I": dims[2],
                           "H": dims[3], "cell": cell_name, "dtype": dtype_name, "mode": mode,
                           "median_ms": med,
                           "min_ms": {n: 1e3 * min(t) for n, t in times.items()},
                           "matmul_gflop": work / 1e9,
                           "fraction_of_peak": {n: work / (v / 1e3) / 1e9 / peak
                                                for n, v in med.items()},
                           "memory_bytes": {n: built[n][mode][1] for n in built}}
                    rows.append(row)
                    _print_row(row)
                    results["rnn"] = rows
                    _write(args.json, results)
                del built
    return rows


def _fmt_ms(v):
    return f"{v:9.2f}" if v < 100 else f"{v:9.1f}"


def _ratios(med, peers=("naive", "torch", "flax", "reference", "jax-cudnn")):
    return {p: med["jaxrnn"] / med[p] for p in peers if p in med and "jaxrnn" in med}


def _print_row(row):
    med = row["median_ms"]
    head = (f"{row['cell']:15} {row['mode']:6} {row['dtype']:8} "
            f"({row['B']},{row['T']},{row['I']},{row['H']})")
    parts = [f"{n}={_fmt_ms(v).strip()}ms" for n, v in med.items()]
    ratios = [f"jaxrnn/{n}={v:.2f}" for n, v in _ratios(med).items()]
    frac = row["fraction_of_peak"].get("jaxrnn")
    roof = f"  jaxrnn at {100 * frac:.0f}% of peak" if frac is not None else ""
    print(f"{head}  " + "  ".join(parts) + ("  |  " + "  ".join(ratios) if ratios else "")
          + roof, flush=True)


def table(rows):
    """A Markdown table: medians (ms), jaxrnn / peer ratios, jaxrnn's fraction of the peak."""
    names, peers = [], []
    for r in rows:
        for n in r["median_ms"]:
            if n not in names:
                names.append(n)
        for p in _ratios(r["median_ms"]):
            if p not in peers:
                peers.append(p)
    head = (["cell", "mode", "dtype", "(B, T, I, H)"] + [f"{n} ms" for n in names]
            + [f"jaxrnn / {p}" for p in peers] + ["jaxrnn % of peak"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        med = r["median_ms"]
        ratios = _ratios(med)
        cells = [r["cell"], r["mode"], r["dtype"], f"({r['B']}, {r['T']}, {r['I']}, {r['H']})"]
        cells += [_fmt_ms(med[n]).strip() if n in med else "" for n in names]
        cells += [f"{ratios[p]:.2f}" if p in ratios else "" for p in peers]
        frac = r.get("fraction_of_peak", {}).get("jaxrnn")
        cells.append(f"{100 * frac:.0f}%" if frac is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- conv_lstm

def run_conv(args, results):
    """fwd+bwd of a 2-D ConvLSTM layer: the fused engine against the reference loop and the
    naive step loop (neither Flax's nor PyTorch's ConvLSTM is the same cell)."""
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr

    B, T, S, C_in, C = (int(v) for v in args.conv.split(":"))
    cell = jr.conv_lstm(C, 3, spatial_dims=2)
    params = cell.init(jax.random.PRNGKey(1), C_in)
    xs = jax.random.normal(jax.random.PRNGKey(0), (B, T, S, S, C_in))

    def naive(p, x):
        def one(seq):
            def body(c, x_t):
                c = cell.step(p, c, x_t)
                return c, cell.output(c)
            return jax.lax.scan(body, cell.carry_for_input(p, seq[0]), seq)[1]
        return jax.vmap(one)(x)

    impls = {"jaxrnn": lambda p, x: jax.vmap(lambda s: jr.scan(cell, p, s)[0])(x),
             "reference": lambda p, x: jax.vmap(
                 lambda s: jr.scan(cell, p, s, method="reference")[0])(x),
             "naive": naive}
    built = {n: _jax_impl(f, params, xs, ["fwdbwd"]) for n, f in impls.items()}
    times = _time_round_robin({n: b["fwdbwd"][0] for n, b in built.items()}, args.warmup,
                              args.repeats)
    med = {n: 1e3 * statistics.median(t) for n, t in times.items()}
    row = {"B": B, "T": T, "S": S, "C_in": C_in, "C": C, "median_ms": med,
           "memory_bytes": {n: b["fwdbwd"][1] for n, b in built.items()}}
    results["conv"] = [row]
    print(f"conv_lstm fwdbwd (B={B}, T={T}, {S}x{S}, {C_in}->{C}): "
          + "  ".join(f"{n}={v:.1f}ms" for n, v in med.items())
          + f"  | jaxrnn/reference={med['jaxrnn'] / med['reference']:.2f}  "
          f"jaxrnn/naive={med['jaxrnn'] / med['naive']:.2f}", flush=True)
    _write(args.json, results)
    return [row]


# --------------------------------------------------------------------------- min_gru

def run_parallel(args, results):
    """Training step (fwd+bwd) of min_gru with the parallel scan vs the sequential GRU."""
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr

    B, I, H = (int(v) for v in args.parallel_size.split(":"))
    rows = []
    for T in [int(t) for t in args.parallel_t.split(",") if t]:
        xs = jax.random.normal(jax.random.PRNGKey(0), (B, T, I))
        mg, gru = jr.min_gru(H), jr.gru(H)
        p_mg, p_gru = mg.init(jax.random.PRNGKey(1), I), gru.init(jax.random.PRNGKey(1), I)

        def seq_loss(cell, parallel):
            def loss(p, x):
                return jnp.sum(jax.vmap(lambda s: jr.scan(cell, p, s, parallel=parallel)[0])(x))
            return loss

        fns = {}
        for name, loss, p in (("min_gru parallel", seq_loss(mg, True), p_mg),
                              ("min_gru sequential", seq_loss(mg, False), p_mg),
                              ("gru", seq_loss(gru, False), p_gru)):
            c = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(p, xs).compile()
            fns[name] = (lambda c=c, p=p: jax.block_until_ready(c(p, xs)))
        times = _time_round_robin(fns, args.warmup, max(3, args.repeats // 2))
        med = {n: 1e3 * statistics.median(t) for n, t in times.items()}
        row = {"B": B, "T": T, "I": I, "H": H, "median_ms": med,
               "speedup_vs_gru": med["gru"] / med["min_gru parallel"],
               "speedup_vs_min_gru_sequential": med["min_gru sequential"] / med["min_gru parallel"]}
        rows.append(row)
        print(f"min_gru T={T}: " + "  ".join(f"{n}={v:.1f}ms" for n, v in med.items())
              + f"  | parallel vs GRU {row['speedup_vs_gru']:.2f}x, vs sequential min_gru "
              f"{row['speedup_vs_min_gru_sequential']:.2f}x", flush=True)
        results["parallel"] = rows
        _write(args.json, results)
    return rows


def parallel_table(rows):
    names = list(rows[0]["median_ms"]) if rows else []
    head = ["(B, T, I, H)"] + [f"{n} ms" for n in names] + ["parallel vs GRU",
                                                           "vs sequential min_gru"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"({r['B']}, {r['T']}, {r['I']}, {r['H']})"]
        cells += [_fmt_ms(r["median_ms"][n]).strip() for n in names]
        cells += [f"{r['speedup_vs_gru']:.2f}x", f"{r['speedup_vs_min_gru_sequential']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(path, results):
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def describe(saved):
    m = saved.get("machine", {})
    peak = "; ".join(f"{d} " + ", ".join(f"{n} {v:.0f}" for n, v in pk.items())
                     for d, pk in saved.get("peak_gflops", {}).items())
    return (f"machine: {m.get('cpu', '')} {m.get('gpu', '')} ({', '.join(m.get('simd', []))}), "
            f"{m.get('cpu_count')} cores, jax {m.get('jax')} ({m.get('jax_backend')}), flax "
            f"{m.get('flax')}, torch {m.get('torch')} ({m.get('torch_threads')} threads), load "
            f"{m.get('loadavg_start')}; matmul peak GFLOP/s: {peak}")


def main(argv=None):
    args = _parse_args(argv)
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        print(describe(saved))
        if saved.get("rnn"):
            print("\n" + table(saved["rnn"]))
        if saved.get("parallel"):
            print("\n" + parallel_table(saved["parallel"]))
        return 0
    _sizes(args.sizes)
    _cell_names(args.cells)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    try:
        import torch
        torch.set_num_threads(args.threads or os.cpu_count())
    except ImportError:
        pass
    results = {"machine": _machine(), "args": vars(args)}
    print(json.dumps(results["machine"]), flush=True)
    if args.conv:
        run_conv(args, results)
        _write(args.json, results)
        return 0
    if not args.parallel:
        rows = run_rnn(args, results)
        print("\n" + describe(results) + "\n\n" + table(rows), flush=True)
    if args.parallel or not args.no_parallel:
        run_parallel(args, results)
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_end"] = os.getloadavg()
    _write(args.json, results)
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
