"""Parallel-in-time Newton (DEER / quasi-DEER) against the default sequential scan.

    python -m experiments.bench.newton                          # gru, the full grid below
    python -m experiments.bench.newton --quick                  # a smoke run in about a minute
    python -m experiments.bench.newton --cells gru,lstm --jacobians diagonal,full
    python -m experiments.bench.newton --batch 1 --lengths 1000,10000 --hidden 64 --modes eval
    python -m experiments.bench.newton --render runs/bench/newton.json

For every cell (``--cells``, default gru; any name of ``experiments.bench.rnn``), batch
``B`` (``--batch``, default 1,16), length ``T`` (``--lengths``, default 1000,10000,100000)
and width ``H`` (``--hidden``, default 16,64,256), with input size ``I = H`` (``--input``),
one layer over a batch ``[B, T, I]`` of standard normal inputs (times ``--input-scale``,
default 1), the cell's default initialisation (seed 0), float32, in one process:

- ``sequential``: ``jax.vmap(jr.scan)``, the library's default path (the fused engine);
- ``newton``: ``jax.vmap(jr.scan(..., method="newton", newton=jr.NewtonOptions(...)))``,
  the parallel-in-time Newton iteration over the whole sequence, with ``--jacobians``
  ``diagonal`` (quasi-DEER, the default) and/or ``full`` (DEER: a ``[T, D, D]`` Jacobian,
  ``D`` the state size; skipped as "skipped (memory)" when ``H > 64`` or
  ``B * T * D * D * 4`` bytes exceed ``--full-max-bytes``, 2 GB).

Two modes (``--modes``, default both): ``eval``, the jitted forward (``ys``), and
``fwdbwd``, the jitted gradient of ``sum(ys ** 2)`` with respect to the parameters and the
inputs. Each row reports both medians, ``speedup = sequential / newton`` (above 1: Newton
wins), the Newton iteration count (``jr.newton_scan`` under ``vmap``: the largest over the
batch), its final residual (the largest over the batch) and whether every sequence
converged, and the largest absolute difference between Newton's and the sequential ``ys``
(in ``fwdbwd`` rows also the largest between the gradients, relative to the largest
gradient entry: the table's ``rel |dgrad|``). The end of the run prints, for each
(cell, jacobian, mode, B, H), the smallest ``T`` from which on a converged Newton beats the
sequential scan at every measured ``T`` ("crossover T"), or "no crossover up to T=...".

Timing follows ``experiments.bench.rnn`` (whose helpers it imports): every function is
jitted and compiled before timing, after a throwaway program; each one gets ``--warmup``
calls (at least one: it also sizes the repeats), then ``--repeats`` rounds in which
sequential and every Newton variant run once, each round starting one later; the median is
reported. Long calls get fewer rounds: a (cell, B, T, H, mode) group runs at most
``--row-seconds`` of rounds (at least one). Rows whose ``B * T`` exceeds ``--max-elements``
(default 2e5: the whole default grid then takes roughly half an hour on the 2-core CPU; raise it
on a GPU) are printed as skipped. The machine's float32 matmul peak is measured first
and the sequential scan's matmul FLOP/s is printed as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

from experiments.bench import rnn

JACOBIANS = ("diagonal", "full")
MODES = ("eval", "fwdbwd")


def _ints(flag, spec):
    try:
        vals = [int(float(v)) for v in spec.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise SystemExit(f"{flag}: {spec!r} is not a comma list of positive integers")
    return vals


def _choices(flag, spec, allowed):
    vals = [v.strip() for v in spec.split(",") if v.strip()]
    bad = [v for v in vals if v not in allowed]
    if bad or not vals:
        raise SystemExit(f"{flag}: unknown {bad or spec!r}; choose from {', '.join(allowed)}")
    return vals


def _tol(v):
    return None if str(v).lower() in ("none", "") else float(v)


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="gru", help="comma list of cell names (e.g. gru,lstm)")
    p.add_argument("--batch", default="1,16", help="comma list of batch sizes B")
    p.add_argument("--lengths", default="1000,10000,100000", help="comma list of lengths T")
    p.add_argument("--hidden", default="16,64,256", help="comma list of widths H")
    p.add_argument("--input", type=int, default=0, help="input size I (0: I = H)")
    p.add_argument("--input-scale", type=float, default=1.0,
                   help="xs = scale * standard normal")
    p.add_argument("--jacobians", default="diagonal", help="diagonal, full or diagonal,full")
    p.add_argument("--modes", default="eval,fwdbwd", help="eval, fwdbwd or eval,fwdbwd")
    p.add_argument("--max-iters", type=int, default=100, help="NewtonOptions.max_iters")
    p.add_argument("--tol", type=_tol, default=None,
                   help="NewtonOptions.tol (default none: the library's own)")
    p.add_argument("--damping", type=float, default=0.0, help="NewtonOptions.damping")
    p.add_argument("--on-failure", default=None, choices=("warn", "nan", "ignore"),
                   help="NewtonOptions.on_failure (default: the library's, warn)")
    p.add_argument("--max-elements", type=float, default=2e5,
                   help="skip rows whose B * T exceeds this")
    p.add_argument("--full-max-bytes", type=float, default=2e9,
                   help="skip jacobian=full where B * T * D * D * 4 exceeds this")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--row-seconds", type=float, default=30.0,
                   help="at most this many seconds of timed rounds per group (at least one)")
    p.add_argument("--peak-size", type=int, default=2048, help="n of the n x n peak matmul")
    p.add_argument("--xla-flags", default=None, help="appended to XLA_FLAGS before JAX starts")
    p.add_argument("--quick", action="store_true",
                   help="gru, B=1, T=1000,10000, H=16, both modes, 3 repeats")
    p.add_argument("--json", default="runs/bench/newton.json", help="where to write the results")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the Markdown table of a saved run and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.lengths, args.hidden = "1", "1000,10000", "16"
        args.repeats, args.warmup, args.peak_size = 3, 1, min(args.peak_size, 1024)
    args.warmup = max(1, args.warmup)
    args.repeats = max(1, args.repeats)
    return args


# --------------------------------------------------------------------------- the functions

def _state_size(cell, params, I):
    """D: the number of scalars in one sequence's carry (H for a GRU, 2H for an LSTM)."""
    import jax
    import jax.numpy as jnp
    carry = jax.eval_shape(cell.carry_for_input, params, jax.ShapeDtypeStruct((I,), jnp.float32))
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(carry)))


def _forward_fns(cell, jacobians, args):
    """{name: fn(params, xs [B, T, I]) -> ys [B, T, H]}: sequential and each Newton variant."""
    import jax

    import jaxrnn as jr

    def sequential(p, x):
        return jax.vmap(lambda s: jr.scan(cell, p, s)[0])(x)

    fns = {"sequential": sequential}
    for jac in jacobians:
        opts = _options(jac, args)

        def newton(p, x, opts=opts):
            return jax.vmap(lambda s: jr.scan(cell, p, s, method="newton", newton=opts)[0])(x)
        fns[f"newton_{jac}"] = newton
    return fns


def _options(jac, args):
    import jaxrnn as jr
    extra = {} if args.on_failure is None else {"on_failure": args.on_failure}
    return jr.NewtonOptions(jacobian=jac, max_iters=args.max_iters, tol=args.tol,
                            damping=args.damping, **extra)


def _lazy_jit(fn):
    """jax.jit on first call (the module imports without JAX until main runs)."""
    cache = {}

    def call(*a):
        if "f" not in cache:
            import jax
            cache["f"] = jax.jit(fn)
        import jax
        return tuple(float(v) for v in jax.device_get(cache["f"](*a)))
    return call


def _newton_info(cell, params, xs, jac, args):
    """``jr.newton_scan`` under ``vmap``: iterations (max over the batch), final residual
    (max) and converged (all)."""
    import jax
    import jax.numpy as jnp

    import jaxrnn as jr

    opts = _options(jac, args)

    def info(p, x):
        _, _, inf = jax.vmap(lambda s: jr.newton_scan(cell, p, s, options=opts))(x)
        return (jnp.max(inf.iterations), jnp.max(inf.residual), jnp.all(inf.converged))

    it, res, conv = jax.device_get(jax.jit(info)(params, xs))
    return {"iterations": int(it), "residual": float(res), "converged": bool(conv)}


@_lazy_jit
def _max_abs_diff(a, b):
    """The largest |a - b| over two pytrees of equal structure, and the largest |a|."""
    import jax
    import jax.numpy as jnp
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    diffs = [jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))
             for x, y in zip(la, lb)]
    scale = [jnp.max(jnp.abs(x.astype(jnp.float32))) for x in la]
    return jnp.max(jnp.stack(diffs)), jnp.max(jnp.stack(scale))


def _compile(fn_fwd, params, xs, mode):
    """(compiled, memory bytes) of the forward, or of the gradient of sum(ys ** 2)."""
    import jax
    import jax.numpy as jnp

    def loss(p, x):
        return jnp.sum(jnp.square(fn_fwd(p, x).astype(jnp.float32)))

    f = fn_fwd if mode == "eval" else jax.grad(loss, argnums=(0, 1))
    compiled = jax.jit(f).lower(params, xs).compile()
    return compiled, rnn._jax_memory(compiled)


def _timed(fns, args):
    """Warmup (at least one call each, which sizes the rounds), then round-robin rounds."""
    one = 0.0
    for f in fns.values():
        for _ in range(args.warmup):
            t0 = time.perf_counter()
            f()
            dt = time.perf_counter() - t0
        one += dt
    rounds = max(1, min(args.repeats, int(args.row_seconds / max(one, 1e-9))))
    return rnn._time_round_robin(fns, 0, rounds), rounds


# --------------------------------------------------------------------------- the grid

def _row(cell_name, jac, mode, B, T, I, H, **extra):
    row = {"cell": cell_name, "jacobian": jac, "mode": mode, "B": B, "T": T, "I": I, "H": H}
    row.update(extra)
    return row


def run_grid(args, results, out=sys.stdout):
    import jax

    cells = rnn._cells()
    cell_names = rnn._cell_names(args.cells)
    batches = _ints("--batch", args.batch)
    lengths = sorted(_ints("--lengths", args.lengths))
    hidden = _ints("--hidden", args.hidden)
    jacobians = _choices("--jacobians", args.jacobians, JACOBIANS)
    modes = _choices("--modes", args.modes, MODES)

    rnn._burn_in()
    results["peak_gflops"] = {"float32": rnn.measure_peak(args.peak_size, "float32")}
    peak = results["peak_gflops"]["float32"]["xla"]
    print(f"matmul peak float32 ({args.peak_size}^2): " + "  ".join(
        f"{n}={v:.0f} GFLOP/s" for n, v in results["peak_gflops"]["float32"].items()), flush=True)
    print("\n" + _header(), file=out, flush=True)
    rows = results.setdefault("newton", [])
    for cell_name in cell_names:
        make = cells[cell_name][0]
        for B in batches:
            for H in hidden:
                I = args.input or H
                cell = make(H, None)
                params = cell.init(jax.random.PRNGKey(0), I)
                D = _state_size(cell, params, I)
                for T in lengths:
                    new_rows = _measure_group(args, cell, cell_name, params, B, T, I, H, D,
                                              jacobians, modes, peak)
                    for row in new_rows:
                        rows.append(row)
                        print(_line(row), file=out, flush=True)
                    rnn._write(args.json, results)
    results["crossover"] = crossover(rows)
    return rows


def _fail(e):
    return f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _measure_group(args, cell, cell_name, params, B, T, I, H, D, jacobians, modes, peak):
    """The rows of one (cell, B, T, H): every mode and jacobian, timed together."""
    import jax
    import jax.numpy as jnp

    if B * T > args.max_elements:
        note = f"skipped (B*T={B * T} > --max-elements={args.max_elements:g})"
        return [_row(cell_name, j, m, B, T, I, H, D=D, skipped=note)
                for m in modes for j in jacobians]
    skipped, failed = {}, {}
    for jac in jacobians:
        if jac == "full" and (H > 64 or B * T * D * D * 4 > args.full_max_bytes):
            skipped[jac] = "skipped (memory)"
    xs = args.input_scale * jax.random.normal(jax.random.PRNGKey(1), (B, T, I), jnp.float32)
    fwd = _forward_fns(cell, [j for j in jacobians if j not in skipped], args)

    def build(mode):
        built = {}
        for name, fn in fwd.items():
            jac = None if name == "sequential" else name[len("newton_"):]
            if jac in failed:
                continue
            try:
                built[name] = _compile(fn, params, xs, mode)
            except Exception as e:   # noqa: BLE001 - one config's failure is a row, not the end
                if jac is None:
                    raise
                failed[jac] = _fail(e)
                print(f"  newton {jac} {cell_name} {mode} B={B} T={T} H={H}: {failed[jac]}",
                      file=sys.stderr, flush=True)
        return built

    # Agreement and iterations, from the timed forward programs and jr.newton_scan.
    built_eval = build("eval")
    checks = {}
    ys_seq = built_eval["sequential"][0](params, xs)
    for name in [n for n in built_eval if n != "sequential"]:
        jac = name[len("newton_"):]
        try:
            checks[jac] = _newton_info(cell, params, xs, jac, args)
            checks[jac]["max_abs_diff"] = _max_abs_diff(built_eval[name][0](params, xs),
                                                        ys_seq)[0]
        except Exception as e:   # noqa: BLE001
            failed[jac] = _fail(e)
            print(f"  newton {jac} {cell_name} B={B} T={T} H={H}: {failed[jac]}",
                  file=sys.stderr, flush=True)
    del ys_seq
    flops = rnn.matmul_flops(cell, params, B, T)
    rows = []
    for mode in modes:
        built = built_eval if mode == "eval" else build(mode)
        built = {n: b for n, b in built.items() if n == "sequential" or n[7:] not in failed}
        calls = {n: (lambda c=c: jax.block_until_ready(c(params, xs)))
                 for n, (c, _) in built.items()}
        times, rounds = _timed(calls, args)
        med = {n: 1e3 * statistics.median(t) for n, t in times.items()}
        mins = {n: 1e3 * min(t) for n, t in times.items()}
        grads = {}
        if mode == "fwdbwd":
            ref = built["sequential"][0](params, xs)
            for n in built:
                if n != "sequential":
                    try:
                        grads[n] = _max_abs_diff(built[n][0](params, xs), ref)
                    except Exception as e:   # noqa: BLE001
                        failed[n[7:]] = _fail(e)
            del ref
        work = flops * (3 if mode == "fwdbwd" else 1)
        seq_frac = work / (med["sequential"] / 1e3) / 1e9 / peak
        for jac in jacobians:
            name = f"newton_{jac}"
            if jac in skipped or jac in failed:
                rows.append(_row(cell_name, jac, mode, B, T, I, H, D=D,
                                 skipped=skipped.get(jac) or failed[jac],
                                 sequential_ms=med["sequential"]))
                continue
            row = _row(cell_name, jac, mode, B, T, I, H, D=D, sequential_ms=med["sequential"],
                       newton_ms=med[name], sequential_min_ms=mins["sequential"],
                       newton_min_ms=mins[name], speedup=med["sequential"] / med[name],
                       rounds=rounds, sequential_fraction_of_peak=seq_frac,
                       memory_bytes={"sequential": built["sequential"][1],
                                     "newton": built[name][1]},
                       **checks[jac])
            if name in grads:
                row["grad_max_abs_diff"], row["grad_max_abs"] = grads[name]
            rows.append(row)
        del built, calls
    return rows


# --------------------------------------------------------------------------- output

_COLUMNS = ["cell", "jacobian", "mode", "B", "T", "H", "sequential ms", "newton ms", "speedup",
            "iters", "residual", "converged", "max |dy|", "rel |dgrad|", "seq % of peak"]


def _header():
    return ("| " + " | ".join(_COLUMNS) + " |\n" + "|" + "---|" * len(_COLUMNS))


def _g(v):
    return f"{v:.1e}" if v is not None else ""


def _rel_grad(r):
    if r.get("grad_max_abs_diff") is None:
        return None
    return r["grad_max_abs_diff"] / max(r["grad_max_abs"], 1e-30)


def _line(r):
    cells = [r["cell"], r["jacobian"], r["mode"], str(r["B"]), str(r["T"]), str(r["H"])]
    seq = r.get("sequential_ms")
    cells.append(rnn._fmt_ms(seq).strip() if seq is not None else "")
    if r.get("skipped"):
        cells += [r["skipped"]] + [""] * (len(_COLUMNS) - len(cells) - 1)
    else:
        cells += [rnn._fmt_ms(r["newton_ms"]).strip(), f"{r['speedup']:.2f}x",
                  str(r["iterations"]), _g(r["residual"]), "yes" if r["converged"] else "NO",
                  _g(r["max_abs_diff"]), _g(_rel_grad(r)),
                  f"{100 * r['sequential_fraction_of_peak']:.0f}%"]
    return "| " + " | ".join(cells) + " |"


def table(rows):
    return "\n".join([_header()] + [_line(r) for r in rows])


def crossover(rows):
    """Per (cell, jacobian, mode, B, H): the smallest measured T from which on a converged
    Newton beats the sequential scan at every measured T (None if not at the largest); with
    the largest T measured."""
    groups = {}
    for r in rows:
        key = (r["cell"], r["jacobian"], r["mode"], r["B"], r["H"])
        groups.setdefault(key, []).append(r)
    out = []
    for (cell, jac, mode, B, H), rs in groups.items():
        measured = sorted((r for r in rs if not r.get("skipped")), key=lambda r: r["T"])
        wins = []
        for r in reversed(measured):
            if not (r["speedup"] > 1 and r["converged"]):
                break
            wins.insert(0, r["T"])
        out.append({"cell": cell, "jacobian": jac, "mode": mode, "B": B, "H": H,
                    "crossover_T": wins[0] if wins else None,
                    "max_T": measured[-1]["T"] if measured else None,
                    "speedup_at_max_T": measured[-1]["speedup"] if measured else None})
    return out


def crossover_lines(entries):
    lines = []
    for c in entries:
        head = f"{c['cell']} {c['jacobian']} {c['mode']} B={c['B']} H={c['H']}: "
        if c["max_T"] is None:
            lines.append(head + "not measured (every T skipped)")
        elif c["crossover_T"] is not None:
            lines.append(head + f"crossover T={c['crossover_T']} "
                         f"(speedup {c['speedup_at_max_T']:.2f}x at T={c['max_T']})")
        else:
            lines.append(head + f"no crossover up to T={c['max_T']} "
                         f"(speedup {c['speedup_at_max_T']:.2f}x there)")
    return lines


def _describe(saved):
    m = saved.get("machine", {})
    return rnn.describe(saved) + f"; device {m.get('device_kind')}"


def main(argv=None):
    args = _parse_args(argv)
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        print(_describe(saved))
        print("\n" + table(saved.get("newton", [])))
        print("\n" + "\n".join(crossover_lines(crossover(saved.get("newton", [])))))
        return 0
    rnn._cell_names(args.cells)
    for flag, spec in (("--batch", args.batch), ("--lengths", args.lengths),
                       ("--hidden", args.hidden)):
        _ints(flag, spec)
    _choices("--jacobians", args.jacobians, JACOBIANS)
    _choices("--modes", args.modes, MODES)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    import jax

    import jaxrnn as jr
    if not hasattr(jr, "newton_scan"):
        raise SystemExit("this jaxrnn has no jr.newton_scan / jr.NewtonOptions")
    results = {"machine": rnn._machine(), "args": vars(args)}
    results["machine"]["device_kind"] = jax.devices()[0].device_kind
    print(json.dumps(results["machine"]), flush=True)
    print(f"device: {results['machine']['device_kind']} ({jax.default_backend()})", flush=True)
    rows = run_grid(args, results)
    if hasattr(os, "getloadavg"):
        results["machine"]["loadavg_end"] = os.getloadavg()
    rnn._write(args.json, results)
    print("\n" + _describe(results) + "\n\n" + table(rows), flush=True)
    print("\n" + "\n".join(crossover_lines(results["crossover"])), flush=True)
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
